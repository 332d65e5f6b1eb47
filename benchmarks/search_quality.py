"""Searched sub-generators against the uniform ratios, and the latency predictor's error.

    python benchmarks/search_quality.py [--threads N] [--quick | --smoke] [--skip-demo] [--skip-1024]
                                        [--budgets 7] [--demo-budgets 30,45,60] [--budgets-1024 300,600,1200]
                                        [--min-res-1024 128] [--max-res-1024 256]

For the demo model (when its file is present) and for a randomly initialised 1024 px config-f
generator (flexible space; outputs 128–256 px by default, since larger ones take minutes per set
of renders on a CPU: the header says which, and --max-res-1024 extends it), prints:

  * the latency lookup table: how long timing took, and the predictor's relative error out of
    sample (renders it was not fitted on, or leave-one-out in small spaces);
  * every uniform (resolution, ratio): predicted and measured ms, consistency with the full
    generator on held-out latents (never used by the search);
  * per budget (7 by default, spread over the uniform range), the searched sub-generator against
    the best uniform ratio within the same budget, and against the best uniform ratio no slower
    than the searched one. Searched and uniform configurations are timed together, in the same
    interleaved passes (median of several renders, the statistic of the fit rule), so one
    configuration has one time.

The verdict per model is whether, at the same measured latency, the search is at least as good
everywhere (within 0.05, the noise of the held-out latents) and better somewhere; the script exits
with status 1 when it is not. Consistency is PSNR of the sub-generator's image, upsampled to full
size, against the full render (minus 30 × LPIPS when its backbone is cached locally). Timings on a
shared machine are noisy: the load average is printed; threads default to torch's choice, as
renders use. ``--smoke`` only checks that the script runs.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from anycost import Generator
from anycost.search.consistency import ConsistencyEvaluator, consistency_latents, load_lpips_if_available
from anycost.search.evolution import EvolutionSettings, SearchSettings, search
from anycost.search.latency import latency_table, measure_configs, needed_keys
from anycost.search.space import SearchSpace, SubConfig
from anycost.search.table import parse_budgets

TOL_DB = 0.05  # differences this small are evaluation noise, not a loss


def load() -> str:
    try:
        return "{:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
    except OSError:
        return "n/a"


def run_model(name: str, G: Generator, space: SearchSpace, budgets: list[float] | None, n_budgets: int,
              settings: SearchSettings, directions, n_test: int, passes: int, smoke: bool = False) -> bool | None:
    """Prints the comparison; True when the search is at least as good everywhere and better somewhere
    at the same measured latency, False when not, None when there was nothing to compare."""
    print(f"\n== {name}: {G.resolution} px, {space.kind} space of {space.size():,} sub-generators at "
          f"{', '.join(map(str, space.resolutions))} px ==")
    print(f"torch threads {torch.get_num_threads()}, load average {load()}")
    lpips = load_lpips_if_available()
    print("consistency: PSNR" + (" and LPIPS (alex)" if lpips is not None else " only (LPIPS backbone not cached)"))

    t0 = time.perf_counter()
    table, check = latency_table(G, space, cache=False, passes=1 if smoke else 7, check_configs=2 if smoke else 10)
    s = table.check
    print(f"latency table: {len(needed_keys(G, space))} layer shapes, timed and fitted in "
          f"{time.perf_counter() - t0:.1f} s (overhead {table.overhead_ms:.2f} ms, scale {table.scale:.2f})")
    if s.get("n"):
        print(f"predictor vs {s['n']} whole renders, out of sample ({s['method']}): |relative error| "
              f"median {100 * s['median_rel_error']:.1f} %, p90 {100 * s['p90_rel_error']:.1f} %, "
              f"max {100 * s['max_rel_error']:.1f} %, mean signed {100 * s['mean_signed_rel_error']:+.1f} %")
    for row in check.rows:
        print(f"    {row['label']:>14}  predicted {row['predicted_ms']:8.2f}  measured {row['measured_ms']:8.2f} ms "
              f"(median {row['measured_median_ms']:8.2f})  {100 * row['rel_error']:+6.1f} %")

    uniform = space.uniform_configs()
    predicted = {c: table.predict_config(G, c) for c in uniform}
    if budgets is None:  # spread (geometrically) between the cheapest and the richest uniform ratio
        lo, hi = min(predicted.values()), max(predicted.values())
        budgets = [round(lo * (hi / lo) ** (k / (n_budgets + 1)), 2) for k in range(1, n_budgets + 1)]
    t0 = time.perf_counter()
    result = search(G, budgets, space, table, settings=settings, directions=directions, lpips_model=lpips,
                    measure=False)
    print(f"\nsearch: budgets {', '.join(f'{b:g}' for b in budgets)} ms, {result.evaluations} sub-generators "
          f"evaluated in {time.perf_counter() - t0:.0f} s")

    # Searched and uniform configurations timed together, in the same interleaved passes: a change
    # of load then touches both alike, and one configuration has one time.
    searched = {b: result.table.entries.get(f"{b:g}ms") for b in budgets}
    configs = list(dict.fromkeys([*uniform, *(SubConfig(e.res, tuple(e.channels), e.ratio)
                                               for e in searched.values() if e is not None)]))
    timed = dict(zip(configs, measure_configs(G, configs, passes=passes), strict=True))  # (fastest, median)
    test = ConsistencyEvaluator(G, consistency_latents(G, n_test, seed=777_000, directions=directions),
                                lpips_model=lpips)
    metric = "score" if lpips is not None else "PSNR"
    print(f"\nuniform ratios (held-out consistency on {n_test} latents"
          f"{', half of them edited' if directions is not None else ''}; times: median of {passes} renders):")
    print(f"  {'res:ratio':>10} {'pred ms':>9} {'meas ms':>9} {metric:>7}")
    rows = []
    for c in uniform:
        q = test(c)
        rows.append((c, predicted[c], timed[c][1], q))
        print(f"  {c.label():>10} {predicted[c]:9.2f} {timed[c][1]:9.2f} {q.score:7.2f}")

    print(f"\n  {'budget':>8} | {'searched':>12} {'pred':>7} {'meas':>7} {metric:>6} | {'uniform≤budget':>14} "
          f"{'meas':>7} {metric:>6} {'Δ':>6} | {'uniform≤meas':>12} {'meas':>7} {'Δ':>6}")
    deltas, deltas_meas = [], []
    for b in budgets:
        e = searched[b]
        if e is None:
            print(f"  {b:8g} | nothing fits")
            continue
        cfg = SubConfig(e.res, tuple(e.channels), e.ratio)
        q = test(cfg)
        meas = timed[cfg][1]
        # the best uniform ratio within the budget (by prediction, as the search saw it), and the best
        # uniform ratio no slower than the searched one when timed together (the frontier comparison)
        ub = max((r for r in rows if r[1] <= b), key=lambda r: r[3].score, default=None)
        um = max((r for r in rows if r[2] <= meas), key=lambda r: r[3].score, default=None)
        d = q.score - ub[3].score if ub else float("nan")
        dm = q.score - um[3].score if um else float("nan")
        if ub:
            deltas.append(d)
        if um:
            deltas_meas.append(dm)
        ub_txt = f"{ub[0].label():>14} {ub[2]:7.1f} {ub[3].score:6.2f} {d:+6.2f}" if ub else f"{'none':>14} {'':>21}"
        um_txt = f"{um[0].label():>12} {um[2]:7.1f} {dm:+6.2f}" if um else f"{'none slower':>12} {'':>14}"
        print(f"  {b:8g} | {e.label():>12} {e.predicted_ms:7.1f} {meas:7.1f} {q.score:6.2f} | {ub_txt} | {um_txt}")
        if e.ratio is None:
            print(f"  {'':8} |   widths {','.join(map(str, e.channels))}")
    if deltas:
        ok = all(x >= -TOL_DB for x in deltas)
        print(f"within the same budget: {'at least as good everywhere' if ok else 'WORSE somewhere'} "
              f"(min Δ {min(deltas):+.2f}, max Δ {max(deltas):+.2f}), better at {sum(x > TOL_DB for x in deltas)} "
              f"of {len(deltas)} budgets")
    verdict = None
    if deltas_meas:
        ok = all(x >= -TOL_DB for x in deltas_meas)
        better = sum(x > TOL_DB for x in deltas_meas)
        verdict = ok and better > 0
        print(f"at the same measured latency: {'at least as good everywhere' if ok else 'WORSE somewhere'} "
              f"(min Δ {min(deltas_meas):+.2f}, max Δ {max(deltas_meas):+.2f}), better at {better} of "
              f"{len(deltas_meas)} budgets -> {'PASS' if verdict else 'FAIL'}")
    print(f"load average at the end {load()}")
    return verdict


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--quick", action="store_true", help="smaller search and fewer latents")
    ap.add_argument("--smoke", action="store_true",
                    help="the smallest settings, to check the script runs (its figures mean nothing)")
    ap.add_argument("--skip-demo", action="store_true")
    ap.add_argument("--skip-1024", action="store_true")
    ap.add_argument("--budgets", type=int, default=7, help="budgets per model when not given (default 7)")
    ap.add_argument("--demo-budgets", default=None, help="ms, comma-separated (default: spread over the uniform range)")
    ap.add_argument("--budgets-1024", default=None, help="ms, comma-separated (default: spread over the uniform range)")
    ap.add_argument("--min-res-1024", type=int, default=128, help="lowest output searched for 1024 px (default 128)")
    ap.add_argument("--max-res-1024", type=int, default=256,
                    help="highest output searched for 1024 px (default 256: larger outputs take minutes per render "
                         "set on a CPU)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    q, smoke = args.quick or args.smoke, args.smoke
    verdicts = []
    if not args.skip_demo:
        from anycost.registry import DEFAULT_MODEL, PACKAGE_MODELS, find_local
        from anycost.search.run import load_model

        path = find_local(DEFAULT_MODEL)
        if path is None:
            expected = PACKAGE_MODELS / f"{DEFAULT_MODEL}.safetensors"
            print(f"\n== {DEFAULT_MODEL}: NOT PRESENT (expected at {expected}); skipped ==")
        else:
            m = load_model(DEFAULT_MODEL)
            settings = SearchSettings(
                evolution=EvolutionSettings(population=4 if smoke else 12 if q else 24,
                                            generations=1 if smoke else 4 if q else 10,
                                            parents=2 if smoke else 4 if q else 8),
                latents=2 if smoke else 4 if q else 8, validation_latents=2 if smoke else 8 if q else 16)
            space = SearchSpace(m.G, m.space_kind, min_res=64 if smoke else None)
            verdicts.append(run_model(f"{DEFAULT_MODEL} ({path}, trained as {m.info.get('name')!r})", m.G, space,
                                      parse_budgets(args.demo_budgets) if args.demo_budgets else None,
                                      2 if smoke else args.budgets, settings, m.directions or None,
                                      n_test=2 if smoke else 8 if q else 16, passes=2 if smoke else 7, smoke=smoke))
    if not args.skip_1024:
        torch.manual_seed(0)
        G = Generator(resolution=1024, style_dim=512, n_mlp=8, channel_multiplier=2, channel_max=512).eval()
        lo, hi = (128, 128) if smoke else (args.min_res_1024, args.max_res_1024)
        settings = SearchSettings(
            evolution=EvolutionSettings(population=4 if smoke else 8 if q else 12,
                                        generations=1 if smoke else 2 if q else 4,
                                        parents=2 if smoke else 3 if q else 4),
            latents=1 if smoke else 3 if q else 6, validation_latents=1 if smoke else 6 if q else 16,
            finalists=1 if smoke else 2 if q else 3, measure_passes=3)
        verdicts.append(run_model(f"random 1024 px config-f, outputs limited to {lo}–{hi} px "
                                  "(--min-res-1024/--max-res-1024 to change)", G,
                                  SearchSpace(G, "flexible", min_res=lo, max_res=hi),
                                  parse_budgets(args.budgets_1024) if args.budgets_1024 else None,
                                  2 if smoke else args.budgets, settings, None,
                                  n_test=1 if smoke else 4 if q else 12, passes=2 if smoke else 3, smoke=smoke))
    failed = [v for v in verdicts if v is False]
    verdict = "FAIL: the search is not at least as good everywhere and better somewhere" if failed else "PASS"
    print(f"\noverall: {verdict}" + (" (smoke settings: not a measurement)" if smoke else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
