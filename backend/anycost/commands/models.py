"""``anycost models`` and ``anycost convert``: what is installed, and the official → own format converter."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list available and missing models",
                       description="List registered models (installed or missing) and local model files.")
    p.add_argument("--paths", action="store_true", help="also print the folders searched")
    p.set_defaults(func=run_models)

    c = sub.add_parser("convert", help="convert an official checkpoint to the project's model format",
                       description="Convert an official {'g_ema': …} generator (and optionally the "
                                   "{'state_dict': …} W+ encoder) into one .safetensors model file.")
    c.add_argument("generator", help="official generator checkpoint (.pt)")
    c.add_argument("--encoder", help="official W+ encoder checkpoint (.pt)")
    c.add_argument("--name", help="model name stored in the file (default: output file stem)")
    c.add_argument("-o", "--output", required=True, help="output .safetensors file")
    kind = c.add_mutually_exclusive_group()
    kind.add_argument("--face", dest="face", action="store_const", const=True, default=None,
                      help="the model generates faces: editing detects and aligns faces (the default, unless "
                           "the registry knows the model as something else)")
    kind.add_argument("--not-face", dest="face", action="store_const", const=False,
                      help="the model generates something other than faces (e.g. cars): editing uses a "
                           "centred crop and never runs face detection")
    c.set_defaults(func=run_convert)


def run_models(args: argparse.Namespace) -> int:
    from ..registry import DEFAULT_MODEL, list_models, models_dirs, user_models_dir

    rows = list_models()
    width = max(len(r.name) for r in rows)
    for r in rows:
        state = "installed" if r.installed else "missing  "
        where = f"  {r.path}" if r.installed else ""
        mark = "*" if r.name == DEFAULT_MODEL else " "
        print(f"{mark} {r.name:<{width}}  {state}  {r.description}{where}")
    print("\n* default model (used when no --model is given)")
    if not all(r.installed for r in rows):
        print(f"\nTo install a missing model, put its file into {user_models_dir()} "
              "(or set ANYCOST_MODELS_DIR).")
    if args.paths:
        print("\nSearched folders:")
        for d in models_dirs():
            print(f"  {d}{'' if d.is_dir() else '  (absent)'}")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..io.checkpoint import load_encoder, load_generator
    from ..io.modelfile import save_model

    out = Path(args.output)
    if out.suffix != ".safetensors":
        raise InputError("the output of `anycost convert` must end in .safetensors")
    G = load_generator(args.generator)
    E = load_encoder(args.encoder) if args.encoder else None
    if E is not None and (E.config.n_style, E.config.style_dim) != (G.n_style, G.style_dim):
        raise InputError(f"encoder predicts {E.config.n_style}×{E.config.style_dim} styles but the generator "
                         f"uses {G.n_style}×{G.style_dim}")
    name = args.name or out.stem
    info = {
        "name": name,
        "face": _is_face(args.face, name, args.generator),
        "source": "official checkpoint",
        "converted_from": Path(args.generator).name,
        "channel_ratios": [0.25, 0.5, 0.75, 1.0],
    }
    save_model(out, generator=G, encoder=E, info=info)
    print(out)
    return 0


def _is_face(flag: bool | None, name: str, source: str) -> bool:
    """--face/--not-face, else what the registry says of the model's name or source file, else True."""
    if flag is not None:
        return flag
    from ..registry import spec_for

    spec = spec_for(name) or spec_for(source)
    return spec.face if spec is not None else True
