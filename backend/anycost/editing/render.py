"""Render costs: which sub-generator (resolution × channels) draws an image.

A cost is written ``full``, ``preview``, ``RES`` (``256``), ``RATIO`` (``0.5``) or
``RES:RATIO`` (``256:0.5``); ``preview_choice.parse_cost`` reads it, since ``preview`` is a choice
made by measuring on this machine. Here are only the costs themselves and the uniform candidates.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import InputError
from ..models.channels import STANDARD_RATIOS
from ..models.flops import count_flops
from ..models.generator import Generator


@dataclass(frozen=True)
class Cost:
    res: int | None = None  # None = the model's resolution
    channels: float | tuple[int, ...] | None = None  # None = full width

    def label(self) -> str:
        res = "full-res" if self.res is None else str(self.res)
        if self.channels is None:
            ch = "1.0"
        elif isinstance(self.channels, float):
            ch = f"{self.channels:g}"
        else:  # distinct per configuration: labels key caches of renders and timings
            ch = "flexible-" + hashlib.sha1(",".join(map(str, self.channels)).encode()).hexdigest()[:8]
        return f"{res}:{ch}"

    def check(self, G: Generator) -> Cost:
        if self.res is not None and self.res not in G.resolutions:
            raise InputError(f"cost resolution {self.res} is not one of {G.resolutions}")
        try:
            G.resolve_channels(list(self.channels) if isinstance(self.channels, tuple) else self.channels)
        except ValueError as e:
            raise InputError(f"cost channels: {e}") from e
        return self

    def render_kwargs(self) -> dict:
        ch = list(self.channels) if isinstance(self.channels, tuple) else self.channels
        return {"res": self.res, "channels": ch}


FULL = Cost()


def candidate_costs(G: Generator, ratios: Sequence[float] = STANDARD_RATIOS) -> list[Cost]:
    """Uniform sub-generators at the upper resolutions, cheapest first by FLOPs.

    ``ratios``: the channel ratios the model was trained for; ``(1.0,)`` for a plain StyleGAN2,
    whose only sub-generators are its intermediate resolutions."""
    res = [r for r in G.resolutions if r >= max(32, G.resolution // 8)]
    out = [Cost(None if r == G.resolution else r, None if q == 1.0 else float(q)) for r in res for q in ratios]
    return sorted(out, key=lambda c: count_flops(G, c.res, c.channels))
