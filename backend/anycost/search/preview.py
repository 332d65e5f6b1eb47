"""Choosing the service's preview sub-generator from a search table, on this machine, now.

Every entry is judged by the one rule of ``budget.py``: the median of a few whole renders here
must fit the preview budget (within its tolerance). For the project's tables, the entries
searched for at most the preview budget are tried most faithful first (so with budgets 40, 80,
160 ms searched and a 150 ms preview, the 80 ms entry is used); an entry that misses is refused
and the next one is tried. Entries the search itself timed over their budget on this machine are
skipped without timing. Published tables carry MAC budgets and no timings: their entries are
timed cheapest first, stopping at the first that misses, and the most faithful that fits is taken.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..editing.render import Cost, PreviewChoice
from ..models.flops import count_flops
from ..models.generator import Generator
from .budget import FIT_RENDERS, fits_budget
from .cache import machine_id, machine_info, table_cache_path, weights_id
from .consistency import ConsistencyEvaluator, consistency_latents
from .latency import measure_configs
from .space import SubConfig, layers_used
from .table import SearchTable, TableEntry

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


def cached_table_path(G: Generator, device: torch.device | str | None = None) -> Path:
    """Where the table searched for these weights on this machine is cached."""
    return table_cache_path(G, G._device() if device is None else device)


def cached_table(G: Generator, device: torch.device | str | None = None, *,
                 path: Path | None = None) -> SearchTable | None:
    """The table searched for these weights on this machine, if one is cached (None when absent or
    unreadable). ``path``: the cache file when already known (finding it hashes the weights)."""
    device = G._device() if device is None else device
    path = table_cache_path(G, device) if path is None else path
    if not path.is_file():
        return None
    try:
        table = SearchTable.load(path)
        table.check_fits(G)
    except Exception:  # noqa: BLE001 - a damaged cache file only means: search again
        return None
    if not table.for_weights(weights_id(G)) or table.machine_id != machine_id(machine_info(device)):
        return None
    return table

