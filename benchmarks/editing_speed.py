"""Editing-engine figures: projection, refinement, preview/full render and paste-back times.

    python benchmarks/editing_speed.py                               # demo model + random 1024 config-f
    python benchmarks/editing_speed.py --model PATH --faces 4 --steps 100 --steps-1024 10
    python benchmarks/editing_speed.py --device cuda --threads 4

The trained model projects held-out synthetic faces (the same ones benchmarks/model_quality.py
uses, never seen in training), drawn at the model's resolution. For each face it prints the
encoder's PSNR, the steps and seconds until refinement reaches the PSNR goal (or that it was not
reached, with the PSNR at the last step) and the PSNR of the final answer (the best latent seen).
Refinement reports progress every step, as the service streams it, so PSNR is known per step;
the time per step is given with and without that progress render.

The random 1024 config-f gets a seeded random encoder of the published architecture (ResNet-50
backbone, 18 × 512 W+ head, 256² input), so the encoder-projection time is that of the real one.
Neither is trained: the PSNR stays far below the goal and those rows show cost only.

Paste-back is timed for square regions up to 2048² with the default blend ("delta": only the
edit is added to the original pixels) and with "replace" (the render itself, colour-matched).

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import anycost
from anycost.data.synth_faces import render_batch
from anycost.editing.align import align_face
from anycost.editing.paste import paste_back
from anycost.editing.preview_choice import DEFAULT_PREVIEW_BUDGET_MS, pick_preview_cost
from anycost.editing.project import ProjectionSettings, Projector
from anycost.editing.region import Region
from anycost.imageio import images_to_tensor, tensor_to_uint8
from anycost.io.modelfile import read_model, save_model
from anycost.models.encoder import Encoder, EncoderConfig

HELDOUT_START = 2 * 10 ** 9  # the held-out synthetic faces of benchmarks/model_quality.py


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int = 3) -> float:
    """Median milliseconds of ``fn`` after one untimed warm-up call."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def heldout_faces(n: int, res: int, device: torch.device) -> torch.Tensor:
    imgs, _ = render_batch(0, n, res, start=HELDOUT_START)
    return images_to_tensor(imgs).to(device)


def bench_projection(P: Projector, targets: torch.Tensor, steps: int, goal_db: float, device: torch.device,
                     per_step: bool) -> torch.Tensor:
    """Project every target; print per-face and summary figures; return the first face's answer."""
    settings = ProjectionSettings(**{**P.settings.__dict__, "steps": steps,
                                     "report_every": 1 if per_step else max(1, steps)})
    enc_ms = timed(lambda: P.encode(targets[:1]), device)
    warm = ProjectionSettings(**{**settings.__dict__, "steps": 1, "report_every": 1})
    list(P.iter_project(targets[:1], settings=warm))  # first-call costs (allocations, autograd) are not timed
    start = "encoder" if P.encoder is not None else "mean latent"
    print(f"encoder projection ({start}): {enc_ms:8.1f} ms per face")
    enc_db, final_db, step_ms, reached, answer = [], [], [], [], None
    for k, t in enumerate(targets):
        steps_seen = list(P.iter_project(t[None], settings=settings))
        first, last = steps_seen[0], steps_seen[-1]
        answer = last.w_plus if answer is None else answer
        enc_db.append(first.psnr)
        final_db.append(last.psnr)
        step_ms.append((last.elapsed - first.elapsed) / max(1, last.step) * 1000)
        hit = next((s for s in steps_seen if s.psnr >= goal_db), None)
        if hit is not None:
            reached.append((hit.step, hit.elapsed))
            goal = f"{goal_db:.0f} dB after {hit.step} steps, {hit.elapsed:.2f} s"
        else:
            top = max(s.psnr for s in steps_seen)
            goal = f"{goal_db:.0f} dB not reached in {last.step} step(s) (highest {top:.2f} dB)"
        print(f"  face {k}: {start} {first.psnr:6.2f} dB; {goal}; final (best latent) {last.psnr:6.2f} dB")
    terms = ", ".join(last.terms)
    label = "incl. a progress render every step" if per_step else "progress render only at the end"
    print(f"refinement: {statistics.median(step_ms):8.1f} ms/step ({label}; loss terms: {terms})")
    if per_step:  # the same face again without intermediate reports: the optimisation step alone
        plain = ProjectionSettings(**{**settings.__dict__, "report_every": max(1, steps)})
        s = list(P.iter_project(targets[:1], settings=plain))
        print(f"refinement: {(s[-1].elapsed - s[0].elapsed) / max(1, s[-1].step) * 1000:8.1f} ms/step "
              "(no progress renders)")
    print(f"PSNR after the {start}: mean {np.mean(enc_db):.2f} dB (min {np.min(enc_db):.2f}, "
          f"max {np.max(enc_db):.2f}); final after {steps} steps: mean {np.mean(final_db):.2f} dB "
          f"(min {np.min(final_db):.2f})")
    n = len(targets)
    if reached:
        print(f"goal {goal_db:.0f} dB reached on {len(reached)}/{n} faces: median "
              f"{statistics.median(r[0] for r in reached):.0f} steps, {statistics.median(r[1] for r in reached):.2f} s "
              f"from the start of projection (encoder included)")
    else:
        print(f"goal {goal_db:.0f} dB reached on 0/{n} faces within {steps} step(s)")
    return answer


