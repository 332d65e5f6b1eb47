"""The socket loop: a ROUTER that validates, authenticates and routes messages, never rendering.

Everything slow happens in the render worker; this thread answers pings, accepts new messages,
enforces limits and collects sessions whose client went silent.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import zmq

from anycost_client import protocol as P
from anycost_client.protocol import Message, ProtocolError, ReplayGuard, decode, encode, error_message

from .. import __version__
from ..editing.paste import BLEND_MODES
from ..errors import InputError
from ..models.fast_synthesis import tune_allocator
from .auth import ConnectionFileClaim, is_loopback_endpoint, load_curve
from .limits import RateLimiter, ServiceLimits
from .log import log
from .sessions import CommitRequest, EditRequest, OpenRequest, Scheduler, Session
from .worker import RenderWorker, cost_spec, preview_fields

CAPABILITIES = ["open", "edit", "commit", "check", "cancel", "close", "ping", "progress-frames", "latest-wins",
                "channel-order-bgra", "mask"]
QUALITIES = ("preview", "full")


@dataclass
class ServerConfig:
    bind: str | None = None  # None = a free loopback TCP port
    connection_file: Path | None = None
    session_timeout: float = 60.0
    limits: ServiceLimits = field(default_factory=ServiceLimits)
    curve_secret_file: str | None = None
    allowed_clients: str | None = None
    claim: ConnectionFileClaim | None = None  # taken early by 'anycost serve'; else taken at start
    idle_trim: float = 30.0  # seconds without renders after which freed memory is given back (0: never)


def _start_authenticator(ctx: zmq.Context, *, password: str | None = None, curve_keys: list[bytes] | None = None):
    """The ZAP handler: peers prove the connection key (PLAIN, a password derived from it) or present an
    allowed CURVE key during the ZeroMQ handshake, before they can send a single message."""
    import hmac

    from zmq.auth.thread import ThreadAuthenticator

    class Authenticator(ThreadAuthenticator):
        def _authenticate_plain(self, domain, username, pw):  # constant time, unlike the stock comparison
            ok = password is not None and username == P.PLAIN_USERNAME and hmac.compare_digest(
                pw.encode("utf-8", "replace"), password.encode())
            return ok, b"OK" if ok else b"wrong credentials"

    auth = Authenticator(ctx)
    if curve_keys is not None:
        auth.certs[P.ZAP_DOMAIN] = {k: True for k in curve_keys}
    auth.start()
    return auth


T = TypeVar("T")

HANDSHAKE_FAILURES = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                      | zmq.EVENT_HANDSHAKE_FAILED_AUTH)


class Server:
    def __init__(self, editor, config: ServerConfig, key: bytes | None = None, *, threads: int | None = None):
        """``threads``: torch threads of the render thread (see ``keep_torch_in_render_thread``); the preview
        sub-generator is timed there when the server starts."""
        self.editor = editor
        self.threads = threads
        self.config = config
        self._trimmed_at: float | None = None
        self.key = key if key is not None else os.urandom(32)
        self.limits = config.limits
        self.ctx = zmq.Context()
        self.scheduler = Scheduler()
        self.replay = ReplayGuard(self.limits.wire)
        self.rate = RateLimiter(self.limits.rate, self.limits.burst)
        # bytes per peer: a second's worth of the largest messages, sustained
        wire = self.limits.wire
        self.byte_rate = RateLimiter(float(wire.message_bytes), 2.0 * wire.message_bytes)
        self.error_rate = RateLimiter(20.0, 40.0)
        # 'rate_limited' answers to signed requests: enough that a client backing off hears each one
        self.rate_reply = RateLimiter(self.limits.rate, self.limits.burst)
        self._deferred: dict[tuple[bytes, str], Message] = {}  # (peer, sid) → newest edit over the rate
        self.coalesced = 0
        self.claim = config.claim
        self.stop_event = threading.Event()
        self.endpoint: str | None = None
        self.connection_path: Path | None = None
        self.curve_public: bytes | None = None
        self._auth = None
        self._handshakes: zmq.Socket | None = None
        self.refused_handshakes = 0
        self._refused_kinds: dict[int, int] = {}
        self._refused_logged = 0.0
        self.started = time.time()
        self.messages = 0
        self.preview_search = None  # a PreviewSearch running for the preview budget, if any
        from ..editing.render import candidate_costs

        # every uniform sub-generator a client may ask for as 'quality', cheapest first
        self._levels = [cost_spec(c, editor.generator)
                        for c in candidate_costs(editor.generator, editor.preview_ratios)]

    # ------------------------------------------------------------------ setup
    def _bind(self) -> None:
        cfg = self.config
        endpoint = cfg.bind
        secure = cfg.curve_secret_file is not None
        if endpoint and not is_loopback_endpoint(endpoint) and not secure:
            raise InputError(
                f"refusing to listen on {endpoint}: a non-loopback address is reachable from other machines, "
                "so it needs CURVE encryption. Pass --curve-server-key FILE and --allowed-clients DIR "
                "(make keys with 'anycost serve --gen-curve-keys DIR'), or bind tcp://127.0.0.1.")
        # bad key material fails here, before any socket exists ('anycost serve' checked it before the model)
        curve = load_curve(cfg.curve_secret_file, cfg.allowed_clients) if secure else None
        router = self.ctx.socket(zmq.ROUTER)
        try:
            self._setup_router(router, curve)
            if endpoint is None:
                port = router.bind_to_random_port("tcp://127.0.0.1")
                endpoint = f"tcp://127.0.0.1:{port}"
            else:
                try:
                    router.bind(endpoint)
                except zmq.ZMQError as e:
                    raise InputError(f"cannot listen on {endpoint}: {e}") from e
                endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT) or endpoint
        except BaseException:
            router.close(0)
            self._stop_auth()
            raise
        self.router = router
        self.endpoint = endpoint
        # refused handshakes (peers without the key) are counted and logged, at most a line a second
        self._handshakes = router.get_monitor_socket(HANDSHAKE_FAILURES)
        self.pull = self.ctx.socket(zmq.PULL)
        self.pull.setsockopt(zmq.LINGER, 0)
        self._out_endpoint = f"inproc://anycost-out-{id(self)}"
        self.pull.bind(self._out_endpoint)

    def _setup_router(self, router: zmq.Socket, curve: tuple[bytes, bytes, list[bytes]] | None) -> None:
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a reconnecting client keeps its identity
        router.setsockopt(zmq.ROUTER_MANDATORY, 0)
        # zmq drops peers sending frames far beyond our limit before they reach Python. Peers that do not
        # know the key never get past the handshake (ZAP below): what they can make us hold is one
        # handshake frame (at most this size) for at most HANDSHAKE_IVL
        wire = self.limits.wire
        router.setsockopt(zmq.MAXMSGSIZE, 2 * wire.max_frame_bytes + wire.max_header_bytes)
        router.setsockopt(zmq.HANDSHAKE_IVL, 5000)
        router.setsockopt(zmq.SNDHWM, 1000)
        router.setsockopt(zmq.RCVHWM, 1000)
        router.setsockopt(zmq.ZAP_DOMAIN, P.ZAP_DOMAIN.encode())
        if curve is not None:
            public, secret, clients = curve
            self._auth = _start_authenticator(self.ctx, curve_keys=clients)
            router.setsockopt(zmq.CURVE_SERVER, 1)
            router.setsockopt(zmq.CURVE_PUBLICKEY, public)
            router.setsockopt(zmq.CURVE_SECRETKEY, secret)
            self.curve_public = public
        else:
            self._auth = _start_authenticator(self.ctx, password=P.plain_password(self.key))
            router.setsockopt(zmq.PLAIN_SERVER, 1)

    def _stop_auth(self) -> None:
        auth, self._auth = self._auth, None
        if auth is not None:
            auth.stop()

    def start(self, *, warm_up: bool = False, on_warm: Callable[[float], None] | None = None) -> None:
        """Bind, start the render worker and write the connection file. With ``warm_up`` the worker first
        renders once at preview and full cost (``Editor.warm_up``, in its own thread, where renders run)
        and ``on_warm(seconds)`` is called before the connection file says the service is there."""
        self._bind()
        if str(getattr(self.editor, "device", "cpu")).startswith("cpu"):
            # before the render thread exists: created earlier, it would have a malloc arena of its own,
            # whose large blocks are mapped and unmapped at every render (full 1024 px renders 1.6x slower)
            tune_allocator()
        self.worker = RenderWorker(self.editor, self.scheduler, self.ctx, self._out_endpoint, self.key,
                                   max_region_pixels=self.limits.max_region_pixels, warm_up=warm_up,
                                   threads=self.threads)
        self.worker.start()
        self.worker.warmed.wait()
        if self.worker.warm_up_error is not None:
            raise self.worker.warm_up_error
        if on_warm is not None:
            on_warm(self.worker.warm_up_s or 0.0)
        info = {
            "endpoint": self.endpoint, "key": self.key.hex(), "signature_scheme": "hmac-sha256",
            "pid": os.getpid(), "protocol_version": P.PROTOCOL_VERSION,
            "supported_versions": list(P.SUPPORTED_VERSIONS), "transport": self.endpoint.split("://")[0],
            "model": self.editor.name, "server": f"anycost {__version__}",
            "curve_server_key": self.curve_public.decode() if self.curve_public else None,
            # how a client proves itself in the handshake: 'plain' (a password derived from the key) or
            # 'curve' (an allowed client key); files without it come from backends that asked for neither
            "auth": "curve" if self.curve_public else "plain",
        }
        if self.claim is None:
            self.claim = ConnectionFileClaim(self.config.connection_file)
        if self.claim.fallback:
            log("warning", "runtime_dir_fallback", reason=self.claim.fallback, folder=str(self.claim.path.parent))
        self.connection_path = self.claim.write(info)
        log("info", "listening", endpoint=self.endpoint, connection_file=str(self.connection_path),
            model=self.editor.name, pid=os.getpid(), curve=bool(self.curve_public),
            auth="curve" if self.curve_public else "plain")

    def in_render_thread(self, fn: Callable[[], T], timeout: float | None = 600.0) -> T:
        """``fn()`` run by the render thread (torch work from another thread: see
        ``keep_torch_in_render_thread``), between units of session work; its result or its error."""
        return self.scheduler.submit_task(fn).result(timeout)

    def withdraw(self) -> None:
        """Remove the connection file (if it is still ours): no new client finds this server. Safe from a
        signal handler."""
        self.connection_path = None
        if self.claim is not None:
            self.claim.withdraw()

    def close(self) -> None:
        self.stop_event.set()
        self.withdraw()  # first: whatever follows may be slow, and a stopping server must not be found
        t0 = time.monotonic()
        for sid in list(self.scheduler.sessions):
            self.scheduler.remove(sid)
        if getattr(self, "worker", None) is not None:
            self.worker.stop_event.set()
            self.scheduler.wake()
            self.worker.join(timeout=10)
        self._stop_auth()
        if self._handshakes is not None:
            self.router.disable_monitor()
            self._handshakes.close(0)
        for sock in (getattr(self, "router", None), getattr(self, "pull", None)):
            if sock is not None:
                sock.close(0)
        self.ctx.term()
        if self.claim is not None:
            self.claim.release()
        log("info", "stopped", seconds=round(time.monotonic() - t0, 3))

    # ------------------------------------------------------------------ loop
    def serve_forever(self) -> None:
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.pull, zmq.POLLIN)
        poller.register(self._handshakes, zmq.POLLIN)
        next_sweep = time.monotonic() + 0.5
        while not self.stop_event.is_set():
            try:
                events = dict(poller.poll(20 if self._deferred else 200))
            except zmq.ZMQError as e:
                if e.errno == zmq.EINTR:
                    continue
                raise
            if self.pull in events:
                for _ in range(64):  # forward worker replies, a bounded batch per turn
                    try:
                        parts = self.pull.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    self.router.send_multipart(parts, copy=False)
            if self.router in events:
                for _ in range(64):
                    try:
                        parts = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    self._on_parts(parts)
            if self._handshakes in events:
                self._count_refused()
            if self._deferred:
                self._flush_deferred()
            now = time.monotonic()
            if now >= next_sweep:
                next_sweep = now + 0.5
                self._collect(now)

    def _trim_when_idle(self, now: float) -> None:
        """Once the render worker has been idle for ``idle_trim`` seconds, give freed memory back (once
        per idle spell): renders keep freed blocks for speed, a service that runs all day must not."""
        worker = getattr(self, "worker", None)
        if worker is None or self.config.idle_trim <= 0:
            return
        idle_since = worker.last_active
        if now - idle_since >= self.config.idle_trim and self._trimmed_at != idle_since:
            from ..models.fast_synthesis import release_memory

            self._trimmed_at = idle_since
            before = _rss_mb()
            released = release_memory()
            log("info", "memory_trimmed", released=released, rss_mb_before=before, rss_mb_after=_rss_mb())

    def _count_refused(self) -> None:
        from zmq.utils.monitor import recv_monitor_message

        while self._handshakes.poll(0):
            event = recv_monitor_message(self._handshakes)
            self.refused_handshakes += 1
            self._refused_kinds[event["event"]] = self._refused_kinds.get(event["event"], 0) + 1
        now = time.monotonic()
        if now - self._refused_logged >= 1.0:
            self._refused_logged = now
            names = {zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "no key (mechanism or protocol)",
                     zmq.EVENT_HANDSHAKE_FAILED_AUTH: "wrong key", zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "other"}
            log("warning", "handshake_refused", refused_so_far=self.refused_handshakes,
                kinds={names.get(k, str(k)): n for k, n in self._refused_kinds.items()})

    def _collect(self, now: float) -> None:
        self._trim_when_idle(now)
        for sid in self.scheduler.expired(self.config.session_timeout, now):
            s = self.scheduler.remove(sid)
            if s is not None:
                log("info", "session_collected", sid=sid, reason="client silent",
                    timeout=self.config.session_timeout)

    # ------------------------------------------------------------------ replies
    def _send(self, peer: bytes, msg: Message) -> None:
        self.router.send_multipart([peer, *encode(msg, self.key)], copy=False)

    def _error(self, peer: bytes, code: str, text: str, request_id=None, sid=None, seq=None,
               fatal: bool = False) -> None:
        if not self.error_rate.allow(peer):
            return  # a peer flooding bad messages gets silence, not a flood back
        self._send_error(peer, code, text, request_id, sid, seq, fatal)

    def _send_error(self, peer: bytes, code: str, text: str, request_id=None, sid=None, seq=None,
                    fatal: bool = False) -> None:
        m = error_message(code, text, request_id=request_id, session_id=sid, fatal=fatal)
        m.seq = seq
        self._send(peer, m)

    # ------------------------------------------------------------------ dispatch
    def _on_parts(self, frames: list) -> None:
        """One multipart from the ROUTER: bounded, verified, rate limited, then handled. Nothing of it is
        copied before ``check_envelope`` and the signature have passed."""
        self.messages += 1
        peer = bytes(frames[0].buffer)
        parts = [f.buffer for f in frames[1:]]
        try:  # decode bounds the frame count and sizes (check_envelope) before it verifies or copies anything
            msg = decode(parts, self.key, limits=self.limits.wire, replay=self.replay, expect=P.CLIENT_TYPES)
        except ProtocolError as e:
            log("warning", "rejected", code=e.code, reason=e.message, peer=peer.hex()[:16])
            self._error(peer, e.code, e.message, e.request_id, e.session_id)
            return
        self.scheduler.touch_peer(peer)
        size = sum(p.nbytes for p in parts)
        if not (self.rate.allow(peer) and self.byte_rate.allow(peer, float(size))):
            if msg.type == "edit" and self._defer(peer, msg):
                return
            if self.rate_reply.allow(peer):
                self._send_error(peer, P.E_RATE, f"too many messages: the limit is {self.limits.rate:g} per second; "
                                                 "send this request again a little later", msg.request_id,
                                 msg.session_id, msg.seq)
            return
        if msg.session_id is not None and (peer, msg.session_id) in self._deferred:
            self._dispatch(peer, self._deferred.pop((peer, msg.session_id)))  # keep the session's order
        self._dispatch(peer, msg)

    def _defer(self, peer: bytes, msg: Message) -> bool:
        """Coalesce an edit over the rate: it replaces the session's deferred edit (latest wins, as in the
        scheduler) and is handled when the peer's rate allows, so the last edit is never lost."""
        s = self.scheduler.get(msg.session_id, peer)
        if s is None:
            return False
        if self._deferred.get((peer, s.sid)) is not None:
            self.coalesced += 1
        self._deferred[(peer, s.sid)] = msg
        return True

    def _flush_deferred(self) -> None:
        for (peer, sid), msg in list(self._deferred.items()):
            if self.scheduler.get(sid, peer) is None:
                del self._deferred[(peer, sid)]
            elif self.rate.allow(peer):
                del self._deferred[(peer, sid)]
                self._dispatch(peer, msg)

    def _dispatch(self, peer: bytes, msg: Message) -> None:
        try:
            getattr(self, f"_on_{msg.type}")(peer, msg)
        except InputError as e:
            self._error(peer, P.E_INPUT, str(e), msg.request_id, msg.session_id, msg.seq)
        except Exception as e:  # a handler bug must not take the backend down
            log("error", "handler_failed", type=msg.type, error=repr(e))
            self._error(peer, P.E_INTERNAL, f"internal error handling {msg.type!r}: {e}", msg.request_id,
                        msg.session_id, msg.seq)

    def _on_ping(self, peer: bytes, msg: Message) -> None:
        self._send(peer, Message("pong", {"server_time": time.time(), "sessions": self.scheduler.count()},
                                 request_id=msg.request_id))

    def _on_hello(self, peer: bytes, msg: Message) -> None:
        offered = msg.get("versions", [msg.version])
        if not isinstance(offered, list):
            offered = [msg.version]
        common = sorted({v for v in offered if isinstance(v, int) and not isinstance(v, bool)}
                        & set(P.SUPPORTED_VERSIONS))
        if not common:
            self._error(peer, P.E_VERSION, f"no common protocol version: client offers {offered[:8]}, this backend "
                                           f"speaks {list(P.SUPPORTED_VERSIONS)}; update the older side",
                        msg.request_id, fatal=True)
            return
        ed = self.editor
        G = ed.generator
        directions = ed.directions.slider_specs()  # hidden ones marked: dialogs leave them out
        welcome = Message("welcome", {
            "server": f"anycost {__version__}",
            "capabilities": CAPABILITIES,
            "models": [{"name": ed.name, "resolution": G.resolution, "resolutions": list(G.resolutions),
                        "face": ed.is_face_model, "encoder": ed.encoder is not None, "notices": ed.notices}],
            "directions": directions,
            # how the preview was chosen and what it costs here (it may change once a background
            # search finishes: each ready repeats it; previews carry the cost they were rendered at)
            "costs": {**preview_fields(ed), "full": f"{G.resolution}:1", "levels": self._levels,
                      "preview_search": self.preview_search.state if self.preview_search else "off"},
            "limits": self.limits.describe(),
            "session_timeout": self.config.session_timeout,
        }, request_id=msg.request_id, version=common[-1])
        self._send(peer, welcome)

    def _on_open(self, peer: bytes, msg: Message) -> None:
        lim = self.limits
        if self.scheduler.count() >= lim.max_sessions:
            self._error(peer, P.E_BUSY, f"the backend already holds {lim.max_sessions} sessions; close one or "
                                        "try again later", msg.request_id)
            return
        if self.scheduler.count(peer) >= lim.max_sessions_per_peer:
            self._error(peer, P.E_BUSY, f"this client already holds {lim.max_sessions_per_peer} sessions",
                        msg.request_id)
            return
        model = msg.get("model")
        if model not in (None, "", self.editor.name):
            self._error(peer, P.E_MODEL, f"this backend serves model {self.editor.name!r}, not {model!r}",
                        msg.request_id)
            return
        if not msg.frames or msg.frames[0].fmt != "RGBA8":
            raise InputError("open needs the region's pixels as an RGBA8 frame")
        frame = msg.frames[0]
        mask = msg.frames[1] if len(msg.frames) > 1 else None
        if mask is not None and mask.fmt != "A8":
            raise InputError("the second frame of open (the selection mask) must be A8")
        if mask is not None and (mask.width, mask.height) != (frame.width, frame.height):
            raise InputError(f"the selection mask is {mask.width}×{mask.height} pixels but the region is "
                             f"{frame.width}×{frame.height}; they must be the same size")
        if frame.width * frame.height > lim.max_region_pixels:
            self._error(peer, P.E_TOO_LARGE, f"the region is {frame.width}×{frame.height} pixels; this backend "
                                             f"accepts at most {lim.max_region_pixels} pixels", msg.request_id)
            return
        options = msg.get("options") or {}
        if not isinstance(options, dict):
            raise InputError("open options must be a map")
        order = str(options.get("channel_order", "RGBA")).upper()
        if order not in ("RGBA", "BGRA"):
            raise InputError(f"channel_order must be RGBA or BGRA, got {order!r}")
        steps = options.get("refine_steps", 0)
        if not isinstance(steps, int) or isinstance(steps, bool) or not 0 <= steps <= 10_000:
            raise InputError("refine_steps must be an integer in 0..10000")
        blend = options.get("blend")
        if blend is not None and blend not in BLEND_MODES:
            raise InputError(f"blend must be one of {', '.join(BLEND_MODES)}, got {blend!r}")
        if not isinstance(options.get("drafts", False), bool):
            raise InputError("drafts must be true or false")
        budget = options.get("time_budget")
        if budget is not None and not (isinstance(budget, int | float) and math.isfinite(budget) and budget >= 0):
            raise InputError("time_budget must be a non-negative number of seconds")
        sid = self.scheduler.new_sid()
        s = Session(sid, peer, OpenRequest(msg.request_id, frame, mask, options), channel_order=order)
        s.opening = self.worker.open_job(s)
        self.scheduler.add(s)
        log("info", "session_opened", sid=sid, size=f"{frame.width}x{frame.height}", refine_steps=steps,
            peer=peer.hex()[:16])

    def _session(self, peer: bytes, msg: Message) -> Session | None:
        s = self.scheduler.get(msg.session_id, peer)
        if s is None:
            self._error(peer, P.E_NO_SESSION, f"no session {msg.session_id!r} (closed, collected after "
                                              f"{self.config.session_timeout:g} s of silence, or never opened)",
                        msg.request_id, msg.session_id, msg.seq)
        return s

    def _sliders(self, s: Session, raw) -> dict[str, float]:
        """Check slider values (``Editor.check_sliders``) and merge them into the session's state; returns a
        snapshot. A refusal changes nothing."""
        s.sliders = {**s.sliders, **self.editor.check_sliders({} if raw is None else raw)}
        return dict(s.sliders)

    def _on_edit(self, peer: bytes, msg: Message) -> None:
        s = self._session(peer, msg)
        if s is None:
            return
        if msg.seq is None:
            raise InputError("edit needs a 'seq' (increasing per session)")
        quality = msg.get("quality")
        quality = "preview" if quality is None else quality
        self.editor.cost(quality)  # refused here, as bad_input, rather than by the worker
        req = EditRequest(msg.request_id, msg.seq, self._sliders(s, msg.get("sliders")), quality)
        old = self.scheduler.submit_edit(s, req)
        if old is not None:
            self._cancelled(s, old, "superseded by a newer edit")

    def _on_commit(self, peer: bytes, msg: Message) -> None:
        s = self._session(peer, msg)
        if s is None:
            return
        options = msg.get("options") or {}
        if not isinstance(options, dict):
            raise InputError("commit options must be a map")
        cost = options.get("cost", "full")
        self.editor.cost(cost)
        req = CommitRequest(msg.request_id, msg.seq, self._sliders(s, msg.get("sliders")), cost)
        old = self.scheduler.submit_commit(s, req)
        if old is not None:
            self._cancelled(s, old, "superseded by a newer commit")

    def _on_check(self, peer: bytes, msg: Message) -> None:
        """Whether a commit with these sliders and this cost would be taken, asked before a region is sent:
        a one-shot edit learns of a wrong slider or cost at once, not after the projection."""
        sliders = msg.get("sliders")
        self.editor.check_sliders({} if sliders is None else sliders)
        self.editor.cost(msg.get("cost", "full"))
        self._send(peer, Message("done", {"what": "check"}, request_id=msg.request_id))

    def _cancelled(self, s: Session, req: CommitRequest, why: str) -> None:
        self._error(s.peer, P.E_CANCELLED, f"commit cancelled: {why}", req.request_id, s.sid, req.seq)

    def _on_cancel(self, peer: bytes, msg: Message) -> None:
        s = self._session(peer, msg)
        if s is None:
            return
        target = msg.get("target") or "all"
        if target not in ("all", "refine", "commit", "edit"):
            raise InputError("cancel target must be 'all', 'refine', 'commit' or 'edit'")
        old = self.scheduler.cancel(s, target)
        if old is not None:
            self._cancelled(s, old, "cancelled by the client")
        self._send(peer, Message("done", {"what": "cancel"}, request_id=msg.request_id, session_id=s.sid,
                                 seq=msg.seq))

    def _on_close(self, peer: bytes, msg: Message) -> None:
        s = self._session(peer, msg)
        if s is None:
            return
        self.scheduler.remove(s.sid)
        log("info", "session_closed", sid=s.sid, edits=s.edits_received, previews=s.previews_rendered,
            drafts=s.drafts, abandoned=s.previews_abandoned)
        self._send(peer, Message("done", {"what": "close"}, request_id=msg.request_id, session_id=s.sid))


def _rss_mb() -> float | None:
    """Resident memory of this process in MB (Linux), for the log."""
    try:
        with open("/proc/self/statm") as f:
            return round(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return None
