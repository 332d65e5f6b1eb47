"""``anycost directions``: list the edit directions of a model (or of a direction file)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("directions", help="list a model's edit directions with their slider ranges",
                       description="List the edit directions stored in a model file (or a boundary / "
                                   "direction file) with slider range, scale, style slots and source.")
    p.add_argument("--model", default=None,
                   help="model name, model file, or direction/boundary file (default: the shipped demo model)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..directions import directions_in_model, load_directions_file
    from ..io.modelfile import is_safetensors, read_model
    from ..registry import DEFAULT_MODEL, resolve_model

    path = resolve_model(args.model or DEFAULT_MODEL)
    if is_safetensors(path):
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            is_model = "anycost.components" in (f.metadata() or {})
        dirs = directions_in_model(read_model(path)) if is_model else load_directions_file(path)
    else:
        dirs = load_directions_file(path)
    rows = [{"name": d.name, "source": d.source, "range": list(d.slider_range), "scale": round(d.scale, 4),
             "layers": d.layers, "shape": list(d.vector.shape)} for d in dirs.values()]
    if args.json:
        print(json.dumps({"model": str(path), "directions": rows}))
        return 0
    if not rows:
        print(f"{path}: no edit directions")
        return 0
    print(f"{'name':20s} {'source':9s} {'range':>14s} {'scale':>8s}  slots")
    for r in rows:
        rng = f"[{r['range'][0]:g}, {r['range'][1]:g}]"
        slots = "all" if r["layers"] is None else ",".join(map(str, r["layers"]))
        print(f"{r['name']:20s} {r['source']:9s} {rng:>14s} {r['scale']:8.3f}  {slots}")
    return 0
