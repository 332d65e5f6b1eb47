"""``anycost serve``: the backend for host plugins and scripts, in the foreground."""

from __future__ import annotations

import argparse
import signal
import sys

from ..errors import InputError
from .common import add_device, add_threads, resolve_device


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="run the editing backend for Krita/GIMP plugins and scripts",
        description="Serve editing sessions over ZeroMQ. By default it listens on a free loopback TCP port "
                    "and writes a connection file (endpoint + signing key, mode 0600) that clients find on "
                    "their own. Logs are JSON lines on stderr. Stop with Ctrl-C or SIGTERM.")
    p.add_argument("--model", default=None, help="model name or file (default: the shipped demo model)")
    p.add_argument("--directions", help="extra direction file (.safetensors/.npy, or an official boundary .pt)")
    add_device(p)
    p.add_argument("--bind", default=None,
                   help="endpoint to listen on (default: tcp://127.0.0.1:<free port>); ipc://PATH also works. "
                        "A non-loopback address requires CURVE (--curve-server-key, --allowed-clients)")
    p.add_argument("--preview-precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="previews in bfloat16: auto (where the CPU has native bf16 and it costs at most 0.5 dB of "
                        "consistency, measured at start-up), fp32 or bf16 (default auto)")
    p.add_argument("--commit-precision", choices=["fp32", "bf16"], default="fp32",
                   help="precision of the final (Apply) render (default fp32)")
    p.add_argument("--preview-budget-ms", type=float, default=None,
                   help="latency budget of one preview render; picks the sub-generator (default 80)")
    p.add_argument("--search-table", metavar="FILE", default=None,
                   help="sub-generator table from 'anycost search -o' (or a published {budget: {channels, res, "
                        "…}} file): previews use its best entry that fits the budget here (default: the table "
                        "cached for this model and machine, re-read when 'anycost search' updates it)")
    p.add_argument("--search-time-limit", type=float, default=600.0,
                   help="seconds the background search may spend searching (default 600)")
    p.add_argument("--search-delay", type=float, default=30.0,
                   help="seconds after start-up before the background search begins (default 30)")
    p.add_argument("--no-background-search", action="store_true",
                   help="when no searched table fits the budget, keep the uniform ratio instead of searching in "
                        "the background (also: ANYCOST_BACKGROUND_SEARCH=0)")
    p.add_argument("--idle-trim", type=float, default=30.0, metavar="SECONDS",
                   help="give freed memory back to the system after this long without renders (0: never; "
                        "default 30)")
    p.add_argument("--session-timeout", type=float, default=60.0,
                   help="seconds of client silence after which a session is collected (default 60)")
    p.add_argument("--connection-file", default=None,
                   help="where to write the connection file (default: $XDG_RUNTIME_DIR/anycost/backend-PID.json)")
    p.add_argument("--reuse-connection-file", action="store_true",
                   help="if --connection-file exists, listen on its endpoint with its key, so that clients of a "
                        "previous backend (restarted by a supervisor) reconnect on their own")
    p.add_argument("--max-sessions", type=int, default=16, help="sessions held at once (default 16)")
    p.add_argument("--max-region-pixels", type=int, default=64 * 1024 * 1024,
                   help="largest region accepted, in pixels (default 64 Mpx)")
    p.add_argument("--max-frame-bytes", type=int, default=256 * 1024 * 1024,
                   help="largest binary frame accepted (default 256 MiB)")
    p.add_argument("--rate", type=float, default=200.0, help="messages per second per client (default 200)")
    p.add_argument("--no-lpips", action="store_true", help="pixel losses only during refinement")
    add_threads(p)
    p.add_argument("--blend", choices=["delta", "replace"], default="delta",
                   help="how results are pasted: delta adds only the edit to the original pixels (default), "
                        "replace pastes the render; a session may choose with its 'blend' option")
    p.add_argument("--curve-server-key", metavar="FILE", help="CURVE secret key file of the server")
    p.add_argument("--allowed-clients", metavar="DIR", help="folder of CURVE public keys of allowed clients")
    p.add_argument("--gen-curve-keys", metavar="DIR",
                   help="write a CURVE key pair (NAME.key, NAME.key_secret) into DIR and exit; see --key-name")
    p.add_argument("--key-name", default="server", help="file name stem for --gen-curve-keys (default: server)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..service import log as logmod

    logmod.threshold = logmod.LEVELS[args.log_level]
    if args.gen_curve_keys:
        from ..service.auth import generate_curve_keys

        public, secret = generate_curve_keys(args.gen_curve_keys, args.key_name)
        print(f"public key: {public}\nsecret key: {secret} (keep it private)")
        return 0
    for name in ("session_timeout", "max_sessions", "max_region_pixels", "max_frame_bytes", "rate",
                 "search_time_limit"):
        if getattr(args, name) <= 0:
            raise InputError(f"--{name.replace('_', '-')} must be positive")

    from anycost_client.protocol import Limits

    from ..service.auth import ConnectionFileClaim, load_curve
    from ..service.limits import ServiceLimits

    if args.preview_budget_ms is not None and not args.preview_budget_ms > 0:
        raise InputError("--preview-budget-ms must be positive")
    if not args.search_delay >= 0:
        raise InputError("--search-delay must be 0 or more")
    if args.reuse_connection_file and not args.connection_file:
        raise InputError("--reuse-connection-file needs --connection-file PATH")
    # Everything that can be refused is refused before torch is imported and the model loads (seconds
    # to minutes): key material, and the connection file, which this backend holds from now on.
    if args.curve_server_key or args.allowed_clients:
        load_curve(args.curve_server_key, args.allowed_clients)
    claim = ConnectionFileClaim(Path(args.connection_file) if args.connection_file else None)
    try:
        return _serve(args, claim, ServiceLimits(wire=Limits(max_frame_bytes=args.max_frame_bytes),
                                                 max_region_pixels=args.max_region_pixels,
                                                 max_sessions=args.max_sessions, rate=args.rate,
                                                 burst=2 * args.rate))
    finally:
        claim.release()


def _serve(args: argparse.Namespace, claim, limits) -> int:
    from ..editing.session import Editor
    from ..service.log import log
    from ..service.server import Server, ServerConfig
    from ..service.worker import keep_torch_in_render_thread

    if args.idle_trim < 0:
        raise InputError("--idle-trim must be 0 or more")
    config = ServerConfig(bind=args.bind, session_timeout=args.session_timeout, limits=limits, idle_trim=args.idle_trim,
                          connection_file=claim.path, curve_secret_file=args.curve_server_key,
                          allowed_clients=args.allowed_clients, claim=claim)
    key = _reuse(config) if args.reuse_connection_file else None
    kw = {} if args.preview_budget_ms is None else {"preview_budget_ms": args.preview_budget_ms}
    log("info", "loading", model=args.model, device=args.device)
    if args.threads is not None and args.threads < 1:
        raise InputError("--threads must be at least 1")
    # torch runs in the render thread only: this thread loads the model with one torch thread
    render_threads = keep_torch_in_render_thread(args.threads)
    editor = Editor(args.model, device=resolve_device(args.device), use_lpips=not args.no_lpips,
                    directions=args.directions, search_table=args.search_table, blend=args.blend,
                    preview_precision=args.preview_precision, commit_precision=args.commit_precision, **kw)
    server = Server(editor, config, key=key, threads=render_threads)
    search = None

    def model_ready(warm: float) -> None:
        """Called once the render thread has timed the preview choice and warmed up, before the
        connection file says the service is there."""
        nonlocal search
        choice = editor.preview_choice()
        log("info", "model_ready", model=editor.name, resolution=editor.generator.resolution,
            directions=list(editor.directions), preview_cost=choice.cost.label(),
            preview_budget_ms=editor.preview_budget_ms, notices=editor.notices, warm_up_s=round(warm, 2),
            precision_decision=editor.precision_report,
            **choice.describe())
        if _wants_background_search(args, choice):
            from ..service.preview_search import PreviewSearch

            search = PreviewSearch(editor, device=args.device, directions=args.directions,
                                   extra_args=["--time-limit", f"{args.search_time_limit:g}",
                                               *(["--threads", str(args.threads)] if args.threads else [])],
                                   in_render_thread=server.in_render_thread)
            server.preview_search = search

    def stop(signum, _frame) -> None:
        log("info", "signal", signal=signal.Signals(signum).name)
        server.stop_event.set()
        server.withdraw()

    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        # the first preview and commit must not pay for building caches: the render thread warms up
        # before the connection file says the service is there
        server.start(warm_up=True, on_warm=model_ready)
        if search is not None:
            search.start(delay=args.search_delay)
        server.serve_forever()
    finally:
        if search is not None:
            search.stop()
        server.close()
        for s, h in old.items():
            signal.signal(s, h)
    sys.stderr.flush()
    return 0


def _wants_background_search(args: argparse.Namespace, choice) -> bool:
    """Search in the background when a search for the preview budget could still improve the
    preview: not when the full generator fits (previews are the final render already), nor when the
    cached table already holds an entry searched for this budget (``choice.searched_ms``); yes when
    it is missing or stale (other weights, machine or renderer) or only holds smaller budgets."""
    import os

    if args.search_table or args.no_background_search or os.environ.get("ANYCOST_BACKGROUND_SEARCH", "1") == "0":
        return False
    return needs_search(choice)


def needs_search(choice) -> bool:
    """Whether a search for ``choice.budget_ms`` could give a better preview than ``choice``."""
    if choice.is_full and choice.fits:
        return False
    return choice.searched_ms is None or choice.searched_ms < choice.budget_ms


def _reuse(config) -> bytes | None:
    """The key of the connection file an earlier backend left (and its endpoint, unless --bind is given)."""
    info = config.claim.read_previous()
    if info is None:
        return None
    if config.bind is None:
        config.bind = info["endpoint"]
    key = info["key_bytes"]
    if len(key) < 16:
        raise InputError(f"{config.claim.path}: the key is too short to sign with")
    return key