def bench_renders(G, w: torch.Tensor, budget_ms: float, device: torch.device) -> None:
    cost = pick_preview_cost(G, budget_ms)
    with torch.inference_mode():
        prev_ms = timed(lambda: G.synthesize(w, noise="const", **cost.render_kwargs()), device, 5)
        full_ms = timed(lambda: G.synthesize(w, noise="const"), device, 3)
    print(f"preview render ({cost.label()}, budget {budget_ms:.0f} ms): {prev_ms:8.1f} ms")
    print(f"full render:                {full_ms:8.1f} ms")


def bench_slider_renders(path: Path, budget_ms: float, device: torch.device) -> None:
    """A slider drag's render at the preview cost: a whole-image slider, a regional one (its edit kept inside its
    region, blended over a cached base), and each while the other kind is set."""
    from anycost.editing.session import Editor

    editor = Editor(path, device=device, use_lpips=False)
    dirs = editor.directions
    regional = next((n for n, d in dirs.items() if d.region is not None and not d.hidden), None)
    whole = next((n for n, d in dirs.items() if d.region is None and not d.hidden), None)
    if regional is None or whole is None:
        return
    G = editor.generator
    session = editor.open(tensor_to_uint8(G.synthesize(G.styles_from_seed(0, truncation=0.7)))[0], align=False)
    cost = pick_preview_cost(G, budget_ms)
    step = iter(range(10 ** 6))

    def drag(name: str, fixed: dict[str, float]) -> Callable[[], object]:
        # a new value every call, as a drag sends: nothing is served from a cache of the same values
        return lambda: session.render(cost, sliders={**fixed, name: 0.2 + 0.6 * (next(step) % 7) / 6})

    with torch.inference_mode():
        rows = [(f"{whole} (whole image)", timed(drag(whole, {}), device, 7)),
                (f"{regional} (regional)", timed(drag(regional, {}), device, 7)),
                (f"{regional} with {whole} set", timed(drag(regional, {whole: 0.5}), device, 7)),
                (f"{whole} with {regional} set", timed(drag(whole, {regional: 0.5}), device, 7))]
    print(f"slider drag, one preview render each ({cost.label()}; median ms):")
    for label, ms in rows:
        print(f"  {label:<36} {ms:8.1f} ms  ({ms / rows[0][1]:.2f}x)")


def bench_model(label: str, G, E, faces: int, steps: int, goal_db: float, budget_ms: float, use_lpips: bool,
                device: torch.device, per_step: bool = True) -> None:
    G = G.to(device).eval()
    E = E.to(device).eval() if E is not None else None
    print(f"\n== {label}: {G.resolution}px, style {G.style_dim}, encoder: {'yes' if E is not None else 'no'}")
    print(f"{faces} held-out synthetic face(s) from index {HELDOUT_START}, drawn at {G.resolution} px")
    P = Projector(G, E, settings=ProjectionSettings(use_lpips=use_lpips))
    if use_lpips and P.lpips() is None:  # loaded here: its one-time cost is not part of any face's time
        print("(LPIPS asked for, but its backbone weights are not in the torch cache: pixel losses only)")
    w = bench_projection(P, heldout_faces(faces, G.resolution, device), steps, goal_db, device, per_step)
    bench_renders(G, w, budget_ms, device)


