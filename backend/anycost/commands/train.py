"""``anycost train``: train an Anycost generator (large data or few-shot), resumable, multi-GPU."""

from __future__ import annotations

import argparse
import json

from ..errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train an Anycost generator",
        description="Train an Anycost generator: staged StyleGAN2/Anycost training or few-shot training "
                    "on ~100 images. Launch with torchrun for several GPUs or machines. See docs/training.md.")
    p.add_argument("--data", help="image folder, synth:faces (rendered on the fly) or synth:faces:N (N fixed faces)")
    p.add_argument("--preset", choices=["anycost", "fewshot", "tiny"], help="settings bundle (default anycost)")
    p.add_argument("--config", help="JSON or TOML file with the same keys as these flags")
    p.add_argument("--res", type=int, help="output resolution (power of two)")
    p.add_argument("--out", help="output folder (checkpoints, samples, logs, model.safetensors)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="training steps")
    length.add_argument("--kimg", type=float, help="training length in thousands of real images")
    p.add_argument("--batch", type=int, help="batch size per process")
    p.add_argument("--device", help="cpu, cuda or cuda:N (under torchrun: the local GPU)")
    p.add_argument("--resume", nargs="?", const="latest", metavar="PATH",
                   help="continue from a checkpoint (default: the newest in --out)")
    p.add_argument("--keep-last", type=int, dest="keep_last", help="checkpoints to keep (default 3)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--stages", help="stage plan, e.g. plain:0.4,multires:0.3,adaptive:0.3")
    p.add_argument("--tensorboard", action="store_true", default=None, help="also log to TensorBoard if installed")
    p.add_argument("--log-every", type=int, dest="log_every", help="steps between loss log rows")
    p.add_argument("--sample-every", type=int, dest="sample_every", help="steps between sample grids (0: end only)")
    p.add_argument("--checkpoint-every", type=int, dest="checkpoint_every",
                   help="steps between checkpoints (0: end only)")
    p.add_argument("--metrics-every", type=int, dest="metrics_every",
                   help="steps between consistency metrics (0: never)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other setting (value read as JSON, else a string), e.g. --set r1_gamma=5 "
                        "--set diffaug=color,cutout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


FLAG_KEYS = ("data", "preset", "res", "out", "steps", "kimg", "batch", "device", "keep_last", "seed", "stages",
             "tensorboard", "log_every", "sample_every", "checkpoint_every", "metrics_every")


def parse_sets(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set needs KEY=VALUE, got {item!r}")
        try:
            out[key.strip().replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip().replace("-", "_")] = value  # a bare string
    return out


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..training import distributed as ddp
    from ..training.anycost_trainer import AnycostTrainer
    from ..training.checkpoint import latest_checkpoint, load_checkpoint
    from ..training.config import build_config

    overrides = parse_sets(args.set)
    overrides.update({k: getattr(args, k) for k in FLAG_KEYS if getattr(args, k) is not None})

    ckpt_path = None
    base = None
    if args.resume:
        if args.resume == "latest":
            probe = build_config(overrides, args.config)
            ckpt_path = latest_checkpoint(probe.out)
            if ckpt_path is None:
                raise InputError(f"--resume: no checkpoint found in {Path(probe.out) / 'checkpoints'}")
        else:
            ckpt_path = Path(args.resume)
        base = load_checkpoint(ckpt_path)["config"]
    cfg = build_config(overrides, args.config, base=base)
    if ckpt_path is None and latest_checkpoint(cfg.out) is not None:
        raise InputError(f"{cfg.out} already holds checkpoints of a run: continue it with --resume, "
                         "or choose another --out")

    rank, local_rank, world = ddp.init_from_env(cfg.device)
    if world > 1 and cfg.device == "cuda":
        cfg.device = f"cuda:{local_rank}"
    try:
        trainer = AnycostTrainer(cfg, rank=rank, world=world)
        if ckpt_path is not None:
            trainer.resume(ckpt_path)
            if rank == 0:
                print(f"resumed from {ckpt_path} at step {trainer.step}")
        model = trainer.run(progress=not args.no_progress)
    finally:
        if ddp.is_active():
            import torch.distributed as dist

            dist.destroy_process_group()
    if model is not None:
        print(f"model written to {model}")
    return 0
