"""``anycost train-autoencoder``: fast supervised training of a generator and its encoder (CPU-friendly)."""

from __future__ import annotations

import argparse
import json

from ..errors import InputError
from .common import apply_threads, resolve_device
from .config_flags import add_config_flags, config_from_flags

# Settings without a flag: the sub-generators' per-layer-width share is fixed by the recipe.
NOT_FLAGS = ("flexible_prob",)


def register(sub: argparse._SubParsersAction) -> None:
    from ..training.autoencoder_config import AutoencoderConfig

    p = sub.add_parser("train-autoencoder", help="train a generator + encoder as a regularised autoencoder",
                       description="Train an Anycost generator and its W+ encoder together as a regularised "
                                   "autoencoder (no discriminator; fast enough for a CPU), then fit the "
                                   "mapping network so random seeds give faces. Writes OUT/model.safetensors.")
    groups = add_config_flags(p, AutoencoderConfig, skip=NOT_FLAGS)
    b = groups["run"]
    b.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    b.add_argument("--resume", action="store_true",
                   help="continue from the latest checkpoint in --out, with its settings (flags given override them)")
    b.add_argument("--finish-only", action="store_true",
                   help="no more training: fit the prior and write the model from the latest checkpoint")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..training.autoencoder import AutoencoderConfig, AutoencoderTrainer, finish_from_checkpoint
    from ..training.checkpoint import load_checkpoint, resume_path

    apply_threads(args.threads)
    if args.init and args.resume:
        raise InputError("--init starts a new run; --resume continues one: use one of them")
    base = None
    if args.resume:  # the run's own settings; the architecture --init gave it is in them already
        base = {**load_checkpoint(resume_path(args.out))["config"], "init": None}
    cfg = config_from_flags(AutoencoderConfig, args, base)
    if 1.0 not in cfg.ratios:
        cfg.ratios.append(1.0)
    cfg.ratios = sorted(cfg.ratios)
    cfg.keep_last = max(1, cfg.keep_last)
    cfg.device = str(resolve_device(cfg.device))
    if args.finish_only:
        print(json.dumps(finish_from_checkpoint(cfg.out, cfg.device, quiet=args.quiet), indent=2))
        return 0
    trainer = AutoencoderTrainer(cfg, quiet=args.quiet)
    if args.resume:
        trainer.resume()
    result = trainer.run(progress=not args.quiet)
    print(json.dumps(result, indent=2))
    return 0
