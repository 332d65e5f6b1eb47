"""``anycost train``: train an Anycost generator (large data or few-shot), resumable, multi-GPU."""

from __future__ import annotations

import argparse
import json

from ..errors import InputError
from .config_flags import add_config_flags, flags_given

# Settings without a flag of their own: they are set with --set KEY=VALUE, --config or a preset.
SET_ONLY = ("style_dim", "n_mlp", "channel_multiplier", "channel_max", "sle", "d_channel_multiplier",
            "d_channel_max", "fewshot", "loss", "r1_gamma", "d_reg_every", "pl_weight", "g_reg_every", "diffaug",
            "recon_weight", "consistency_weight", "lpips_weight", "distill", "lr", "ema_kimg", "ema_rampup",
            "mixing_prob", "amp", "ratios", "flexible_prob", "n_random_subnets", "metrics_seeds")


def register(sub: argparse._SubParsersAction) -> None:
    from ..training.config import TrainConfig

    p = sub.add_parser(
        "train", help="train an Anycost generator",
        description="Train an Anycost generator: staged StyleGAN2/Anycost training or few-shot training "
                    "on ~100 images. Launch with torchrun for several GPUs or machines. See docs/training.md.")
    add_config_flags(p, TrainConfig, skip=SET_ONLY)
    p.add_argument("--config", help="JSON or TOML file with the same keys as these flags")
    p.add_argument("--resume", nargs="?", const="latest", metavar="PATH",
                   help="continue from a checkpoint (default: the newest in --out)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other setting (value read as JSON, else a string), e.g. --set r1_gamma=5 "
                        "--set diffaug=color,cutout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


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
    from ..training.config import TrainConfig, build_config

    overrides = parse_sets(args.set)
    overrides.update(flags_given(TrainConfig, args))

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
    finished = False
    try:
        trainer = AnycostTrainer(cfg, rank=rank, world=world)
        if ckpt_path is not None:
            trainer.resume(ckpt_path)
            if rank == 0:
                print(f"resumed from {ckpt_path} at step {trainer.step}")
        model = trainer.run(progress=not args.no_progress)
        finished = True
    finally:
        ddp.shutdown(clean=finished)
    if model is not None:
        print(f"model written to {model}")
    return 0
