"""``anycost distill``: train a plain StyleGAN2's sub-generators for consistency (the Anycost recipe)."""

from __future__ import annotations

import argparse

from .config_flags import add_config_flags, config_from_flags


def register(sub: argparse._SubParsersAction) -> None:
    from ..training.distill_config import DistillConfig

    p = sub.add_parser(
        "distill", help="turn a StyleGAN2 into an Anycost generator (consistent sub-generators)",
        description="Distil a pretrained StyleGAN2 (a network pickle, a rosinality checkpoint or a converted "
                    "model) into an Anycost generator: channels sorted by importance, then the sandwich of "
                    "sub-generators trained towards the frozen original at every output resolution. Data-free "
                    "unless --data is given. Resumes an interrupted run from its run folder. Launch with "
                    "torchrun for several GPUs. See docs/bring-your-own-model.md.")
    p.add_argument("model", help="model name or file")
    p.add_argument("-o", "--output", required=True, help="the distilled model file (.safetensors)")
    p.add_argument("--run-dir", default=None,
                   help="checkpoints and logs (default: OUTPUT's name + .distill-run beside it)")
    p.add_argument("--restart", action="store_true", help="discard the run folder's checkpoints and start afresh")
    p.add_argument("--force", action="store_true", help="distil a model that is already Anycost-trained")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_flags(p, DistillConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..training.distill import default_run_dir, distill_model, find_resume
    from ..training.distill_config import DistillConfig

    out = Path(args.output)
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(out)
    base = None
    ckpt = None if args.restart else find_resume(run_dir)
    if ckpt is not None:  # a resumed run keeps its settings; flags given now override them (e.g. more --steps)
        from ..training.checkpoint import load_checkpoint

        base = load_checkpoint(ckpt)["config"]
    cfg = config_from_flags(DistillConfig, args, base)
    distill_model(args.model, out, cfg, run_dir=run_dir, force=args.force, restart=args.restart,
                  progress=not args.no_progress)
    return 0
