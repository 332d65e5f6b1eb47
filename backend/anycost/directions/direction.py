"""Edit directions: a named offset in W+ that a slider moves a latent along.

A slider value ``v`` moves a W+ latent by ``v · scale · vector`` on the direction's style
slots (all slots when ``layers`` is None). ``vector`` is either one ``style_dim`` vector
(the same offset on every chosen slot) or a full ``(n_style, style_dim)`` offset.

A direction may carry a ``region``: a small 2-D map in [0, 1] over the model's output frame. Its
edit is then kept only inside that map and the rest of the image stays as it was
(``directions.regional``), so that e.g. hair length leaves the eyes and mouth alone.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import torch

from ..errors import InputError

SOURCES = ("labels", "sefa", "pca", "official", "file")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")


# a region map is small: it says where an attribute lives, at about the classifier's resolution
MAX_REGION_SIDE = 256


def check_region(name: str, region: object) -> torch.Tensor:
    """A direction's region as a float32 (h, w) map in [0, 1], or InputError saying what is wrong."""
    r = torch.as_tensor(region).detach().to("cpu", torch.float32)
    if r.ndim != 2 or min(r.shape) < 2 or max(r.shape) > MAX_REGION_SIDE:
        raise InputError(f"direction {name!r}: region must be a 2-D map of 2..{MAX_REGION_SIDE} pixels a side, "
                         f"got shape {tuple(r.shape)}")
    if not torch.isfinite(r).all() or float(r.min()) < 0 or float(r.max()) > 1:
        raise InputError(f"direction {name!r}: region values must lie in [0, 1]")
    if float(r.max()) == 0:
        raise InputError(f"direction {name!r}: region is empty (all zero): its edit would never show")
    return r.contiguous()


def check_name(name: str) -> str:
    """Direction names are short lowercase identifiers (they become tensor keys and CLI words)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InputError(f"invalid direction name {name!r}: use 1-64 lowercase letters, digits, '_' or '-'")
    return name


@dataclass
class Direction:
    """One edit direction and how a slider maps onto it."""

    name: str
    vector: torch.Tensor  # (style_dim,) broadcast to the chosen slots, or (n_style, style_dim)
    layers: list[int] | None = None  # style slots the offset applies to; None = every slot
    scale: float = 1.0  # W+ distance at slider value 1.0 (in units of ``vector``)
    slider_range: tuple[float, float] = (-1.0, 1.0)
    source: str = "file"
    info: dict = field(default_factory=dict)  # provenance and measurements (JSON-serialisable)
    hidden: bool = False  # kept in the model but left out of the sliders a dialog shows
    region: torch.Tensor | None = None  # (h, w) in [0, 1] over the output frame; None = the whole image

    def __post_init__(self) -> None:
        check_name(self.name)
        v = torch.as_tensor(self.vector).detach().to("cpu", torch.float32)
        if v.ndim == 2 and v.shape[0] == 1:
            v = v[0]
        if v.ndim not in (1, 2) or v.numel() == 0:
            raise InputError(f"direction {self.name!r}: vector must be (style_dim,) or (n_style, style_dim), "
                             f"got shape {tuple(v.shape)}")
        if not torch.isfinite(v).all():
            raise InputError(f"direction {self.name!r}: vector has non-finite values")
        self.vector = v.contiguous()
        if self.layers is not None:
            layers = sorted({int(i) for i in self.layers})
            if not layers or layers[0] < 0:
                raise InputError(f"direction {self.name!r}: layers must be non-negative style slot indices")
            self.layers = layers
        self.scale = float(self.scale)
        lo, hi = (float(x) for x in self.slider_range)
        if not (math.isfinite(self.scale) and math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise InputError(f"direction {self.name!r}: needs a finite scale and slider range lo < hi")
        self.slider_range = (lo, hi)
        if self.source not in SOURCES:
            raise InputError(f"direction {self.name!r}: source must be one of {SOURCES}, got {self.source!r}")
        if not isinstance(self.hidden, bool):
            raise InputError(f"direction {self.name!r}: hidden must be true or false, got {self.hidden!r}")
        if self.region is not None:
            self.region = check_region(self.name, self.region)

    @property
    def style_dim(self) -> int:
        return int(self.vector.shape[-1])

    def check_fits(self, n_style: int, style_dim: int) -> None:
        """Raise InputError when this direction cannot act on a (·, n_style, style_dim) latent."""
        if self.style_dim != style_dim:
            raise InputError(f"direction {self.name!r} has style_dim {self.style_dim}, the model uses {style_dim}")
        if self.vector.ndim == 2 and self.vector.shape[0] != n_style:
            raise InputError(f"direction {self.name!r} covers {self.vector.shape[0]} style slots, "
                             f"the model has {n_style}")
        if self.layers is not None and self.layers[-1] >= n_style:
            raise InputError(f"direction {self.name!r} uses style slot {self.layers[-1]}, "
                             f"the model has slots 0..{n_style - 1}")

    def offset(self, n_style: int, style_dim: int, value: float = 1.0) -> torch.Tensor:
        """The W+ offset (n_style, style_dim) for a slider value."""
        self.check_fits(n_style, style_dim)
        vec = self.vector if self.vector.ndim == 2 else self.vector.expand(n_style, -1)
        off = vec * (float(value) * self.scale)
        if self.layers is not None:
            mask = torch.zeros(n_style, 1)
            mask[self.layers] = 1.0
            off = off * mask
        return off

    def apply(self, w_plus: torch.Tensor, value: float) -> torch.Tensor:
        return DirectionSet([self]).apply(w_plus, {self.name: value})

    def config(self) -> dict:
        """JSON-serialisable settings (everything except the vector)."""
        cfg = {
            "layers": self.layers,
            "scale": self.scale,
            "slider_range": list(self.slider_range),
            "source": self.source,
            "info": self.info,
        }
        if self.hidden:  # only when set: files without hidden directions stay readable by older versions
            cfg["hidden"] = True
        return cfg

    def slider_spec(self) -> dict:
        """What the service announces for this direction's slider (welcome and ready messages)."""
        spec: dict = {"range": list(self.slider_range)}
        if self.hidden:
            spec["hidden"] = True
        return spec

    @classmethod
    def from_config(cls, name: str, vector: torch.Tensor, cfg: Mapping,
                    region: torch.Tensor | None = None) -> Direction:
        known = {"layers", "scale", "slider_range", "source", "info", "hidden"}
        unknown = set(cfg) - known
        if unknown:
            raise InputError(f"direction {name!r}: unknown settings {sorted(unknown)}")
        return cls(name=name, vector=vector, layers=cfg.get("layers"), scale=cfg.get("scale", 1.0),
                   slider_range=tuple(cfg.get("slider_range", (-1.0, 1.0))), source=cfg.get("source", "file"),
                   info=dict(cfg.get("info") or {}), hidden=cfg.get("hidden", False), region=region)


