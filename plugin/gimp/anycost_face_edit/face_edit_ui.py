"""Pure-Python helpers of the dialog (no GIMP, no GTK), so they are testable anywhere."""

from __future__ import annotations


def fit_size(width: int, height: int, limit: int) -> tuple[int, int]:
    """The size of a preview that fits ``limit`` on its longer side (never enlarged)."""
    scale = min(1.0, limit / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def cost_label(cost: str) -> str:
    """'256:0.5' → '256 px, 50% channels'; 'preview' and 'full' in words."""
    if cost == "preview":
        return "Fast (fits the latency budget)"
    if cost == "full":
        return "Full (final quality)"
    res, _, ratio = cost.partition(":")
    try:
        return f"{int(res)} px, {float(ratio):.0%} channels"
    except ValueError:
        return cost


def sliders_text(sliders: dict[str, float]) -> str:
    """The procedure's ``sliders`` argument for these values (the moved ones only)."""
    return ",".join(f"{k}={v:g}" for k, v in sliders.items() if v)
