"""``anycost train-encoder``: train a W+ encoder for a model and store it in the model file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import InputError
from .common import model_output, resolve_device
from .config_flags import add_config_flags, config_from_flags

# Settings without a flag: the consistency term's ratios are the model's own, the smallest input
# resolution is fixed by the recipe.
NOT_FLAGS = ("ratios", "min_input_res")


def register(sub: argparse._SubParsersAction) -> None:
    from ..training.encoder_training_config import EncoderTrainConfig

    p = sub.add_parser("train-encoder", help="train a W+ encoder against a model's generator",
                       description="Train a W+ encoder against a frozen generator and write a model file "
                                   "holding the generator, the new encoder and every other part of --model.")
    p.add_argument("--model", required=True, help="model name or file holding the generator")
    p.add_argument("-o", "--output", required=True, help="model file to write (.safetensors; may be --model)")
    p.add_argument("--depth", type=int, default=18, choices=[10, 18, 34, 50], help="ResNet depth (default 18)")
    p.add_argument("--width", type=int, default=32, help="stem width (default 32; the published encoder uses 64)")
    p.add_argument("--input-size", type=int, default=None, help="encoder input size (default: min(res, 256))")
    p.add_argument("--from-model-encoder", action="store_true",
                   help="start from the encoder --model already holds (fine-tuning) instead of a new one; its "
                        "depth, width and input size replace the options above")
    add_config_flags(p, EncoderTrainConfig, skip=NOT_FLAGS)
    p.add_argument("--resume", action="store_true",
                   help="continue from --checkpoint, with its settings (flags given override them)")
    p.add_argument("--eval-samples", type=int, default=64, help="held-out samples for the final report")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..io.checkpoint import open_model
    from ..registry import resolve_model
    from ..training.encoder_training import (
        EncoderTrainConfig,
        build_encoder,
        evaluate_encoder,
        load_checkpoint,
        train_encoder,
    )
    from ..training.model_update import update_model

    out = model_output(args.output)
    source = resolve_model(args.model)
    mf = open_model(source)  # read once: the generator and, with --from-model-encoder, the encoder
    if "generator" not in mf.components:
        raise InputError(f"{source} holds no generator")
    G, info = mf.generator(), dict(mf.info)
    start = mf.encoder() if args.from_model_encoder else None
    if args.from_model_encoder and start is None:
        raise InputError(f"{source} holds no encoder to start from: leave out --from-model-encoder")
    from ..models.channels import STANDARD_RATIOS
    from ..registry import spec_for
    from ..search.space import model_space_kind

    spec = spec_for(args.model)
    kind = model_space_kind(info, spec.channel_configs if spec else None)
    ratios = (1.0,) if kind == "full" else tuple(info.get("channel_ratios") or STANDARD_RATIOS)
    ckpt = args.checkpoint or str(out) + ".ckpt.pt"
    base = None
    if args.resume and Path(ckpt).is_file():  # the run's own settings
        base = load_checkpoint(ckpt)["train_config"]
    cfg = config_from_flags(EncoderTrainConfig, args, base, ratios=ratios, checkpoint=ckpt)
    cfg.checkpoint_every = max(1, cfg.checkpoint_every)
    device = resolve_device(cfg.device)
    cfg.device = str(device)
    if args.input_size is not None and args.input_size < 16:
        raise InputError("--input-size must be at least 16")
    if start is not None:  # its own architecture and mean latent
        E = start.float()
        before = evaluate_encoder(G, E.to(device), n=max(1, args.eval_samples))
    else:
        E = build_encoder(G, depth=args.depth, width=args.width, input_size=args.input_size)
    state = train_encoder(G, E, cfg, resume=args.resume, progress=not args.quiet)
    metrics = evaluate_encoder(G, E.to(device), n=max(1, args.eval_samples))
    record = {"steps": state.step, "depth": E.config.depth, "width": E.config.width,
              "input_size": E.config.input_size, "metrics": {k: round(v, 6) for k, v in metrics.items()}}
    if start is not None:
        record["started_from"] = "the model's own encoder"
        record["metrics_before"] = {k: round(v, 6) for k, v in before.items()}
    info = {"encoder_training": record}
    update_model(source, out, encoder=E.cpu(), info=info)
    print(json.dumps({"output": str(out), "steps": state.step, **metrics}))
    return 0
