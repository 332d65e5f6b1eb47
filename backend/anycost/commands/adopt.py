"""``anycost adopt``: one command from a StyleGAN2 file to a model that edits faces in Krita and GIMP."""

from __future__ import annotations

import argparse

from .config_flags import add_config_flags, config_from_flags

# Settings without a flag: the encoder's size and the search's population are fixed by the recipe; the
# model's name is the output's.
NOT_FLAGS = ("encoder_depth", "encoder_width", "search_population", "name")


def register(sub: argparse._SubParsersAction) -> None:
    from ..training.adopt import AdoptSettings

    p = sub.add_parser(
        "adopt", help="turn a StyleGAN2 file into an Anycost face-editing model (all stages)",
        description="Import a StyleGAN2 (an NVIDIA network pickle, a rosinality or official checkpoint), distil "
                    "its sub-generators, train an encoder on its own samples, fit unsupervised edit directions and "
                    "search the preview sub-generators for this machine. Each stage is resumable and skipped when "
                    "already done (work folder: OUTPUT's name + .adopt). The result works with `anycost edit`, "
                    "`anycost serve --model` and the Krita and GIMP plug-ins. See docs/bring-your-own-model.md.")
    p.add_argument("model", help="model name or file (.pkl, .pt, .safetensors)")
    p.add_argument("-o", "--output", required=True, help="the adopted model file (.safetensors)")
    add_config_flags(p, AdoptSettings, skip=NOT_FLAGS)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..training.adopt import AdoptSettings, adopt, format_summary

    settings = config_from_flags(AdoptSettings, args)
    results = adopt(args.model, args.output, settings, progress=not args.no_progress)
    print(format_summary(results))
    print(f"wrote {args.output}: use it with `anycost edit --model {args.output}`, `anycost serve --model "
          f"{args.output}` (then Krita or GIMP)")
    return 0
