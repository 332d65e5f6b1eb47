"""Pure-Python helpers of the dialog (no GIMP, no GTK), so they are testable anywhere."""

from __future__ import annotations

import os

from anycost_client.connection_file import process_tag


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


def gimp_session(pid: int | None = None) -> str:
    """A name for the running GIMP session. GIMP starts each plug-in call as a child process of its own, so
    the parent process names the session; its start time (Linux) tells a reused process id apart."""
    pid = os.getppid() if pid is None else pid
    tag = process_tag(pid)
    return f"{pid}:{tag}" if tag else str(pid)


def dialog_sliders(stored: dict[str, float], stored_session: str, session: str) -> dict[str, float]:
    """The slider values the dialog opens with: the ones last applied in this GIMP session (as GIMP's own
    filters reopen), none (all at zero) in a new session. GIMP keeps a procedure's last values across
    sessions, and a face edit applied yesterday is no start for today's face; Filters > Repeat still uses
    the last values as they are."""
    return dict(stored) if stored_session and stored_session == session else {}


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def fast_preview_text(choice: dict) -> str:
    """What *Fast* previews are on this backend (its ``preview*`` fields): the sub-generator, its cost, the
    budget it was chosen for and the render time the backend measured when it chose it, e.g.
    ``128:flexible · 3.2 GFLOP, chosen for the 80 ms budget (searched); 40 ms when the backend timed it``.
    That time was taken once (at start-up or by a search), under whatever load the machine had then; the
    time of the previews now shown is ``last_preview_text``'s. Empty before the backend says."""
    from anycost_client.controller import PREVIEW_SOURCES

    if not choice.get("preview"):
        return ""
    text = str(choice["preview"])
    flops = choice.get("preview_flops")
    if _number(flops) and flops > 0:
        text += f" · {flops / 1e9:.1f} GFLOP" if flops >= 1e8 else f" · {flops / 1e6:.0f} MFLOP"
    budget = choice.get("preview_budget_ms")
    how = PREVIEW_SOURCES.get(str(choice.get("preview_source")), str(choice.get("preview_source") or ""))
    if _number(budget):
        text += f", chosen for the {budget:g} ms budget" + (f" ({how})" if how else "")
    elif how:
        text += f" ({how})"
    measured, predicted = choice.get("preview_ms"), choice.get("preview_predicted_ms")
    if _number(measured):
        text += f"; {measured:.0f} ms when the backend timed it"
        if _number(budget) and choice.get("preview_fits") is False:
            text += " (nothing cheaper met the budget then)"
    elif _number(predicted):
        text += f"; {predicted:.0f} ms predicted"
    return text


def last_preview_text(latency_ms, render_ms, draw_ms, cost) -> str:
    """The newest preview shown: from the slider's move to the picture in the dialog, with the backend's
    render and the dialog's drawing, and the cost it was rendered at, e.g.
    ``18 ms from slider to picture (render 15 ms, drawing 1 ms) at 128:flexible``; '–' before the first."""
    if not _number(latency_ms):
        return "–"
    parts = [f"render {render_ms:.0f} ms"] if _number(render_ms) else []
    if _number(draw_ms):
        parts.append(f"drawing {draw_ms:.0f} ms")
    detail = f" ({', '.join(parts)})" if parts else ""
    return f"{latency_ms:.0f} ms from slider to picture{detail}" + (f" at {cost}" if cost else "")
