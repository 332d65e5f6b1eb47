"""``anycost search``: find the most faithful sub-generators within latency budgets on this machine."""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import InputError
from ..search.budget import TOLERANCE
from .common import add_device, resolve_device
from .config_flags import add_config_flags, config_from_flags

# Settings without a flag, by class: the evolution's moves and the final choice's rules are the recipe's.
NOT_FLAGS = {
    "EvolutionSettings": ("mutation_share", "layer_prob", "res_prob"),
    "SearchSettings": ("evolution", "finalists", "truncation", "tolerance", "min_gain", "measure_passes"),
}


def register(sub: argparse._SubParsersAction) -> None:
    from ..search.settings import EvolutionSettings, SearchSettings

    p = sub.add_parser(
        "search", help="search sub-generators for latency budgets measured on this machine",
        description="Time every layer of the model on this machine (cached per model and machine), then run an "
                    "evolutionary search per budget for the sub-generator (output resolution and per-layer widths) "
                    "most consistent with the full generator whose predicted render time fits. The table is cached, "
                    "so 'anycost serve' and 'anycost edit --cost preview' use it for the same budget; -o writes a "
                    "copy for --search-table.")
    p.add_argument("--model", default=None, help="model name or file (default: the shipped demo model)")
    p.add_argument("--budget-ms", required=True, metavar="MS[,MS…]",
                   help="render-time budgets in milliseconds, comma-separated (e.g. 40,80,160)")
    p.add_argument("-o", "--output", default=None, help="also write the table to this JSON file")
    p.add_argument("--directions", default=None, help="extra direction file: edited latents are scored too")
    add_device(p)
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice, as 'anycost serve' renders with)")
    p.add_argument("--space", choices=["auto", "flexible", "uniform", "full"], default="auto",
                   help="per-layer widths (flexible), one ratio (uniform) or resolution only (full); "
                        "default: what the model was trained for")
    p.add_argument("--min-res", type=int, default=None, help="lowest output resolution searched "
                                                               "(default: max(32, resolution/8))")
    p.add_argument("--max-res", type=int, default=None, help="highest output resolution searched (default: full)")
    add_config_flags(p, EvolutionSettings, skip=NOT_FLAGS[EvolutionSettings.__name__])
    add_config_flags(p, SearchSettings, skip=NOT_FLAGS[SearchSettings.__name__])
    p.add_argument("--remeasure", action="store_true", help="time the layers again instead of using the cache")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    p.add_argument("--no-lpips", action="store_true", help="score by PSNR only")
    p.add_argument("--nice", type=int, default=0,
                   help="lower this process's CPU priority by N once the layers are timed (for background runs: "
                        "timing needs the CPU the way renders get it, the search does not)")
    p.add_argument("--no-final-timing", action="store_true",
                   help="do not time the chosen sub-generators with whole renders (the table then holds "
                        "predicted times only; the service times an entry before using it)")
    p.add_argument("--parent-pid", type=int, default=None,
                   help="exit as soon as process PID is no longer this one's parent (background runs)")
    p.add_argument("--quiet", action="store_true", help="print only the result table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..search.run import load_model, run_search
    from ..search.settings import EvolutionSettings, SearchSettings
    from ..search.table import parse_budgets

    budgets = parse_budgets(args.budget_ms)
    settings = config_from_flags(SearchSettings, args, evolution=config_from_flags(EvolutionSettings, args))
    evo = settings.evolution
    for name, value in (("population", evo.population), ("generations", evo.generations), ("parents", evo.parents),
                        ("latents", settings.latents), ("validation_latents", settings.validation_latents)):
        if value < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1")
    if evo.parents > evo.population:
        raise InputError("--parents cannot exceed --population")
    if settings.time_limit is not None and settings.time_limit <= 0:
        raise InputError("--time-limit must be positive")
    if args.nice < 0:
        raise InputError("--nice must be 0 or more (it only lowers the priority)")
    if args.parent_pid is not None:
        _exit_with_parent(args.parent_pid)
    if args.threads is not None:
        if args.threads < 1:
            raise InputError("--threads must be at least 1")
        torch.set_num_threads(args.threads)
    out = None
    if args.output:
        from pathlib import Path

        out = Path(args.output)
        if out.suffix.lower() != ".json":
            raise InputError(f"-o must name a .json file, got {out}")
        if out.is_dir():
            raise InputError(f"-o {out} is a directory")
    m = load_model(args.model, resolve_device(args.device), args.directions)
    for r in (args.min_res, args.max_res):
        if r is not None and r not in m.G.resolutions:
            raise InputError(f"--min-res/--max-res must be one of {m.G.resolutions} for this model")
    say = None if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    try:
        result, latency, check = run_search(m, budgets, settings=settings,
                                            space_kind=None if args.space == "auto" else args.space,
                                            min_res=args.min_res, max_res=args.max_res, use_lpips=not args.no_lpips,
                                            cache=not args.no_cache, remeasure=args.remeasure,
                                            measure=not args.no_final_timing,
                                            after_timing=(lambda: os.nice(args.nice)) if args.nice else None,
                                            progress=say)
    except ValueError as e:
        raise InputError(str(e)) from e
    if say:
        say(describe_predictor(latency.check, latency.created, cached=check is None))
    cached = result.table.path
    print(format_table(result.table))
    if out is not None:
        result.table.save(out)
        print(f"table written to {out}")
    if cached is not None and not args.no_cache:
        print(f"cached as {cached}")
    if len(result.table.entries) < len(budgets):
        print("some budgets could not be met: even the cheapest sub-generator is predicted slower", file=sys.stderr)
    if any(e.fits is False for e in result.table.entries.values()):
        print("some entries missed their budget when timed (fits: NO); the service will not use them on this "
              "machine", file=sys.stderr)
    return 0


def _exit_with_parent(pid: int) -> None:
    """A background search must not outlive the service that started it (even one killed outright)."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == pid:
            time.sleep(1.0)
        os._exit(3)

    if os.getppid() != pid:
        raise InputError(f"--parent-pid {pid} is not this process's parent")
    threading.Thread(target=watch, name="anycost-parent-watch", daemon=True).start()


def describe_predictor(check: dict, created: str, *, cached: bool) -> str:
    """One line on the latency predictor's out-of-sample error, also when the table came from the cache."""
    when = f"table {'from the cache, ' if cached else ''}measured {created or 'at an unknown date'}"
    if not check or not check.get("n"):
        return f"latency predictor: no out-of-sample check recorded ({when})"
    which = {"held-out": "renders it was not fitted on",
             "leave-one-out": "renders, each left out of the fit"}.get(check.get("method"), "renders")
    return (f"latency predictor: median error {100 * check['median_rel_error']:.1f} %, 90th percentile "
            f"{100 * check['p90_rel_error']:.1f} %, max {100 * check['max_rel_error']:.1f} % on {check['n']} "
            f"{which} ({when})")


def format_table(table) -> str:
    """One row per budget; the consistency column is the score the search maximised (PSNR, or PSNR
    with the LPIPS penalty when LPIPS decided), with PSNR and LPIPS beside it."""
    rows = [f"{'budget':>8} {'sub-generator':>16} {'pred ms':>8} {'meas ms':>8} {'fits':>5} {'score':>7} {'PSNR':>7} "
            f"{'LPIPS':>6} {'GFLOP':>7}  {'best uniform':>12} {'score':>7}"]
    for key, e in table.entries.items():
        meas = f"{e.measured_ms:8.1f}" if e.measured_ms is not None else f"{'-':>8}"
        fits = {True: "yes", False: "NO", None: "-"}[e.fits]
        lp = f"{e.lpips:6.3f}" if e.lpips is not None else f"{'-':>6}"
        score = e.score if e.score is not None else e.psnr
        base = e.baseline or {}
        bl = base.get("label", "-")
        bs = base.get("score", base.get("psnr"))
        bp = f"{bs:7.2f}" if bs is not None else f"{'-':>7}"
        rows.append(f"{key:>8} {e.label():>16} {e.predicted_ms or 0:8.1f} {meas} {fits:>5} {score or 0:7.2f} "
                    f"{e.psnr or 0:7.2f} {lp} {(e.flops or 0) / 1e9:7.2f}  {bl:>12} {bp}")
        if e.ratio is None:
            rows.append(f"{'':>8} widths {','.join(map(str, e.channels))}")
    from ..search.consistency import LPIPS_DB

    metric = f"PSNR (dB) − {LPIPS_DB:g} × LPIPS" if table.dist_metric == "lpips" else "PSNR (dB)"
    rows.append(f"score: {metric}; fits: median of whole renders within the budget (+{100 * TOLERANCE:g} %)")
    return "\n".join(rows)
