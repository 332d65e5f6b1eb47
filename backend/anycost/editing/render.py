"""Render costs: which sub-generator (resolution × channels) draws an image.

A cost is written ``full``, ``preview``, ``RES`` (``256``), ``RATIO`` (``0.5``) or
``RES:RATIO`` (``256:0.5``). ``preview`` means a sub-generator that fits the preview latency
budget on this machine. ``parse_cost`` answers it with the richest uniform sub-generator whose
measured render time fits (``pick_preview_cost``); only ``pick_preview``, which ``Editor`` uses,
also takes a searched configuration from a search table (``anycost.search``) when one is given.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import torch

from ..errors import InputError
from ..models.channels import STANDARD_RATIOS
from ..models.flops import count_flops
from ..models.generator import Generator
from ..search.budget import FIT_RENDERS, fits_budget

if TYPE_CHECKING:
    from ..search.table import SearchTable

# About 12 previews a second, the rate at which a slider drag still reads as continuous (see docs/search.md).
DEFAULT_PREVIEW_BUDGET_MS = 80.0


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


def parse_cost(text: str, G: Generator, *, preview_budget_ms: float = DEFAULT_PREVIEW_BUDGET_MS,
               ratios: Sequence[float] = STANDARD_RATIOS) -> Cost:
    t = text.strip().lower()
    if t == "full":
        return FULL
    if t == "preview":
        return pick_preview_cost(G, preview_budget_ms, ratios)
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


def candidate_costs(G: Generator, ratios: Sequence[float] = STANDARD_RATIOS) -> list[Cost]:
    """Uniform sub-generators at the upper resolutions, cheapest first by FLOPs.

    ``ratios``: the channel ratios the model was trained for; ``(1.0,)`` for a plain StyleGAN2,
    whose only sub-generators are its intermediate resolutions."""
    res = [r for r in G.resolutions if r >= max(32, G.resolution // 8)]
    out = [Cost(None if r == G.resolution else r, None if q == 1.0 else float(q)) for r in res for q in ratios]
    return sorted(out, key=lambda c: count_flops(G, c.res, c.channels))


_timings: dict[tuple[int, str, str, str], float] = {}


@torch.inference_mode()
def measure_cost_ms(G: Generator, cost: Cost, repeats: int = FIT_RENDERS, dtype: torch.dtype | None = None) -> float:
    """Median render time (ms) of one image at ``cost`` (in ``dtype``: bf16 previews) on the generator's
    device; cached."""
    device = next(G.parameters()).device
    key = (id(G), cost.label(), str(device), str(dtype))
    if key not in _timings:
        w = G.to_w_plus(G.mean_w())
        G.synthesize(w, dtype=dtype, **cost.render_kwargs())  # warm-up (weight caches, allocator)
        times = []
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            G.synthesize(w, dtype=dtype, **cost.render_kwargs())
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append((time.perf_counter() - t0) * 1000)
        _timings[key] = statistics.median(times)
    return _timings[key]


def pick_preview_cost(G: Generator, budget_ms: float = DEFAULT_PREVIEW_BUDGET_MS,
                      ratios: Sequence[float] = STANDARD_RATIOS) -> Cost:
    """The most expensive candidate that fits ``budget_ms`` by ``fits_budget`` (the cheapest if none does)."""
    return pick_uniform(G, budget_ms, ratios)[0]


def pick_uniform(G: Generator, budget_ms: float = DEFAULT_PREVIEW_BUDGET_MS,
                 ratios: Sequence[float] = STANDARD_RATIOS, dtype: torch.dtype | None = None) -> tuple[Cost, float]:
    """``pick_preview_cost``'s choice and the median it was chosen by (one reading decides and reports).

    Candidates are measured cheapest first and measuring stops at the first one over budget,
    so picking costs little more than the budget itself.
    """
    first = best = None
    for cost in candidate_costs(G, ratios):
        ms = measure_cost_ms(G, cost, dtype=dtype)
        first = first or (cost, ms)
        if not fits_budget(ms, budget_ms):
            break
        best = (cost, ms)
    assert first is not None  # every model has candidates
    return best or first


@dataclass(frozen=True)
class PreviewChoice:
    """The preview sub-generator and why: where it came from and what it costs on this machine."""

    cost: Cost
    budget_ms: float
    source: str  # 'uniform' (measured ratios), 'search' (a searched table) or 'table' (a published table)
    measured_ms: float | None = None  # median whole-render time when it was chosen
    predicted_ms: float | None = None  # from the latency model of the search
    psnr: float | None = None  # consistency with the full generator, from the search
    flops: int | None = None
    fits: bool | None = None  # measured_ms fits budget_ms by the one rule (search/budget.py)
    score: float | None = None  # the search's score (PSNR, less a share of LPIPS), from the search
    # the largest budget (≤ budget_ms) the table considered holds an entry for: None when no table
    # did, so a background search for budget_ms would add something
    searched_ms: float | None = None
    # the entry's best uniform ratio within its own budget, scored as the entry was
    baseline: dict | None = field(default=None, compare=False)
    precision: str = "fp32"  # "bf16" where previews render in bfloat16 (Editor.preview_precision)

    @property
    def is_full(self) -> bool:
        """The full generator itself: a preview that is the final render."""
        return self.cost == FULL

    def describe(self) -> dict:
        """Plain fields for logs and the service's welcome message."""
        return {"source": self.source, "measured_ms": _round(self.measured_ms),
                "predicted_ms": _round(self.predicted_ms), "psnr": _round(self.psnr), "flops": self.flops,
                "fits": self.fits, "precision": self.precision,
                "channels": list(self.cost.channels) if isinstance(self.cost.channels, tuple) else None}


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 3)


