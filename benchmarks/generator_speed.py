"""Rendering speed of the Anycost generator on this machine (CPU, float32, batch 1).

Builds the published 1024px config-f architecture with random weights and prints, for
every output resolution × uniform channel ratio: median wall time of the fast inference
path, its real work (``count_flops``), the achieved GFLOP/s and that as a fraction of this
machine's convolution peak, measured in the same run (3×3 conv, 512→512 channels, 64×64,
batch 1, channels-last). Also: the reference path at full 1024 and at 256px/0.25 (speed-up
measured in the same run), the max abs difference between the two paths, bfloat16 timings
and error, and the peak resident memory of a process that only renders one full 1024 image.

Timings on a shared machine are noisy; the fraction of peak is the figure to compare.

    python benchmarks/generator_speed.py [--threads N] [--quick]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from anycost import Generator, count_flops
from anycost.models.fast_synthesis import render

RESOLUTIONS = (1024, 512, 256, 128)
RATIOS = (1.0, 0.75, 0.5, 0.25)


def timed(fn, repeats: int, warmup: int = 1) -> tuple[float, float]:
    """(median, min) wall seconds of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), min(ts)


def conv_peak(repeats: int) -> float:
    """GFLOP/s of a 3×3 512→512 conv on a 64×64 map, batch 1, channels-last (best of runs)."""
    x = torch.randn(1, 512, 64, 64).contiguous(memory_format=torch.channels_last)
    w = torch.randn(512, 512, 3, 3).contiguous(memory_format=torch.channels_last)
    flops = 2 * 512 * 512 * 9 * 64 * 64
    with torch.no_grad():
        _, best = timed(lambda: F.conv2d(x, w, padding=1), repeats=max(5, repeats * 3), warmup=2)
    return flops / best / 1e9


