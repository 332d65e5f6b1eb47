"""``anycost adopt``: one command from a StyleGAN2 file to a model that edits faces in Krita and GIMP."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "adopt", help="turn a StyleGAN2 file into an Anycost face-editing model (all stages)",
        description="Import a StyleGAN2 (an NVIDIA network pickle, a rosinality or official checkpoint), distil "
                    "its sub-generators, train an encoder on its own samples, fit unsupervised edit directions and "
                    "search the preview sub-generators for this machine. Each stage is resumable and skipped when "
                    "already done (work folder: OUTPUT's name + .adopt). The result works with `anycost edit`, "
                    "`anycost serve --model` and the Krita and GIMP plug-ins. See docs/bring-your-own-model.md.")
    p.add_argument("model", help="model name or file (.pkl, .pt, .safetensors)")
    p.add_argument("-o", "--output", required=True, help="the adopted model file (.safetensors)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument("--distill-steps", type=int, default=2000, help="distillation steps (0: skip; default 2000)")
    p.add_argument("--distill-batch", type=int, default=4)
    p.add_argument("--encoder-steps", type=int, default=2000, help="encoder training steps (0: skip; default 2000)")
    p.add_argument("--encoder-batch", type=int, default=8)
    p.add_argument("--sefa", type=int, default=10, help="SeFa directions to fit (default 10)")
    p.add_argument("--pca", type=int, default=10, help="PCA (GANSpace) directions to fit (default 10)")
    p.add_argument("--budget-ms", default="40,80,160", help="preview latency budgets to search (default 40,80,160)")
    p.add_argument("--search-generations", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="distil even a model that is already Anycost-trained")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..training.adopt import AdoptSettings, adopt, format_summary

    try:
        budgets = [float(b) for b in args.budget_ms.split(",") if b.strip()]
    except ValueError:
        raise InputError(f"--budget-ms takes comma-separated numbers, got {args.budget_ms!r}") from None
    settings = AdoptSettings(device=args.device, distill_steps=args.distill_steps, distill_batch=args.distill_batch,
                             encoder_steps=args.encoder_steps, encoder_batch=args.encoder_batch, sefa=args.sefa,
                             pca=args.pca, budgets_ms=budgets, search_generations=args.search_generations,
                             seed=args.seed, force=args.force)
    results = adopt(args.model, args.output, settings, progress=not args.no_progress)
    print(format_summary(results))
    print(f"wrote {args.output}: use it with `anycost edit --model {args.output}`, `anycost serve --model "
          f"{args.output}` (then Krita or GIMP)")
    return 0
