"""Choosing the preview sub-generator: the cost previews render at, on this machine, now.

Every candidate is judged by the one rule of ``search/budget.py``: the median of a few whole renders
here must fit the preview budget (within its tolerance).

- ``pick_uniform``: the richest uniform ratio that fits, measured cheapest first (``parse_cost``
  answers ``preview`` with it);
- ``pick_from_table``: the best entry of a search table that fits. For the project's tables, the
  entries searched for at most the preview budget are tried most faithful first (so with budgets
  40, 80, 160 ms searched and a 150 ms preview, the 80 ms entry is used); an entry that misses is
  refused and the next one is tried. Entries the search itself timed over their budget on this
  machine are skipped without timing. Published tables carry MAC budgets and no timings: their
  entries are timed cheapest first, stopping at the first that misses, and the most faithful that
  fits is taken;
- ``better_choice``: which of two choices makes the better preview; ``pick_preview`` is the whole
  choice (what ``Editor`` uses);
- ``decide_preview_precision``: whether previews render in bfloat16.

The search (``anycost.search``) measures and writes the tables; this module only reads them.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch

from ..errors import InputError
from ..measures.psnr import psnr
from ..models.channels import STANDARD_RATIOS
from ..models.flops import count_flops
from ..models.generator import Generator
from ..models.precision import cpu_has_native_bf16
from ..search.budget import FIT_RENDERS, fits_budget
from ..search.cache import machine_id, machine_info
from ..search.consistency import ConsistencyEvaluator, consistency_latents
from ..search.latency import measure_configs
from ..search.space import SubConfig, layers_used
from ..search.table import SearchTable, TableEntry
from .render import FULL, Cost, candidate_costs

# About 12 previews a second, the rate at which a slider drag still reads as continuous (see docs/search.md).
DEFAULT_PREVIEW_BUDGET_MS = 80.0


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


MAX_TRIES = 3  # entries timed before giving up on a table (each costs a few renders)


def entry_cost(G: Generator, e: TableEntry) -> Cost:
    """The render cost of a table entry: a ratio when it is one (readable as ``RES:RATIO``), else the widths."""
    n = layers_used(e.res)
    res = None if e.res == G.resolution else e.res
    if list(e.channels[:n]) == G.full_channels[:n]:
        return Cost(res, None)
    if e.ratio is not None and 0 < e.ratio < 1:
        uniform = G.resolve_channels(float(e.ratio))
        if uniform is not None and list(uniform[:n]) == list(e.channels[:n]):
            return Cost(res, float(e.ratio))
    return Cost(res, tuple(int(c) for c in e.channels))


def time_entry(G: Generator, e: TableEntry, passes: int = FIT_RENDERS, dtype: torch.dtype | None = None) -> float:
    """Median ms of whole renders of the entry's sub-generator here (the statistic of ``fits_budget``)."""
    (_, median), = measure_configs(G, [SubConfig(e.res, tuple(e.channels))], passes=passes, dtype=dtype)
    return median


def pick_from_table(G: Generator, table: SearchTable, budget_ms: float, *, passes: int = FIT_RENDERS,
                    dtype: torch.dtype | None = None, speedup: float = 1.0) -> PreviewChoice | None:
    """The best entry of ``table`` that fits ``budget_ms`` here and now, or None. With bf16 previews
    (``dtype``) entries are timed in bf16, and those searched for up to ``speedup`` × the budget compete:
    the faster path buys a richer sub-generator."""
    table.check_fits(G)
    precision = "bf16" if dtype == torch.bfloat16 else "fp32"
    if table.source == "search":
        here = table.machine_id is not None and table.machine_id == machine_id(machine_info(G._device()))
        tries = 0
        for e in table.ranked(budget_ms * max(1.0, speedup)):
            if e.fits is False and here and precision == "fp32":
                continue  # timed over its budget right after the search, on this machine
            if tries >= MAX_TRIES:
                break
            tries += 1
            median = time_entry(G, e, passes, dtype)
            if fits_budget(median, budget_ms):
                flops = e.flops if e.flops is not None else count_flops(G, e.res, list(e.channels))
                return PreviewChoice(entry_cost(G, e), budget_ms, "search", measured_ms=median,
                                     predicted_ms=e.predicted_ms, psnr=e.psnr, flops=flops, fits=True,
                                     score=e.score, baseline=e.baseline, precision=precision)
        return None
    fits: list[tuple[TableEntry, float]] = []
    for e in sorted(table.entries.values(), key=lambda e: count_flops(G, e.res, list(e.channels))):
        median = time_entry(G, e, passes, dtype)
        if not fits_budget(median, budget_ms):
            break
        fits.append((e, median))
    if not fits:
        return None
    e, median = max(fits, key=lambda t: (t[0].quality(), -t[1]))
    return PreviewChoice(entry_cost(G, e), budget_ms, "table", measured_ms=median, psnr=e.psnr,
                         flops=count_flops(G, e.res, list(e.channels)), fits=True, precision=precision)


def better_choice(G: Generator, current: PreviewChoice, other: PreviewChoice) -> PreviewChoice:
    """``other`` when it is a better preview than ``current``, else ``current``.

    In order: the full generator that fits wins (it is the final render); one that fits beats one
    that misses; else the more faithful to the full generator wins, scored alike for both: by the
    search's own numbers when one is the other's recorded baseline, else by ``quick_psnr``. Ties
    keep ``current``; the same sub-generator is ``other`` (the fresher reading)."""
    if other.cost == current.cost:
        return other
    for c in (current, other):
        if c.is_full and c.fits:
            return c
    if bool(current.fits) != bool(other.fits):
        return current if current.fits else other
    scores = _baseline_scores(G, current, other)
    if scores is None:
        scores = quick_psnr(G, current.cost), quick_psnr(G, other.cost)
    return other if scores[1] > scores[0] else current


