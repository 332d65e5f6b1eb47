"""Where the dialog goes on the screen: pure geometry, no Qt (rectangles are ``(x, y, width, height)``)."""

from __future__ import annotations

EDGE_MARGIN = 8  # between the dialog and the edge of Krita's window or the screen
Rect = tuple  # (x, y, width, height)


def place(size: tuple[int, int], available: Rect, window: Rect | None = None, avoid: Rect | None = None,
          saved: tuple[int, int] | None = None, margin: int = EDGE_MARGIN) -> tuple[int, int]:
    """Where the dialog's frame (``size``) goes, in screen coordinates.

    A position the user chose (``saved``) is kept, clamped into the screen's ``available`` area. Else the
    dialog opens beside the canvas rather than over it: to the right of Krita's ``window`` when the screen
    has room there, otherwise at the screen's right edge (over the window's right part, its dockers, and as
    little of it as the screen allows); or at the screen's left edge when that keeps it off ``avoid`` (the
    selection on screen, when known) and the right edge does not. Its top is level with the window's."""
    ax, ay, aw, ah = available
    w, h = size

    def clamp(x: int, y: int) -> tuple[int, int]:
        return max(ax, min(x, ax + aw - w)), max(ay, min(y, ay + ah - h))

    if saved is not None:
        return clamp(*saved)
    wx, wy, ww, wh = window if window is not None else available
    y = wy + margin
    if ax + aw - (wx + ww) >= w + margin:  # room beside the window: nothing of Krita is covered
        return clamp(wx + ww + margin, y)
    right = clamp(ax + aw - w - margin, y)
    if avoid is not None and _overlap((*right, w, h), avoid):
        left = clamp(ax + margin, y)
        if _overlap((*left, w, h), avoid) < _overlap((*right, w, h), avoid):
            return left
    return right


def _overlap(a: Rect, b: Rect) -> int:
    dx = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    dy = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return dx * dy if dx > 0 and dy > 0 else 0


def parse_position(text: str) -> tuple[int, int] | None:
    """``"x,y"`` as the settings keep it; None for anything else."""
    try:
        x, y = (int(v) for v in str(text).split(","))
    except ValueError:
        return None
    return x, y