def _peak_rss_mib() -> float:
    """Peak resident memory of this process image. VmHWM belongs to the memory map that exec
    created, so unlike ru_maxrss it does not inherit the parent's peak across fork + exec."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_child(threads: int) -> None:
    """Entry of the fresh process: build the generator, render one full image, print RSS in MiB."""
    torch.set_num_threads(threads)
    G = Generator(resolution=1024).eval()
    w = G.styles_from_seed(0)
    before = _peak_rss_mib()
    with torch.no_grad():
        G.synthesize(w)
    print(f"{before:.0f} {_peak_rss_mib():.0f}")


def reference_child(threads: int, repeats: int) -> None:
    """Entry of a fresh process with the allocator untouched: time the reference path only."""
    torch.set_num_threads(threads)
    G = Generator(resolution=1024).eval()
    w = G.styles_from_seed(0)
    with torch.no_grad():
        for res, ratio in ((1024, 1.0), (256, 0.25)):
            med, _ = timed(lambda r=res, q=ratio: G.synthesize(w, res=r, channels=q, impl="reference"),
                           repeats if res == 256 else max(1, repeats // 2))
            print(f"{res} {ratio} {med}")


def measure_untuned_reference(threads: int, repeats: int) -> dict[tuple[int, float], float]:
    env = dict(os.environ, ANYCOST_MALLOC_TUNING="0")
    out = subprocess.run([sys.executable, __file__, "--reference-child", "--threads", str(threads),
                          "--repeats", str(repeats)], capture_output=True, text=True, check=True, env=env)
    times = {}
    for line in out.stdout.split("\n"):
        if line.strip():
            res, ratio, t = line.split()
            times[(int(res), float(ratio))] = float(t)
    return times


def measure_rss(threads: int) -> tuple[float, float]:
    out = subprocess.run([sys.executable, __file__, "--rss-child", "--threads", str(threads)],
                         capture_output=True, text=True, check=True)
    before, peak = out.stdout.split()[-2:]
    return float(before), float(peak)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="torch threads (default: all cores)")
    ap.add_argument("--quick", action="store_true", help="fewer repeats and configurations")
    ap.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--reference-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--repeats", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rss_child:
        rss_child(args.threads)
        return 0
    if args.reference_child:
        reference_child(args.threads, args.repeats or 3)
        return 0

    torch.set_num_threads(args.threads)
    repeats = 2 if args.quick else 5
    before, rss = measure_rss(args.threads)
    untuned = measure_untuned_reference(args.threads, 1 if args.quick else 3)
    print(f"torch {torch.__version__}, {args.threads} thread(s), float32, batch 1")
    peak = conv_peak(repeats)
    print(f"conv peak (3x3 512->512 @64x64, channels-last): {peak:.1f} GFLOP/s")

    G = Generator(resolution=1024).eval()
    w = G.styles_from_seed(0)
    resolutions = (1024, 256) if args.quick else RESOLUTIONS
    ratios = (1.0, 0.25) if args.quick else RATIOS

    print()
    print("each row: conv peak re-measured just before it (the machine's load drifts), then the fast path")
    print(f"{'res':>5} {'ratio':>5} {'median ms':>10} {'min ms':>8} {'GFLOP':>7} {'GFLOP/s':>8} "
          f"{'peak GF/s':>9} {'% peak':>7}")
    fast_ms: dict[tuple[int, float], float] = {}
    fractions = []
    with torch.no_grad():
        for res in resolutions:
            for ratio in ratios:
                row_peak = max(conv_peak(1), 1e-9)
                med, best = timed(lambda r=res, q=ratio: G.synthesize(w, res=r, channels=q, impl="fast"),
                                  repeats, warmup=2)
                gflop = count_flops(G, res, ratio) / 1e9
                fast_ms[(res, ratio)] = med * 1e3
                fractions.append(gflop / med / row_peak)
                print(f"{res:>5} {ratio:>5} {med * 1e3:>10.1f} {best * 1e3:>8.1f} {gflop:>7.2f} "
                      f"{gflop / med:>8.1f} {row_peak:>9.1f} {100 * gflop / med / row_peak:>6.1f}%")
    peak_after = conv_peak(repeats)
    print(f"conv peak measured again after the table: {peak_after:.1f} GFLOP/s; "
          f"median fraction of peak over the table: {100 * statistics.median(fractions):.1f}%")

    print()
    print("reference path, alternating with the fast path run for run (same conditions, same process;")
    print("the allocator is tuned by the first fast render, which also speeds the reference path up):")
    with torch.no_grad():
        for res, ratio in ((1024, 1.0), (256, 0.25)):
            reps = 1 if args.quick else (2 if res == 1024 else 5)
            ref_t, fast_t = [], []
            for _ in range(reps + 1):  # the first pair warms up
                for impl, ts in (("reference", ref_t), ("fast", fast_t)):
                    t0 = time.perf_counter()
                    G.synthesize(w, res=res, channels=ratio, impl=impl)
                    ts.append(time.perf_counter() - t0)
            t_ref, t_fast = statistics.median(ref_t[1:]), statistics.median(fast_t[1:])
            ref = G.synthesize(w, res=res, channels=ratio, impl="reference")
            fast = G.synthesize(w, res=res, channels=ratio, impl="fast")
            diff = (ref - fast).abs().max().item()
            u = untuned[(res, ratio)]
            print(f"  {res}px ratio {ratio}: reference {t_ref * 1e3:.0f} ms, fast {t_fast * 1e3:.0f} ms, "
                  f"speed-up {t_ref / t_fast:.2f}x; reference with the default allocator (fresh process, "
                  f"measured earlier) {u * 1e3:.0f} ms ({u / t_fast:.2f}x the fast path); "
                  f"max |fast - reference| = {diff:.2e}")

    print()
    print("bfloat16 feature maps, alternating with float32 (error against the float32 reference image):")
    with torch.no_grad():
        for res, ratio in ((1024, 1.0), (256, 0.25)):
            t32, t16 = [], []
            for _ in range(repeats + 1):
                for dtype, ts in ((None, t32), (torch.bfloat16, t16)):
                    t0 = time.perf_counter()
                    render(G, w, res=res, channels=ratio, dtype=dtype)
                    ts.append(time.perf_counter() - t0)
            m32, m16 = statistics.median(t32[1:]), statistics.median(t16[1:])
            ref = G.synthesize(w, res=res, channels=ratio, impl="reference")
            err = (render(G, w, res=res, channels=ratio, dtype=torch.bfloat16) - ref).abs()
            print(f"  {res}px ratio {ratio}: {m16 * 1e3:.0f} ms vs float32 {m32 * 1e3:.0f} ms "
                  f"({m32 / m16:.2f}x), "
                  f"max abs error {err.max().item():.3f}, mean {err.mean().item():.4f} "
                  f"(image range ±{ref.abs().max().item():.1f})")

    print()
    print(f"peak RSS of a fresh process rendering one full 1024 image: {rss:.0f} MiB "
          f"({before:.0f} MiB before rendering: torch + model)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