def pick_preview(G: Generator, budget_ms: float = DEFAULT_PREVIEW_BUDGET_MS,
                 table: SearchTable | None = None, ratios: Sequence[float] = STANDARD_RATIOS,
                 dtype: torch.dtype | None = None, speedup: float = 1.0) -> PreviewChoice:
    """The preview sub-generator for ``budget_ms``: the richest uniform ratio that fits
    (``pick_uniform``), or the best entry of ``table`` that fits here now when it is more faithful
    (``search.preview.better_choice``). The full generator, when it fits, is never replaced.

    ``dtype`` (bf16 previews) times every candidate as previews will render; ``speedup`` (how much
    faster that is) lets table entries searched for a proportionally larger budget compete."""
    cost, ms = pick_uniform(G, budget_ms, ratios, dtype)
    precision = "bf16" if dtype == torch.bfloat16 else "fp32"
    uniform = PreviewChoice(cost, budget_ms, "uniform", measured_ms=ms, fits=fits_budget(ms, budget_ms),
                            flops=count_flops(G, cost.res, cost.render_kwargs()["channels"]), precision=precision)
    if table is None:
        return uniform
    from ..search.preview import better_choice, pick_from_table

    searched = max((b for b in table.budgets_ms() if b <= budget_ms), default=None)
    best = uniform
    if not (uniform.is_full and uniform.fits):
        entry = pick_from_table(G, table, budget_ms, dtype=dtype, speedup=speedup)
        if entry is not None:
            best = better_choice(G, uniform, entry)
    return replace(best, searched_ms=searched)


# Previews may render in bfloat16 when that costs at most this much consistency (PSNR against the
# full-width render at the preview's resolution, mean over a few latents).
BF16_MAX_COST_DB = 0.5
_PSNR_CAP_DB = 50.0  # a preview that is the full render itself: "identical" counts as this


@torch.inference_mode()
def bf16_cost_db(G: Generator, cost: Cost, n: int = 4, seed: int = 1234) -> float:
    """How many dB of consistency ``cost`` loses when it renders in bfloat16 instead of float32."""
    from ..measures.psnr import psnr

    w = G.styles_from_seed(seed, n=n, truncation=0.8)
    kw = cost.render_kwargs()
    ref = G.synthesize(w, res=kw["res"])

    def db(img: torch.Tensor) -> float:
        return float(psnr(img, ref).clamp(max=_PSNR_CAP_DB).mean())

    return db(G.synthesize(w, **kw)) - db(G.synthesize(w, dtype=torch.bfloat16, **kw))


def decide_preview_precision(G: Generator, budget_ms: float, ratios: Sequence[float], setting: str = "auto"
                             ) -> dict:
    """Whether previews render in bf16 on this machine: ``setting`` 'fp32' never, 'bf16' always (on CPU),
    'auto' where the CPU has native bf16 and it costs at most ``BF16_MAX_COST_DB`` at both the float32
    pick and the richer pick bf16's speed buys. Returns the decision with what it was measured on."""
    from ..models.precision import cpu_has_native_bf16

    if setting not in ("auto", "fp32", "bf16"):
        raise InputError(f"preview precision must be auto, fp32 or bf16, got {setting!r}")
    on_cpu = next(G.parameters()).device.type == "cpu"
    if setting == "fp32" or not on_cpu or (setting == "auto" and not cpu_has_native_bf16()):
        why = {"fp32": "asked for", "bf16": ""}.get(setting) or ("not a CPU render" if not on_cpu
                                                               else "the CPU has no native bf16")
        return {"precision": "fp32", "reason": why}
    c32, ms32 = pick_uniform(G, budget_ms, ratios)
    if setting == "auto" and c32 == FULL and fits_budget(ms32, budget_ms):
        return {"precision": "fp32", "reason": "the full generator fits the budget in float32"}
    cost32 = bf16_cost_db(G, c32)
    speedup = measure_cost_ms(G, c32) / max(measure_cost_ms(G, c32, dtype=torch.bfloat16), 1e-6)
    report = {"cost_db": round(cost32, 3), "speedup": round(speedup, 2), "at": c32.label()}
    if setting == "bf16":
        return {**report, "precision": "bf16", "reason": "asked for"}
    if cost32 > BF16_MAX_COST_DB or speedup <= 1.05:
        return {**report, "precision": "fp32",
                "reason": f"bf16 costs {cost32:.2f} dB" if cost32 > BF16_MAX_COST_DB else "bf16 is not faster here"}
    c16, _ = pick_uniform(G, budget_ms, ratios, torch.bfloat16)
    cost16 = cost32 if c16 == c32 else bf16_cost_db(G, c16)
    if cost16 > BF16_MAX_COST_DB:
        return {**report, "precision": "fp32", "reason": f"bf16 costs {cost16:.2f} dB at {c16.label()}"}
    return {**report, "precision": "bf16", "cost_db": round(max(cost32, cost16), 3), "at": c16.label(),
            "reason": f"native bf16, {speedup:.2f}× faster, costs {max(cost32, cost16):.2f} dB"}
