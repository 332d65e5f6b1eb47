"""``anycost models`` and ``anycost convert``: what is installed, and the official → own format converter."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list available and missing models",
                       description="List registered models (installed or missing) and local model files.")
    p.add_argument("--paths", action="store_true", help="also print the folders searched")
    p.set_defaults(func=run_models)

    c = sub.add_parser("convert", help="convert a StyleGAN2/Anycost model file to the project's model format",
                       description="Convert a generator — an official Anycost or rosinality checkpoint "
                                   "({'g_ema': …}), or an NVIDIA stylegan2-ada-pytorch network pickle (.pkl, "
                                   "read as data, no code from it runs) — and optionally the {'state_dict': …} "
                                   "W+ encoder into one .safetensors model file. Its origin (format, file name, "
                                   "sha256) is recorded in the file; a kept discriminator travels along.")
    c.add_argument("generator", help="generator file: official/rosinality checkpoint (.pt) or network pickle (.pkl)")
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
        for line in _details(r.path) if r.path is not None else []:
            print(f"  {'':<{width}}  {line}")
    print("\n* default model (used when no --model is given)")
    if not all(r.installed for r in rows):
        print(f"\nTo install a missing model, put its file into {user_models_dir()} "
              "(or set ANYCOST_MODELS_DIR).")
    if args.paths:
        print("\nSearched folders:")
        for d in models_dirs():
            print(f"  {d}{'' if d.is_dir() else '  (absent)'}")
    return 0


def _details(path: Path) -> list[str]:
    """Where a local model came from and what to know about it, read from its header only (cheap)."""
    from ..io.modelfile import read_header_components, read_header_info
    from ..io.network_pickle import is_network_pickle

    if is_network_pickle(path):
        return ["StyleGAN2-ADA network pickle (read as data); `anycost convert` makes a faster-loading model file"]
    info = read_header_info(path)
    if info is None:
        return []
    from ..editing.notices import model_notices
    from ..registry import spec_for
    from ..search.space import model_space_kind

    lines = []
    src = info.get("source")
    if isinstance(src, dict):
        sha = str(src.get("sha256") or "")[:12]
        lines.append(f"from {src.get('format', 'a file')} {src.get('file', '')} (sha256 {sha}…), "
                     f"{src.get('resolution', '?')} px")
    spec = spec_for(path)
    lines += model_notices(info, model_space_kind(info, spec.channel_configs if spec else None),
                           has_encoder=bool(read_header_components(path).get("encoder")))
    return lines


def run_convert(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..io.checkpoint import load_encoder, open_model
    from ..io.modelfile import save_model

    out = Path(args.output)
    if out.suffix != ".safetensors":
        raise InputError("the output of `anycost convert` must end in .safetensors")
    mf = open_model(args.generator)
    G = mf.generator()  # builds and checks every tensor before anything is written
    mf.discriminator()  # (checked likewise; its tensors travel as they are)
    E = load_encoder(args.encoder) if args.encoder else None
    if E is not None and (E.config.n_style, E.config.style_dim) != (G.n_style, G.style_dim):
        raise InputError(f"encoder predicts {E.config.n_style}×{E.config.style_dim} styles but the generator "
                         f"uses {G.n_style}×{G.style_dim}")
    name = args.name or out.stem
    info = {**mf.info, "name": name}
    info["face"] = _is_face(args.face, name, args.generator, mf.info.get("face"))
    if "channel_configs" not in info:
        from ..registry import spec_for

        spec = spec_for(name) or spec_for(args.generator)
        if spec is not None:
            info["channel_configs"] = spec.channel_configs
        if info.get("channel_configs") != "full":  # an Anycost checkpoint: trained on the published ratios
            info["channel_ratios"] = [0.25, 0.5, 0.75, 1.0]
    comps = {k: c for k, c in mf.components.items() if k not in ("generator", "encoder")}
    save_model(out, generator=G, encoder=E, components=comps, info=info)
    print(out)
    return 0


def _is_face(flag: bool | None, name: str, source: str, imported: bool | None = None) -> bool:
    """--face/--not-face, else what the registry says of the model's name or source file, else what the
    import knew (AFHQ, LSUN are not faces), else True."""
    if flag is not None:
        return flag
    if imported is not None:
        return bool(imported)
    from ..registry import spec_for

    spec = spec_for(name) or spec_for(source)
    return spec.face if spec is not None else True
