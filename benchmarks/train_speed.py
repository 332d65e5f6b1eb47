"""Training throughput (images/s) per stage for a demo-sized Anycost model.

    python benchmarks/train_speed.py                      # CPU, and CUDA too when available
    python benchmarks/train_speed.py --device cuda --res 256 --batch 16

Prints one line per device and stage; never asserts on time. The default run takes a few minutes on a
2-core CPU; raise --steps and --batch for steadier figures.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from anycost.training.anycost_trainer import AnycostTrainer
from anycost.training.config import build_config
from anycost.training.data import TensorStream

STAGES = ("plain", "multires", "adaptive")


def measure(device: str, stage: str, args: argparse.Namespace, out: str) -> float:
    cfg = build_config({
        "preset": "fewshot" if args.fewshot else "anycost", "res": args.res, "style_dim": args.style_dim,
        "n_mlp": 4, "channel_multiplier": 1, "channel_max": args.channel_max, "d_channel_multiplier": 1,
        "d_channel_max": args.channel_max, "batch": args.batch, "device": device, "steps": args.steps + args.warmup,
        "stages": f"{stage}:1", "out": out, "amp": not args.no_amp, "d_reg_every": 16,
    })
    imgs = torch.rand(max(64, args.batch), 3, args.res, args.res) * 2 - 1
    resolutions = [2 ** i for i in range(3, args.res.bit_length())]
    trainer = AnycostTrainer(cfg, TensorStream(imgs, resolutions, cfg.batch, 0), quiet=True)
    for _ in range(args.warmup):
        trainer.train_step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        trainer.train_step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return args.steps * args.batch / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (cpu, plus cuda when present)")
    p.add_argument("--res", type=int, default=128)
    p.add_argument("--style-dim", type=int, default=256)
    p.add_argument("--channel-max", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=3, help="timed steps per stage")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--stages", default=",".join(STAGES))
    p.add_argument("--fewshot", action="store_true", help="few-shot preset (FastGAN D, hinge, DiffAugment)")
    p.add_argument("--no-amp", action="store_true", help="disable bf16 autocast on CUDA")
    args = p.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if args.device == "auto" else [args.device]
    print(f"res {args.res}, style_dim {args.style_dim}, channel_max {args.channel_max}, batch {args.batch}, "
          f"{'few-shot' if args.fewshot else 'anycost'} preset, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads")
    if torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name()}")
    with tempfile.TemporaryDirectory() as out:
        for dev in devices:
            for stage in args.stages.split(","):
                ips = measure(dev, stage, args, out)
                print(f"{dev:5s} {stage:9s} {ips:8.2f} img/s")


if __name__ == "__main__":
    main()