def bench_paste(size: int, crop: int, repeats: int) -> None:
    """Paste a crop back into a face region of ``size``², with each blend mode."""
    faces, _ = render_batch(0, 1, size, start=HELDOUT_START)
    region = Region.from_array(faces[0])
    al = align_face(region, crop, use_landmarks=False)
    reference = torch.from_numpy(al.image).permute(2, 0, 1).float().div(127.5).sub(1)
    edited = (reference * 0.9 + 0.05).clamp(-1, 1)  # an edit that changes every pixel of the crop
    cpu = torch.device("cpu")
    delta = timed(lambda: paste_back(region, al, edited, reference=reference, blend="delta"), cpu, repeats)
    replace = timed(lambda: paste_back(region, al, edited, reference=reference, blend="replace"), cpu, repeats)
    print(f"{size:>6}² {crop:>6}² {delta:>14.1f} {replace:>24.1f}")


def random_config_f() -> tuple[anycost.Generator, Encoder]:
    """A seeded random 1024 config-f generator and a seeded random encoder of the published
    architecture, loaded back through a model file as users load theirs."""
    torch.manual_seed(0)
    G = anycost.Generator(resolution=1024).eval()
    E = Encoder(EncoderConfig())  # the defaults are the published ResNet-50, 18 × 512, 256² input
    assert (E.config.n_style, E.config.style_dim) == (G.n_style, G.style_dim)
    with torch.no_grad():
        # the head starts at zero; random weights make the forward pass a real one, and centring it on
        # the mean latent keeps its answer where a trained encoder's would be
        torch.nn.init.normal_(E.fc.weight, std=1e-3)
        E.mean_latent.copy_(G.mean_w()[0])
    with tempfile.TemporaryDirectory() as d:
        mf = read_model(save_model(Path(d) / "random1024.safetensors", generator=G, encoder=E))
        return mf.generator(), mf.encoder()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model file or name (default: the demo model, when installed)")
    ap.add_argument("--faces", type=int, default=4, help="held-out faces to project")
    ap.add_argument("--steps", type=int, default=100, help="refinement steps for the trained model")
    ap.add_argument("--steps-1024", type=int, default=10, help="refinement steps for the random 1024 config-f")
    ap.add_argument("--goal-db", type=float, default=25.0)
    ap.add_argument("--budget-ms", type=float, default=DEFAULT_PREVIEW_BUDGET_MS)
    ap.add_argument("--no-lpips", action="store_true", help="pixel losses only (LPIPS needs cached weights)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--skip-1024", action="store_true")
    ap.add_argument("--paste-sizes", default="512,1024,2048", help="square region sizes for paste-back")
    ap.add_argument("--paste-repeats", type=int, default=3)
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is available")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
          + f", {torch.get_num_threads()} CPU threads")

    from anycost.errors import ModelNotFoundError
    from anycost.io.modelfile import is_safetensors
    from anycost.registry import DEFAULT_MODEL, resolve_model

    lp = not args.no_lpips
    try:
        path = resolve_model(args.model or DEFAULT_MODEL)
        if is_safetensors(path):
            mf = read_model(path)
            G, E = mf.generator(), mf.encoder()
        else:
            G, E = anycost.load_generator(path), None
        bench_model(f"model {path.name}", G, E, args.faces, args.steps, args.goal_db, args.budget_ms, lp, device)
        if is_safetensors(path):
            bench_slider_renders(Path(path), args.budget_ms, device)
    except ModelNotFoundError as e:
        print(f"(no trained model benchmarked: {e})")

    if not args.skip_1024:
        G, E = random_config_f()
        bench_model("random 1024 config-f + random ResNet-50 encoder (untrained: cost only, it cannot reach "
                    "the PSNR goal)", G, E, 1, args.steps_1024, args.goal_db, args.budget_ms, lp, device,
                    per_step=False)

    print("\npaste-back (CPU, median ms; the crop fills the region's centred square)")
    print(f"{'region':>7} {'crop':>7} {'delta (default)':>14} {'replace + colour match':>24}")
    for size in (int(s) for s in args.paste_sizes.split(",")):
        bench_paste(size, min(1024, size // 2), args.paste_repeats)


if __name__ == "__main__":
    main()
