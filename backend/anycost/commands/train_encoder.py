"""``anycost train-encoder``: train a W+ encoder for a model and store it in the model file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import InputError
from .common import add_device, resolve_device


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-encoder", help="train a W+ encoder against a model's generator",
                       description="Train a W+ encoder against a frozen generator and write a model file "
                                   "holding the generator, the new encoder and every other part of --model.")
    p.add_argument("--model", required=True, help="model name or file holding the generator")
    p.add_argument("-o", "--output", required=True, help="model file to write (.safetensors; may be --model)")
    p.add_argument("--depth", type=int, default=18, choices=[10, 18, 34, 50], help="ResNet depth (default 18)")
    p.add_argument("--width", type=int, default=32, help="stem width (default 32; the published encoder uses 64)")
    p.add_argument("--input-size", type=int, default=None, help="encoder input size (default: min(res, 256))")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--latent-weight", type=float, default=1.0)
    p.add_argument("--image-weight", type=float, default=1.0)
    p.add_argument("--lpips-weight", type=float, default=0.8, help="used only when LPIPS weights are cached")
    p.add_argument("--consistency-weight", type=float, default=0.5)
    p.add_argument("--truncation", default="0.5,1.0", help="psi range lo,hi for sampled latents")
    p.add_argument("--mix-prob", type=float, default=0.5, help="style-mixing probability")
    p.add_argument("--loss-res", type=int, default=None, help="image-loss resolution (default: min(res, 256))")
    p.add_argument("--augment", type=float, default=0.5,
                   help="share of rendered targets shown as a real crop might look: slightly off-centre, "
                        "recoloured, softer, noisier (default 0.5); makes the encoder hold on real faces")
    p.add_argument("--real", default=None, help="folder of real face images for extra image-loss steps")
    p.add_argument("--real-ratio", type=float, default=0.25, help="fraction of steps on real images (with --real)")
    p.add_argument("--checkpoint", default=None, help="training checkpoint file (default: OUTPUT + .ckpt.pt)")
    p.add_argument("--checkpoint-every", type=int, default=200)
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument("--eval-samples", type=int, default=64, help="held-out samples for the final report")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..registry import resolve_model
    from ..training.encoder_training import (
        EncoderTrainConfig,
        build_encoder,
        evaluate_encoder,
        train_encoder,
    )
    from ..training.model_update import model_parts, update_model

    out = Path(args.output)
    if out.suffix != ".safetensors":
        raise InputError(f"--output must be a .safetensors model file, got {out}")
    try:
        lo, hi = (float(t) for t in args.truncation.split(","))
    except ValueError as e:
        raise InputError(f"--truncation must be two numbers lo,hi, got {args.truncation!r}") from e
    device = resolve_device(args.device)
    source = resolve_model(args.model)
    G, _, info = model_parts(source)
    if G is None:
        raise InputError(f"{source} holds no generator")
    from ..models.channels import STANDARD_RATIOS
    from ..registry import spec_for
    from ..search.space import model_space_kind

    spec = spec_for(args.model)
    kind = model_space_kind(info, spec.channel_configs if spec else None)
    ratios = (1.0,) if kind == "full" else tuple(info.get("channel_ratios") or STANDARD_RATIOS)
    ckpt = args.checkpoint or str(out) + ".ckpt.pt"
    cfg = EncoderTrainConfig(steps=args.steps, batch=args.batch, lr=args.lr, latent_weight=args.latent_weight,
                             image_weight=args.image_weight, lpips_weight=args.lpips_weight,
                             consistency_weight=args.consistency_weight, truncation=(lo, hi),
                             mix_prob=args.mix_prob, loss_res=args.loss_res,
                             real_folder=args.real, real_ratio=args.real_ratio if args.real else 0.0,
                             seed=args.seed, device=str(device), checkpoint=ckpt,
                             checkpoint_every=max(1, args.checkpoint_every), augment=args.augment, ratios=ratios)
    if args.input_size is not None and args.input_size < 16:
        raise InputError("--input-size must be at least 16")
    E = build_encoder(G, depth=args.depth, width=args.width, input_size=args.input_size)
    state = train_encoder(G, E, cfg, resume=args.resume, progress=not args.quiet)
    metrics = evaluate_encoder(G, E.to(device), n=max(1, args.eval_samples))
    info = {"encoder_training": {"steps": state.step, "depth": args.depth, "width": args.width,
                                 "metrics": {k: round(v, 6) for k, v in metrics.items()}}}
    update_model(source, out, encoder=E.cpu(), info=info)
    print(json.dumps({"output": str(out), "steps": state.step, **metrics}))
    return 0
