"""When a sub-generator fits a latency budget: the one rule every path that picks one applies.

A configuration fits ``budget_ms`` when the **median** of ``FIT_RENDERS`` whole renders of one
image (after a warm-up render) is at most ``budget_ms · (1 + TOLERANCE)``. The median is what a
user sees from one preview to the next; the tolerance absorbs the timing noise of a few renders
without letting a clearly slower configuration through.
"""

from __future__ import annotations

TOLERANCE = 0.10
FIT_RENDERS = 5


def budget_limit(budget_ms: float, tolerance: float = TOLERANCE) -> float:
    """The largest median render time that still fits ``budget_ms``."""
    return float(budget_ms) * (1.0 + tolerance)


def fits_budget(median_ms: float | None, budget_ms: float, tolerance: float = TOLERANCE) -> bool:
    """Whether a configuration whose median whole-render time is ``median_ms`` fits ``budget_ms``
    (False when it was not timed)."""
    return median_ms is not None and median_ms <= budget_limit(budget_ms, tolerance)