def _uniform_label(G: Generator, cost: Cost) -> str | None:
    """A uniform cost written as the search writes its configurations (``SubConfig.label``)."""
    if isinstance(cost.channels, tuple):
        return None
    return f"{cost.res or G.resolution}:{1.0 if cost.channels is None else cost.channels:g}"


def _baseline_scores(G: Generator, a: PreviewChoice, b: PreviewChoice) -> tuple[float, float] | None:
    """(a's, b's) scores when one is the recorded baseline of the other (same latents, same metric:
    the search's score for both, else PSNR for both)."""
    for x, y, swap in ((a, b, False), (b, a, True)):
        base = y.baseline
        if not isinstance(base, dict) or base.get("label") != _uniform_label(G, x.cost):
            continue
        for mine, key in ((y.score, "score"), (y.psnr, "psnr")):
            theirs = base.get(key)
            if mine is not None and isinstance(theirs, (int, float)):
                pair = (float(theirs), float(mine))
                return (pair[1], pair[0]) if swap else pair
    return None


QUICK_LATENTS = 4  # latents of the quick comparison: a full render each, once per generator
_quick: dict[int, ConsistencyEvaluator] = {}


def quick_psnr(G: Generator, cost: Cost) -> float:
    """PSNR (dB) of ``cost``'s renders against the full generator's on a few fixed latents (upsampled
    as the search compares them); cheap enough to decide between two previews at start-up."""
    ev = _quick.get(id(G))
    if ev is None or ev.G is not G:
        ev = _quick[id(G)] = ConsistencyEvaluator(G, consistency_latents(G, QUICK_LATENTS, seed=0))
    kw = cost.render_kwargs()
    channels = G.resolve_channels(kw["channels"]) or G.full_channels
    return ev(SubConfig(kw["res"] or G.resolution, tuple(int(c) for c in channels))).psnr


def pick_preview(G: Generator, budget_ms: float = DEFAULT_PREVIEW_BUDGET_MS,
                 table: SearchTable | None = None, ratios: Sequence[float] = STANDARD_RATIOS,
                 dtype: torch.dtype | None = None, speedup: float = 1.0) -> PreviewChoice:
    """The preview sub-generator for ``budget_ms``: the richest uniform ratio that fits
    (``pick_uniform``), or the best entry of ``table`` that fits here now when it is more faithful
    (``better_choice``). The full generator, when it fits, is never replaced.

    ``dtype`` (bf16 previews) times every candidate as previews will render; ``speedup`` (how much
    faster that is) lets table entries searched for a proportionally larger budget compete."""
    cost, ms = pick_uniform(G, budget_ms, ratios, dtype)
    precision = "bf16" if dtype == torch.bfloat16 else "fp32"
    uniform = PreviewChoice(cost, budget_ms, "uniform", measured_ms=ms, fits=fits_budget(ms, budget_ms),
                            flops=count_flops(G, cost.res, cost.render_kwargs()["channels"]), precision=precision)
    if table is None:
        return uniform
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


# A draft (a preview rendered while a slider moves faster than previews render, see service/sessions.py)
# takes at most this share of the preview's render time: a drag's last edit may wait for one in flight.
DRAFT_SHARE = 0.25
DRAFT_MIN_RES = 16


def lower_resolution(cost: Cost, G: Generator) -> Cost:
    """``cost`` at the next lower output resolution, the same channels (``cost`` itself at the lowest): the
    draft of a preview asked for at a cost of its own rather than the chosen preview."""
    res = cost.res or G.resolution
    lower = [r for r in G.resolutions if r < res]
    return Cost(max(lower), cost.channels) if lower else cost


def pick_draft(G: Generator, preview: PreviewChoice, ratios: Sequence[float] = STANDARD_RATIOS,
               dtype: torch.dtype | None = None, share: float = DRAFT_SHARE) -> Cost:
    """The richest sub-generator below ``preview`` that renders in ``share`` of its measured time here:
    a lower output resolution, at the preview's channels or a trained uniform ratio (the cheapest such
    one when none is that fast; the preview itself when nothing is cheaper)."""
    p = preview.cost
    res = p.res or G.resolution
    preview_flops = count_flops(G, p.res, p.channels)
    lower = [r for r in G.resolutions if DRAFT_MIN_RES <= r < res] or [r for r in G.resolutions if r < res][-1:]
    candidates = {Cost(r, p.channels) for r in lower}
    candidates |= {Cost(r, None if q == 1.0 else float(q)) for r in lower for q in ratios}
    ordered = sorted((c for c in candidates if count_flops(G, c.res, c.channels) < preview_flops),
                     key=lambda c: count_flops(G, c.res, c.channels))
    if not ordered:
        return p
    limit = share * (preview.measured_ms or measure_cost_ms(G, p, dtype=dtype))
    best = ordered[0]
    for c in ordered:  # cheapest first: times grow with FLOPs, so stop at the first too slow
        if measure_cost_ms(G, c, dtype=dtype) > limit:
            break
        best = c
    return best
