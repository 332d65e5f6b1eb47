"""``anycost directions``: list the edit directions of a model (or of a direction file)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

NO_DIRECTIONS = ("no edit directions (it can still generate and project; `anycost fit-directions` adds "
                 "sliders, `anycost edit --directions FILE` brings them from a file)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("directions", help="list a model's edit directions with their slider ranges",
                       description="List the edit directions stored in a model file (or a boundary / "
                                   "direction file) with slider range, scale, style slots and source. "
                                   "A model without directions lists none (exit code 0).")
    p.add_argument("--model", default=None,
                   help="model name, model file, or direction/boundary file (default: the shipped demo model)")
    p.add_argument("--for-model", default=None, metavar="MODEL",
                   help="check that the listed directions fit this model's latent (style slots and size)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def read_directions(path: Path):
    """The directions a model file, direction file or boundary file holds; a model without any (a
    project model without the component, or an official generator checkpoint) gives an empty set."""
    from ..directions import DirectionSet, directions_in_model, load_directions_file, load_official_boundaries
    from ..io.modelfile import is_safetensors, read_model
    from ..io.network_pickle import is_network_pickle

    if is_network_pickle(path):  # a StyleGAN2-ADA snapshot: a model without directions
        return DirectionSet()
    if is_safetensors(path):
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            is_model = "anycost.components" in (f.metadata() or {})
        return directions_in_model(read_model(path)) if is_model else load_directions_file(path)
    if path.suffix in (".pt", ".pth"):
        from ..io.checkpoint import load_weights_only

        obj = load_weights_only(path)
        if isinstance(obj, dict) and ("g_ema" in obj or "state_dict" in obj):
            return DirectionSet()  # a generator checkpoint: a model, with no directions
        return load_official_boundaries(path)
    return load_directions_file(path)


def _latent_shape(model: str) -> tuple[int, int]:
    from ..io.checkpoint import load_generator
    from ..registry import resolve_model

    G = load_generator(resolve_model(model))
    return G.n_style, G.style_dim


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..registry import DEFAULT_MODEL, resolve_model

    path = Path(resolve_model(args.model or DEFAULT_MODEL))
    dirs = read_directions(path)
    if args.for_model:
        shape = _latent_shape(args.for_model)
        for d in dirs.values():
            try:
                d.check_fits(*shape)
            except InputError as e:
                raise InputError(f"{path}: {e} (model {args.for_model})") from None
    rows = [{"name": d.name, "source": d.source, "range": list(d.slider_range), "scale": round(d.scale, 4),
             "layers": d.layers, "shape": list(d.vector.shape)} for d in dirs.values()]
    if args.json:
        print(json.dumps({"model": str(path), "directions": rows}))
        return 0
    if not rows:
        print(f"{path}: {NO_DIRECTIONS}")
        return 0
    print(f"{'name':20s} {'source':9s} {'range':>14s} {'scale':>8s}  slots")
    for r in rows:
        rng = f"[{r['range'][0]:g}, {r['range'][1]:g}]"
        slots = "all" if r["layers"] is None else ",".join(map(str, r["layers"]))
        print(f"{r['name']:20s} {r['source']:9s} {rng:>14s} {r['scale']:8.3f}  {slots}")
    return 0
