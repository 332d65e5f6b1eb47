"""``anycost train-autoencoder``: fast supervised training of a generator and its encoder (CPU-friendly)."""

from __future__ import annotations

import argparse
import json

from ..errors import InputError
from .common import add_device, resolve_device


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-autoencoder", help="train a generator + encoder as a regularised autoencoder",
                       description="Train an Anycost generator and its W+ encoder together as a regularised "
                                   "autoencoder (no discriminator; fast enough for a CPU), then fit the "
                                   "mapping network so random seeds give faces. Writes OUT/model.safetensors.")
    p.add_argument("--data", default="synth:faces", help="image folder, synth:faces or synth:faces:N")
    p.add_argument("--out", required=True, help="run folder (checkpoints, samples, losses, model file)")
    p.add_argument("--res", type=int, default=128, help="output resolution (default 128)")
    p.add_argument("--min-res", type=int, default=32, help="smallest trained output resolution (default 32)")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=8)
    g = p.add_argument_group("generator")
    g.add_argument("--style-dim", type=int, default=256)
    g.add_argument("--n-mlp", type=int, default=4)
    g.add_argument("--channel-multiplier", type=float, default=0.5)
    g.add_argument("--channel-max", type=int, default=128)
    g.add_argument("--ratios", default="0.25,0.5,0.75,1", help="channel ratios (comma-separated)")
    g.add_argument("--no-sandwich", action="store_true", help="train the full generator only")
    e = p.add_argument_group("encoder")
    e.add_argument("--enc-depth", type=int, default=10, choices=[10, 18, 34, 50])
    e.add_argument("--enc-width", type=int, default=32)
    e.add_argument("--enc-input", type=int, default=64, help="encoder input size (default 64)")
    o = p.add_argument_group("optimisation")
    o.add_argument("--lr", type=float, default=2e-3, help="generator learning rate")
    o.add_argument("--enc-lr", type=float, default=1e-3, help="encoder learning rate")
    o.add_argument("--lpips-weight", type=float, default=0.5, help="used only when LPIPS weights are cached")
    o.add_argument("--noise-std", type=float, default=0.2, help="Gaussian noise added to w in training")
    o.add_argument("--kl-weight", type=float, default=5e-4, help="pull of w towards a unit Gaussian")
    o.add_argument("--residual-weight", type=float, default=1.0, help="penalty on per-slot W+ residuals (default 1)")
    o.add_argument("--warmup", type=float, default=0.25,
                   help="fraction of steps over which latent noise and the KL pull ramp up (default 0.25)")
    o.add_argument("--curriculum", type=float, default=0.3,
                   help="fraction of steps over which the largest trained resolution grows (default 0.3)")
    o.add_argument("--top-prob", type=float, default=0.5,
                   help="probability of training at the largest unlocked resolution (default 0.5)")
    o.add_argument("--prior-samples", type=int, default=2000, help="images encoded to fit the latent prior")
    o.add_argument("--mapping-steps", type=int, default=100, help="regression steps refining the mapping network")
    b = p.add_argument_group("run")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    b.add_argument("--log-every", type=int, default=10)
    b.add_argument("--sample-every", type=int, default=500)
    b.add_argument("--checkpoint-every", type=int, default=250)
    b.add_argument("--keep-last", type=int, default=2)
    b.add_argument("--init", metavar="MODEL",
                   help="start from this model's generator and encoder (name or file; its architecture "
                        "replaces the generator/encoder options). Pair with --warmup 0 --curriculum 0")
    b.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    b.add_argument("--finish-only", action="store_true",
                   help="no more training: fit the prior and write the model from the latest checkpoint")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..training.autoencoder import AutoencoderConfig, AutoencoderTrainer, finish_from_checkpoint

    if args.threads is not None:
        if args.threads < 1:
            raise InputError("--threads must be at least 1")
        torch.set_num_threads(args.threads)
    try:
        ratios = [float(r) for r in args.ratios.split(",") if r.strip()]
    except ValueError as e:
        raise InputError(f"--ratios must be comma-separated numbers, got {args.ratios!r}") from e
    if 1.0 not in ratios:
        ratios.append(1.0)
    device = resolve_device(args.device)
    if args.finish_only:
        print(json.dumps(finish_from_checkpoint(args.out, str(device), quiet=args.quiet), indent=2))
        return 0
    cfg = AutoencoderConfig(
        data=args.data, out=args.out, res=args.res, min_res=args.min_res, steps=args.steps, batch=args.batch,
        style_dim=args.style_dim, n_mlp=args.n_mlp, channel_multiplier=args.channel_multiplier,
        channel_max=args.channel_max, ratios=sorted(ratios), sandwich=not args.no_sandwich,
        enc_depth=args.enc_depth, enc_width=args.enc_width, enc_input=args.enc_input, lr=args.lr,
        enc_lr=args.enc_lr, lpips_weight=args.lpips_weight, noise_std=args.noise_std, kl_weight=args.kl_weight,
        residual_weight=args.residual_weight, warmup=args.warmup, curriculum=args.curriculum, top_prob=args.top_prob,
        prior_samples=args.prior_samples, mapping_steps=args.mapping_steps, seed=args.seed, device=str(device),
        log_every=args.log_every, sample_every=args.sample_every, checkpoint_every=args.checkpoint_every,
        keep_last=max(1, args.keep_last), init=args.init)
    if args.init and args.resume:
        raise InputError("--init starts a new run; --resume continues one: use one of them")
    trainer = AutoencoderTrainer(cfg, quiet=args.quiet)
    if args.resume:
        trainer.resume()
    result = trainer.run(progress=not args.quiet)
    print(json.dumps(result, indent=2))
    return 0
