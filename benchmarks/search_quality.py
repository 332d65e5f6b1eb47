"""Searched sub-generators against the uniform ratios, and the latency predictor's error.

    python benchmarks/search_quality.py [--threads N] [--quick] [--skip-demo] [--skip-1024]
                                        [--demo-budgets 30,45,60] [--budgets-1024 300,600,1200]

For the demo model (when its file is present) and for a randomly initialised 1024 px config-f
generator (flexible space, output resolutions 128–256 px to keep CPU time sane), prints:

  * the latency lookup table: how long timing took, and the predictor's relative error against
    whole renders it was not fitted on (fastest of several renders, the predictor's statistic);
  * every uniform (resolution, ratio): predicted and measured ms, consistency with the full
    generator on held-out latents (never used by the search);
  * per budget, the searched sub-generator against the best uniform ratio within the same
    budget (by predicted time, and by measured time), with the difference in dB; then whether
    the search is at least as good at every budget and better at some.

Consistency is PSNR of the sub-generator's image, upsampled to full size, against the full
render (LPIPS too when its backbone is cached locally). Timings on a shared machine are noisy;
the load average is printed, and threads default to torch's choice, as renders use.
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


def run_model(name: str, G: Generator, space: SearchSpace, budgets: list[float] | None, settings: SearchSettings,
              directions, n_test: int, passes: int) -> None:
    print(f"\n== {name}: {G.resolution} px, {space.kind} space of {space.size():,} sub-generators at "
          f"{', '.join(map(str, space.resolutions))} px ==")
    print(f"torch threads {torch.get_num_threads()}, load average {load()}")
    lpips = load_lpips_if_available()
    print("consistency: PSNR" + (" and LPIPS (alex)" if lpips is not None else " only (LPIPS backbone not cached)"))

    t0 = time.perf_counter()
    table, check = latency_table(G, space, cache=False, passes=7, check_configs=10)
    s = table.check
    print(f"latency table: {len(needed_keys(G, space))} layer shapes, timed and fitted in "
          f"{time.perf_counter() - t0:.1f} s (overhead {table.overhead_ms:.2f} ms, scale {table.scale:.2f})")
    print(f"predictor vs {s['n']} {'held-out' if s.get('held_out') else 'fitted'} whole renders: |relative error| "
          f"median {100 * s['median_rel_error']:.1f} %, p90 {100 * s['p90_rel_error']:.1f} %, "
          f"max {100 * s['max_rel_error']:.1f} %, mean signed {100 * s['mean_signed_rel_error']:+.1f} %")
    for row in check.rows:
        print(f"    {row['label']:>14}  predicted {row['predicted_ms']:8.2f}  measured {row['measured_ms']:8.2f} ms "
              f"(median {row['measured_median_ms']:8.2f})  {100 * row['rel_error']:+6.1f} %")

    test = ConsistencyEvaluator(G, consistency_latents(G, n_test, seed=777_000, directions=directions),
                                lpips_model=lpips)
    uniform = space.uniform_configs()
    timed = measure_configs(G, uniform, passes=passes)
    rows = []
    print(f"\nuniform ratios (held-out consistency on {n_test} latents"
          f"{', half of them edited' if directions is not None else ''}):")
    print(f"  {'res:ratio':>10} {'pred ms':>9} {'meas ms':>9} {'PSNR':>7}")
    for c, (fastest, _) in zip(uniform, timed, strict=True):
        p = table.predict_config(G, c)
        q = test(c)
        rows.append((c, p, fastest, q))
        print(f"  {c.label():>10} {p:9.2f} {fastest:9.2f} {q.psnr:7.2f}")

    if budgets is None:  # spread between the cheapest and the richest uniform ratio
        lo, hi = min(r[1] for r in rows), max(r[1] for r in rows)
        budgets = [round(lo * (hi / lo) ** (k / 4), 1) for k in (1, 2, 3)]
    t0 = time.perf_counter()
    result = search(G, budgets, space, table, settings=settings, directions=directions, lpips_model=lpips)
    print(f"\nsearch: budgets {', '.join(f'{b:g}' for b in budgets)} ms, {result.evaluations} sub-generators "
          f"evaluated in {time.perf_counter() - t0:.0f} s")
    print(f"  {'budget':>8} | {'searched':>12} {'pred':>7} {'meas':>7} {'PSNR':>6} | {'uniform≤budget':>14} "
          f"{'pred':>7} {'meas':>7} {'PSNR':>6} {'Δ dB':>6} | {'uniform≤meas':>12} {'Δ dB':>6}")
    deltas, deltas_meas = [], []
    for b in budgets:
        e = result.table.entries.get(f"{b:g}ms")
        if e is None:
            print(f"  {b:8g} | nothing fits")
            continue
        cfg = SubConfig(e.res, tuple(e.channels), e.ratio)
        q = test(cfg)
        base = [r for r in rows if r[1] <= b]
        ub = max(base, key=lambda r: r[3].score) if base else None
        d = q.score - ub[3].score if ub else float("nan")
        meas = e.measured_min_ms
        base_m = [r for r in rows if r[2] <= meas]
        um = max(base_m, key=lambda r: r[3].score) if base_m else None
        dm = q.score - um[3].score if um else float("nan")
        if ub:
            deltas.append(d)
        if um:
            deltas_meas.append(dm)
        ub_txt = (f"{ub[0].label():>14} {ub[1]:7.1f} {ub[2]:7.1f} {ub[3].psnr:6.2f} {d:+6.2f}" if ub
                  else f"{'none fits':>14} {'':>7} {'':>7} {'':>6} {'':>6}")
        um_txt = f"{um[0].label():>12} {dm:+6.2f}" if um else f"{'none':>12} {'':>6}"
        print(f"  {b:8g} | {e.label():>12} {e.predicted_ms:7.1f} {meas:7.1f} {q.psnr:6.2f} | {ub_txt} | {um_txt}")
        if e.ratio is None:
            print(f"  {'':8} |   widths {','.join(map(str, e.channels))}")
    if deltas:
        ok = all(d >= -TOL_DB for d in deltas)
        better = sum(d > TOL_DB for d in deltas)
        print(f"at the same predicted budget: {'at least as good everywhere' if ok else 'WORSE somewhere'} "
              f"(min Δ {min(deltas):+.2f} dB), better at {better} of {len(deltas)} budgets "
              f"(max Δ {max(deltas):+.2f} dB)")
    if deltas_meas:
        ok = all(d >= -TOL_DB for d in deltas_meas)
        print(f"at the same measured time: {'at least as good everywhere' if ok else 'WORSE somewhere'} "
              f"(min Δ {min(deltas_meas):+.2f} dB, max Δ {max(deltas_meas):+.2f} dB)")
    print(f"load average at the end {load()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--quick", action="store_true", help="smaller search and fewer latents")
    ap.add_argument("--skip-demo", action="store_true")
    ap.add_argument("--skip-1024", action="store_true")
    ap.add_argument("--demo-budgets", default=None, help="ms, comma-separated (default: spread over the uniform range)")
    ap.add_argument("--budgets-1024", default=None, help="ms, comma-separated (default: spread over the uniform range)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    q = args.quick
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
                evolution=EvolutionSettings(population=12 if q else 24, generations=4 if q else 10,
                                            parents=4 if q else 8),
                latents=4 if q else 8, validation_latents=8 if q else 16)
            run_model(f"{DEFAULT_MODEL} ({path}, trained as {m.info.get('name')!r})", m.G,
                      SearchSpace(m.G, m.space_kind), parse_budgets(args.demo_budgets) if args.demo_budgets else None,
                      settings, m.directions or None, n_test=8 if q else 16, passes=5)
    if not args.skip_1024:
        torch.manual_seed(0)
        G = Generator(resolution=1024, style_dim=512, n_mlp=8, channel_multiplier=2, channel_max=512).eval()
        settings = SearchSettings(
            evolution=EvolutionSettings(population=8 if q else 12, generations=2 if q else 4, parents=3 if q else 4),
            latents=3 if q else 6, validation_latents=6 if q else 16, finalists=2 if q else 3, measure_passes=3)
        run_model("random 1024 px config-f", G, SearchSpace(G, "flexible", min_res=128, max_res=256),
                  parse_budgets(args.budgets_1024) if args.budgets_1024 else None, settings, None,
                  n_test=4 if q else 12, passes=3)


if __name__ == "__main__":
    main()
