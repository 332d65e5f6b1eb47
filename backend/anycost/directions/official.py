"""The published 40-attribute boundary files.

They are ``torch.save`` of a dict ``{"NN_Name": tensor (1, style_dim)}`` with CelebA attribute
names (``15_Eyeglasses``, ``31_Smiling``, …): unit normals of linear attribute boundaries in W.
Each becomes a Direction named by the lowercased attribute (``eyeglasses``, ``smiling``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from ..errors import InputError, ModelFileError
from ..io.checkpoint import load_weights_only
from .direction import Direction, DirectionSet

# W distance of slider 1.0 for a unit boundary normal when no generator is at hand to
# measure the latent spread (a few units is the usual editing range for these normals).
DEFAULT_OFFICIAL_SCALE = 3.0
_KEY = re.compile(r"^(\d+)_(.+)$")


def official_name(key: str) -> str:
    """``15_Eyeglasses`` → ``eyeglasses``; ``00_5_o_Clock_Shadow`` → ``5_o_clock_shadow``."""
    m = _KEY.match(key)
    return (m.group(2) if m else key).lower()


def load_official_boundaries(path: str | os.PathLike, *, scale: float = DEFAULT_OFFICIAL_SCALE,
                             layers: list[int] | None = None) -> DirectionSet:
    """Read an official boundary file safely (tensors only; pickled code is refused).

    A boundary fitted in W acts on every style slot (the latent it was fitted on is w broadcast
    to all slots), so ``layers`` defaults to all slots.
    """
    path = Path(path)
    obj = load_weights_only(path)  # weights_only=True; raises ModelFileError for pickled objects
    if not isinstance(obj, dict) or not obj:
        raise ModelFileError(f"{path} is not a boundary file: expected a dict of name → tensor, "
                             f"found {type(obj).__name__}")
    if "g_ema" in obj or "state_dict" in obj:
        raise ModelFileError(f"{path} is a model checkpoint, not a boundary file: it holds no edit directions")
    out = DirectionSet()
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ModelFileError(f"{path}: entry {key!r} is not a named tensor")
        v = value.detach().float().reshape(-1) if value.ndim == 2 and value.shape[0] == 1 else value.float()
        if v.ndim != 1:
            raise ModelFileError(f"{path}: boundary {key!r} has shape {tuple(value.shape)}, expected (1, D)")
        norm = float(v.norm())
        if not norm > 0 or not torch.isfinite(v).all():
            raise ModelFileError(f"{path}: boundary {key!r} is zero or not finite")
        name = official_name(key)
        if name in out:
            raise ModelFileError(f"{path}: two boundaries are both named {name!r}")
        try:
            out.add(Direction(name, v / norm, layers=layers, scale=scale, source="official",
                              info={"key": key, "file": path.name, "norm": norm}))
        except InputError as e:
            raise ModelFileError(f"{path}: {e}") from e
    return out
