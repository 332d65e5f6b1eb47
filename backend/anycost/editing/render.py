"""Render costs: which sub-generator (resolution × channels) draws an image.

A cost is written ``full``, ``preview``, ``RES`` (``256``), ``RATIO`` (``0.5``) or
``RES:RATIO`` (``256:0.5``). ``preview`` means the richest sub-generator whose render time,
measured on this machine, fits the preview latency budget (``pick_preview_cost``).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

from ..errors import InputError
from ..models.channels import STANDARD_RATIOS
from ..models.flops import count_flops
from ..models.generator import Generator

DEFAULT_PREVIEW_BUDGET_MS = 150.0


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
        else:
            ch = "flexible"
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


def parse_cost(text: str, G: Generator, *, preview_budget_ms: float = DEFAULT_PREVIEW_BUDGET_MS) -> Cost:
    t = text.strip().lower()
    if t == "full":
        return FULL
    if t == "preview":
        return pick_preview_cost(G, preview_budget_ms)
    try:
        if ":" in t:
            r, c = t.split(":", 1)
            cost = Cost(int(r), None if float(c) == 1.0 else float(c))
        elif "." in t:
            cost = Cost(None, None if float(t) == 1.0 else float(t))
        else:
            cost = Cost(int(t), None)
    except ValueError as e:
        raise InputError(f"cost must be 'full', 'preview', RES, RATIO or RES:RATIO (e.g. 256:0.5), got {text!r}") from e
    return cost.check(G)


def candidate_costs(G: Generator) -> list[Cost]:
    """Uniform sub-generators at the upper resolutions, cheapest first by FLOPs."""
    res = [r for r in G.resolutions if r >= max(32, G.resolution // 8)]
    out = [Cost(None if r == G.resolution else r, None if q == 1.0 else q) for r in res for q in STANDARD_RATIOS]
    return sorted(out, key=lambda c: count_flops(G, c.res, c.channels))


_timings: dict[tuple[int, str, str], float] = {}


@torch.inference_mode()
def measure_cost_ms(G: Generator, cost: Cost, repeats: int = 3) -> float:
    """Median render time (ms) of one image at ``cost`` on the generator's device; cached."""
    device = next(G.parameters()).device
    key = (id(G), cost.label(), str(device))
    if key not in _timings:
        w = G.to_w_plus(G.mean_w())
        G.synthesize(w, **cost.render_kwargs())  # warm-up (weight caches, allocator)
        times = []
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            G.synthesize(w, **cost.render_kwargs())
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append((time.perf_counter() - t0) * 1000)
        _timings[key] = statistics.median(times)
    return _timings[key]


def pick_preview_cost(G: Generator, budget_ms: float = DEFAULT_PREVIEW_BUDGET_MS) -> Cost:
    """The most expensive candidate whose measured time fits ``budget_ms`` (the cheapest if none does).

    Candidates are measured cheapest first and measuring stops at the first one over budget,
    so picking costs little more than the budget itself.
    """
    best = None
    for cost in candidate_costs(G):
        if measure_cost_ms(G, cost) <= budget_ms:
            best = cost
        else:
            break
    return best or candidate_costs(G)[0]
