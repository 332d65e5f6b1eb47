"""What `anycost distill` buys: sub-generator consistency before and after, and the full generator's drift.

Models (each distilled for ``--steps`` or until ``--minutes`` run out, whichever comes first):
  * ``fixture``   — NVIDIA's StyleGAN2-ADA pickle from tests/fixtures (32 px, random weights);
  * ``random256`` — a 256 px config-f StyleGAN2 with random weights (a plain StyleGAN2 of real size);
  * ``--model PATH`` — any other file (a downloaded ffhq.pkl, say).

Printed per model: PSNR against the teacher's image (downsampled) at ratio 0.5 and 0.25 at full
resolution and at ratio 1 at half resolution, before → after, the drift of the full generator, the
steps run and the wall time. Random weights draw noise, not faces: their PSNRs are low in absolute
terms; what matters is the change.

    python benchmarks/distill_quality.py [--models fixture random256] [--steps 400] [--minutes 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def random256(tmp: Path) -> Path:
    from anycost.io.modelfile import save_model
    from anycost.models.generator import Generator

    torch.manual_seed(0)
    G = Generator(resolution=256)  # config-f widths: 512 up to 64 px, then 256, 128
    return save_model(tmp / "random256.safetensors", generator=G,
                      info={"name": "random256", "channel_configs": "full", "face": False})


def measure_step_seconds(path: Path, cfg) -> float:
    from anycost.io.checkpoint import open_model
    from anycost.training.distill import Distiller

    mf = open_model(path)
    d = Distiller(mf.generator(), cfg, discriminator=mf.discriminator())
    d.train_step()
    t = time.perf_counter()
    for _ in range(2):
        d.train_step()
    return (time.perf_counter() - t) / 2


def run(name: str, path: Path, args: argparse.Namespace, tmp: Path) -> None:
    from anycost.training.distill import DistillConfig, distill_model

    cfg = DistillConfig(steps=args.steps, batch=args.batch, eval_seeds=args.eval_seeds, checkpoint_every=0,
                        log_every=0, perceptual=args.perceptual)
    per_step = measure_step_seconds(path, cfg)
    steps = max(1, min(args.steps, int(args.minutes * 60 / per_step)))
    cfg.steps = steps
    print(f"== {name}: {path.name}; {per_step:.2f} s/step measured → {steps} steps", flush=True)
    t = time.perf_counter()
    after = distill_model(path, tmp / f"{name}-distilled.safetensors", cfg, run_dir=tmp / f"{name}-run",
                          force=True, progress=False, say=lambda s: print(s, flush=True))
    wall = time.perf_counter() - t
    from anycost.io.modelfile import read_model

    info = read_model(tmp / f"{name}-distilled.safetensors").info["distilled"]
    before, res = info["psnr_before"], info["resolutions"]
    top, half = res[-1], res[-2] if len(res) > 1 else res[-1]
    rows = [(f"ratio 0.5, {top} px", f"psnr/r0.5/res{top}"), (f"ratio 0.25, {top} px", f"psnr/r0.25/res{top}"),
            (f"half resolution ({half} px), ratio 1", f"psnr/r1/res{half}")]
    print(f"-- {name} summary ({steps} steps, {wall / 60:.1f} min wall, batch {cfg.batch}, perceptual "
          f"{info['perceptual']}):")
    for label, key in rows:
        print(f"   {label:<34} {before[key]:6.2f} → {after[key]:6.2f} dB")
    print(f"   full generator's drift from the teacher: {after['drift']:.2f} dB PSNR", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=["fixture", "random256"])
    ap.add_argument("--model", type=Path, default=None, help="also distil this file")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--minutes", type=float, default=20.0, help="wall-time cap per model (CPU)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--eval-seeds", type=int, default=8)
    ap.add_argument("--perceptual", default="auto")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        models = {"fixture": lambda: REPO / "tests" / "fixtures" / "stylegan2_ada" / "network-snapshot.pkl",
                  "random256": lambda: random256(tmp)}
        for name in args.models:
            run(name, models[name](), args, tmp)
        if args.model is not None:
            run(args.model.stem, args.model, args, tmp)


if __name__ == "__main__":
    main()
