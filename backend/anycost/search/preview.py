"""Choosing the service's preview sub-generator from a search table, on this machine, now.

An entry of the project's tables was searched for a budget; the best entry searched for at most
the preview budget is timed with a few whole renders before it is used (the table may come from
another machine, or this one may be busier now), and the next one is tried when it misses the
budget by more than ``TOLERANCE``. Published tables carry MAC budgets and no timings: their
entries are timed cheapest first, stopping at the first that misses the budget, and the most
faithful of those that fit is taken.
"""

from __future__ import annotations

import math

import torch

from ..editing.render import Cost, PreviewChoice
from ..models.flops import count_flops
from ..models.generator import Generator
from .cache import machine_id, machine_info, table_cache_path, weights_id
from .latency import measure_configs
from .space import SubConfig, layers_used
from .table import SearchTable, TableEntry

TOLERANCE = 0.25
MAX_TRIES = 3


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


def _time(G: Generator, e: TableEntry, passes: int) -> tuple[float, float]:
    (fastest, median), = measure_configs(G, [SubConfig(e.res, tuple(e.channels))], passes=passes)
    return fastest, median


def pick_from_table(G: Generator, table: SearchTable, budget_ms: float, *, tolerance: float = TOLERANCE,
                    passes: int = 3) -> PreviewChoice | None:
    """The best entry of ``table`` that fits ``budget_ms`` here and now, or None."""
    table.check_fits(G)
    limit = budget_ms * (1 + tolerance)
    if table.source == "search":
        for e in table.ranked(budget_ms)[:MAX_TRIES]:
            fastest, median = _time(G, e, passes)
            if fastest <= limit:
                cost = entry_cost(G, e)
                flops = e.flops if e.flops is not None else count_flops(G, e.res, list(e.channels))
                return PreviewChoice(cost, budget_ms, "search", measured_ms=median, predicted_ms=e.predicted_ms,
                                     psnr=e.psnr, flops=flops)
        return None
    fits: list[tuple[TableEntry, float]] = []
    for e in sorted(table.entries.values(), key=lambda e: count_flops(G, e.res, list(e.channels))):
        fastest, median = _time(G, e, passes)
        if fastest > limit:
            break
        fits.append((e, median))
    if not fits:
        return None
    e, median = max(fits, key=lambda t: (t[0].quality(), -t[1]))
    return PreviewChoice(entry_cost(G, e), budget_ms, "table", measured_ms=median, psnr=e.psnr,
                         flops=count_flops(G, e.res, list(e.channels)))


def cached_table(G: Generator, device: torch.device | str | None = None) -> SearchTable | None:
    """The table searched for these weights on this machine, if one is cached (None when absent or unreadable)."""
    device = G._device() if device is None else device
    path = table_cache_path(G, device)
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


def choice_from_entry(G: Generator, e: TableEntry, budget_ms: float | None = None) -> PreviewChoice:
    """A choice from an entry just searched on this machine, without timing it again."""
    budget = budget_ms if budget_ms is not None else e.budget_ms if e.budget_ms is not None else math.inf
    flops = e.flops if e.flops is not None else count_flops(G, e.res, list(e.channels))
    return PreviewChoice(entry_cost(G, e), budget, "search", measured_ms=e.measured_ms, predicted_ms=e.predicted_ms,
                         psnr=e.psnr, flops=flops)
