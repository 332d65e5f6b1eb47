"""Editing-engine figures: projection, refinement, preview/full render and paste-back times.

    python benchmarks/editing_speed.py                      # random 1024 config-f + the demo model if installed
    python benchmarks/editing_speed.py --model PATH --steps 100

Prints figures; asserts nothing about time. A model without an encoder starts projection
from the mean latent (its "encoder" time is then the mean-latent render).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import anycost
from anycost.editing.align import align_face
from anycost.editing.paste import paste_back
from anycost.editing.project import ProjectionSettings, Projector
from anycost.editing.region import Region
from anycost.editing.render import pick_preview_cost
from anycost.io.modelfile import save_model


def timed(fn, repeats: int = 3) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), out


def bench_model(label: str, G, E, steps: int, goal_db: float, budget_ms: float) -> None:
    print(f"\n== {label}: {G.resolution}px, style {G.style_dim}, encoder: {'yes' if E is not None else 'no'}")
    with torch.inference_mode():
        target = G.synthesize(G.styles_from_seed(1234, truncation=0.7))  # a face the model can reach
    P = Projector(G, E, settings=ProjectionSettings(steps=steps, report_every=5, use_lpips=True))
    enc_ms, _ = timed(lambda: P.encode(target))
    print(f"encoder projection: {enc_ms:8.1f} ms")
    t0 = time.perf_counter()
    reached = None
    last = None
    for st in P.iter_project(target):
        last = st
        if reached is None and st.psnr >= goal_db:
            reached = (st.step, time.perf_counter() - t0)
    total = time.perf_counter() - t0
    per_step = total / max(1, last.step) * 1000
    print(f"refinement: {last.step} steps in {total:.2f} s ({per_step:.1f} ms/step incl. progress renders), "
          f"PSNR {last.psnr:.2f} dB")
    if reached:
        print(f"  reached {goal_db:.0f} dB after {reached[0]} steps, {reached[1]:.2f} s")
    else:
        print(f"  did not reach {goal_db:.0f} dB within {steps} steps")
    cost = pick_preview_cost(G, budget_ms)
    w = last.w_plus
    with torch.inference_mode():
        prev_ms, _ = timed(lambda: G.synthesize(w, **cost.render_kwargs()), 5)
        full_ms, _ = timed(lambda: G.synthesize(w), 3)
    print(f"preview render ({cost.label()}, budget {budget_ms:.0f} ms): {prev_ms:8.1f} ms")
    print(f"full render:                {full_ms:8.1f} ms")


def bench_paste(size: int, crop: int) -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    region = Region.from_array(img)
    al = align_face(region, crop, use_landmarks=False)
    edited = al.image.copy()
    ms, _ = timed(lambda: paste_back(region, al, edited), 3)
    print(f"paste-back {size}² region ← {crop}² crop: {ms:8.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model file or name (default: the demo model, when installed)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--goal-db", type=float, default=25.0)
    ap.add_argument("--budget-ms", type=float, default=150.0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--skip-1024", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    from anycost.errors import ModelNotFoundError
    from anycost.io.modelfile import is_safetensors, read_model
    from anycost.registry import DEFAULT_MODEL, resolve_model

    try:
        path = resolve_model(args.model or DEFAULT_MODEL)
        if is_safetensors(path):
            mf = read_model(path)
            bench_model(f"model {path.name}", mf.generator(), mf.encoder(), args.steps, args.goal_db, args.budget_ms)
        else:
            bench_model(f"model {path.name}", anycost.load_generator(path), None, args.steps, args.goal_db,
                        args.budget_ms)
    except ModelNotFoundError as e:
        print(f"(no trained model benchmarked: {e})")

    if not args.skip_1024:
        torch.manual_seed(0)
        G = anycost.Generator(resolution=1024).eval()
        with tempfile.TemporaryDirectory() as d:  # through a model file, as users load it
            p = save_model(Path(d) / "random1024.safetensors", generator=G)
            G = anycost.load_generator(p)
        bench_model("random 1024 config-f", G, None, min(args.steps, 5), args.goal_db, args.budget_ms)

    for size, crop in ((512, 256), (1024, 512), (2048, 1024)):
        bench_paste(size, crop)


if __name__ == "__main__":
    main()
