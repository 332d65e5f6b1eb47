"""Reading and writing directions: the model-file component and standalone boundary files.

- Model-file component ``directions``: config ``{"version": 1, "directions": [{"name": …,
  settings…}, …]}`` (a list, so the order sliders appear in is kept) plus one tensor per
  direction (key = name) and, for a direction with a region, its map (key = ``name.region``; a
  direction name has no dot, so the keys cannot collide).
- Standalone ``.safetensors``: one tensor per direction, settings as JSON in the header
  metadata (``anycost.directions``); a plain safetensors file without it is read with defaults.
- Standalone ``.npy``: one direction (``(D,)``, ``(1, D)`` or ``(n_style, D)``) named after the file.
- Official boundary files (``.pt``/``.pth``): ``torch.save`` of ``{"NN_Name": tensor (1, D)}``;
  read with ``weights_only=True`` (see ``official``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError, ModelFileError
from ..fsutil import atomic_write
from ..io.modelfile import Component, is_safetensors, read_safetensors
from .direction import Direction, DirectionSet

COMPONENT = "directions"
COMPONENT_VERSION = 1
_META_KEY = "anycost.directions"
_REGION_SUFFIX = ".region"
# The smallest style vector a direction file may hold (the project's smallest generators use 32).
MIN_STYLE_DIM = 8


def to_component(directions: Iterable[Direction]) -> Component:
    dirs = list(directions.values()) if isinstance(directions, DirectionSet) else list(directions)
    return Component(
        config={"version": COMPONENT_VERSION, "directions": [{"name": d.name, **d.config()} for d in dirs]},
        tensors={**{d.name: d.vector.contiguous().clone() for d in dirs},
                 **{region_key(d.name): d.region.contiguous().clone() for d in dirs if d.region is not None}},
    )


def region_key(name: str) -> str:
    """The tensor key of a direction's region map."""
    return f"{name}{_REGION_SUFFIX}"


def from_component(comp: Component, where: str = "model file") -> DirectionSet:
    cfg = comp.config or {}
    if not isinstance(cfg, dict):
        raise ModelFileError(f"{where}: the directions settings must be a JSON object")
    if cfg.get("version", COMPONENT_VERSION) != COMPONENT_VERSION:
        raise ModelFileError(f"{where}: directions format version {cfg.get('version')} is not supported")
    settings = cfg.get("directions", [])
    if not isinstance(settings, list) or not all(isinstance(s, dict) and "name" in s for s in settings):
        raise ModelFileError(f"{where}: the directions settings are not a list of named entries")
    missing = sorted(s["name"] for s in settings if s["name"] not in comp.tensors)
    if missing:
        raise ModelFileError(f"{where}: directions without a vector: {', '.join(map(str, missing))}")
    out = DirectionSet()
    for s in settings:
        name = s["name"]
        try:
            if name in out:
                raise InputError(f"duplicate direction name {name!r}")
            out.add(Direction.from_config(name, comp.tensors[name], {k: v for k, v in s.items() if k != "name"},
                                          region=comp.tensors.get(region_key(name))))
        except InputError as e:
            raise ModelFileError(f"{where}: {e}") from e
    return out


def directions_in_model(model_file) -> DirectionSet:
    """Directions stored in a read model file (an empty set when there are none)."""
    comp = model_file.components.get(COMPONENT)
    return DirectionSet() if comp is None else from_component(comp, str(model_file.path))


def save_directions_file(path: str | os.PathLike, directions: Iterable[Direction]) -> Path:
    """Write a standalone direction file: ``.safetensors`` (any number) or ``.npy`` (exactly one)."""
    path = Path(path)
    dirs = list(directions.values()) if isinstance(directions, DirectionSet) else list(directions)
    if not dirs:
        raise InputError("no directions to save")
    if path.suffix == ".npy":
        if len(dirs) != 1:
            raise InputError(f"a .npy file holds one direction; got {len(dirs)} (use .safetensors)")
        arr = dirs[0].vector.numpy()
        return atomic_write(path, lambda tmp: np.save(tmp, arr[None] if arr.ndim == 1 else arr))
    if path.suffix != ".safetensors":
        raise InputError(f"direction files are .safetensors or .npy, not {path.suffix or 'no suffix'!r}")
    from safetensors.torch import save_file

    comp = to_component(dirs)
    meta = {_META_KEY: json.dumps(comp.config, sort_keys=True)}
    return atomic_write(path, lambda tmp: save_file(comp.tensors, tmp, metadata=meta))


def load_directions_file(path: str | os.PathLike, *, source: str = "file",
                         fits: tuple[int, int] | None = None) -> DirectionSet:
    """Read a standalone direction file of any supported kind (see the module docstring).

    ``fits`` = (n_style, style_dim) of the model the directions are for: a direction of another shape
    is an ``InputError`` that names the file. Without it only the shape's form is checked."""
    path = Path(path)
    dirs = _read_directions_file(path, source)
    if fits is not None:
        for d in dirs.values():
            try:
                d.check_fits(*fits)
            except InputError as e:
                raise InputError(f"{path}: {e}") from None
    return dirs


def _read_directions_file(path: Path, source: str) -> DirectionSet:
    if not path.is_file():
        raise InputError(f"direction file not found: {path}")
    if path.suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise ModelFileError(f"{path} is not a plain numeric .npy array: {e}") from e
        if arr.dtype.kind not in "fiu":
            raise ModelFileError(f"{path} does not hold numbers (dtype {arr.dtype})")
        _check_npy_shape(path, arr.shape)
        name = path.stem.lower().replace(" ", "_")
        try:
            return DirectionSet([Direction(name, torch.from_numpy(np.asarray(arr, np.float32)), source=source)])
        except InputError as e:
            raise ModelFileError(f"{path}: {e}") from e
    if is_safetensors(path):
        meta, tensors = read_safetensors(path)
        if _META_KEY in meta:
            from ..io.bounds import parse_json

            try:  # size and depth bounded before parsing, like a model file's metadata
                cfg = parse_json(meta[_META_KEY], "the direction settings")
            except ValueError as e:
                raise ModelFileError(f"{path}: {e}") from e
            return from_component(Component(cfg, tensors), str(path))
        if "anycost.components" in meta:
            from ..io.modelfile import read_model

            return directions_in_model(read_model(path))
        try:
            return DirectionSet(Direction(k.lower(), v, source=source) for k, v in tensors.items())
        except InputError as e:
            raise ModelFileError(f"{path}: {e}") from e
    from .official import load_official_boundaries

    return load_official_boundaries(path)


def _check_npy_shape(path: Path, shape: tuple[int, ...]) -> None:
    """A .npy direction is (style_dim,), (1, style_dim) or (n_style, style_dim); a generator has
    n_style = 2 · log2(resolution) − 2 slots, an even number, and a style vector of at least
    ``MIN_STYLE_DIM`` numbers. Anything else is some other array, not a direction."""
    dims = shape[-1] if shape else 0
    rows = shape[0] if len(shape) == 2 else 1
    if len(shape) not in (1, 2) or dims < MIN_STYLE_DIM or (rows != 1 and (rows % 2 or rows < 2)):
        raise ModelFileError(
            f"{path} holds an array of shape {tuple(shape)}, not a direction: expected (style_dim,), "
            f"(1, style_dim) or (n_style, style_dim) with an even number of style slots and "
            f"style_dim ≥ {MIN_STYLE_DIM} (e.g. (512,) or (18, 512))"
        )
