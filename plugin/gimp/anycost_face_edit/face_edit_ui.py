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