class DirectionSet(Mapping[str, Direction]):
    """An ordered, name-keyed collection of directions that applies slider values together."""

    def __init__(self, directions: Iterable[Direction] = ()):
        self._items: dict[str, Direction] = {}
        for d in directions:
            self.add(d)

    def add(self, direction: Direction, *, replace: bool = True) -> None:
        if not replace and direction.name in self._items:
            raise InputError(f"duplicate direction name {direction.name!r}")
        self._items[direction.name] = direction

    def merged(self, other: Iterable[Direction] | Mapping[str, Direction]) -> DirectionSet:
        """A new set: these directions, then ``other`` (same names replaced)."""
        out = DirectionSet(self.values())
        for d in other if not isinstance(other, Mapping) else other.values():
            out.add(d)
        return out

    def __getitem__(self, name: str) -> Direction:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"DirectionSet({list(self._items)})"

    def edited(self, name: str, *, rename: str | None = None, slider_range: tuple[float, float] | None = None,
               scale: float | None = None, hidden: bool | None = None) -> DirectionSet:
        """A new set with one direction's name or slider settings changed; slider order is kept.

        Refuses an unknown ``name`` (listing the known ones), a ``rename`` to a name another direction
        has, a range that is not ``lo < hi``, and a zero or non-finite ``scale``."""
        if name not in self._items:
            raise InputError(f"unknown direction {name!r}; available: {', '.join(self._items) or 'none'}")
        if rename is not None and rename != name and rename in self._items:
            raise InputError(f"cannot rename {name!r} to {rename!r}: another direction has that name")
        if scale is not None and (not math.isfinite(float(scale)) or float(scale) == 0.0):
            raise InputError(f"scale must be a finite, non-zero number, got {scale!r}")
        if slider_range is not None:
            lo, hi = (float(x) for x in slider_range)
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise InputError(f"a slider range needs finite LO < HI, got [{lo:g}, {hi:g}]")
        old = self._items[name]
        changes: dict = {"name": check_name(rename) if rename is not None else name}
        if slider_range is not None:
            changes["slider_range"] = tuple(slider_range)
        if scale is not None:
            changes["scale"] = float(scale)
        if hidden is not None:
            changes["hidden"] = bool(hidden)
        new = dataclasses.replace(old, **changes)  # __post_init__ checks the result
        return DirectionSet(new if n == name else d for n, d in self._items.items())

    def slider_specs(self) -> dict[str, dict]:
        """``{name: {"range": [lo, hi]}}`` in slider order, ``"hidden": true`` on hidden ones: the
        ``directions`` field of the service's welcome and ready messages."""
        return {name: d.slider_spec() for name, d in self._items.items()}

    def offset(self, n_style: int, style_dim: int, values: Mapping[str, float]) -> torch.Tensor:
        """Summed W+ offset (n_style, style_dim) of several slider values."""
        total = torch.zeros(n_style, style_dim)
        for name, value in values.items():
            if name not in self._items:
                raise InputError(f"unknown direction {name!r}; available: {', '.join(self._items) or 'none'}")
            v = float(value)
            if not math.isfinite(v):
                raise InputError(f"slider value for {name!r} must be finite, got {value!r}")
            if v != 0.0:
                total = total + self._items[name].offset(n_style, style_dim, v)
        return total

    def apply(self, w_plus: torch.Tensor, values: Mapping[str, float]) -> torch.Tensor:
        """Move W+ (N, n_style, D) or (n_style, D) by the given slider values; returns a new tensor.

        Values outside a direction's slider range are applied as given (the range is what a user
        interface offers, not a hard limit).
        """
        if w_plus.ndim not in (2, 3):
            raise InputError(f"W+ must be (N, n_style, style_dim) or (n_style, style_dim), "
                             f"got {tuple(w_plus.shape)}")
        n_style, style_dim = w_plus.shape[-2], w_plus.shape[-1]
        off = self.offset(n_style, style_dim, values).to(device=w_plus.device, dtype=w_plus.dtype)
        return w_plus + off
