"""The plug-in's non-interactive arguments, checked before anything touches the image.

Standard library only: this runs under GIMP's Python and in the project's tests.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

_COST = re.compile(r"^(?P<res>\d{1,5}):(?P<ratio>\d+(\.\d*)?|\.\d+)$")
MAX_REFINE_STEPS = 1000
MIN_RESOLUTION, MAX_RESOLUTION = 8, 4096  # generators render at powers of two in this range


class OptionsError(ValueError):
    """An argument the plug-in cannot use; the message says which and why."""


@dataclass
class EditOptions:
    sliders: dict[str, float] = field(default_factory=dict)
    model: str = ""  # empty: whatever model the backend serves
    refine_steps: int = 0
    cost: str = "full"


def parse_sliders(text: str) -> dict[str, float]:
    """``"smile=0.5, age = -0.3"`` → ``{"smile": 0.5, "age": -0.3}``. Pairs are separated by commas,
    semicolons or line breaks; spaces around names, ``=`` and values do not matter. A name given twice
    is an error rather than a silent override."""
    out: dict[str, float] = {}
    for item in re.split(r"[,;\r\n]+", text):
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            raise OptionsError(f"slider '{item}' is not of the form name=value")
        if "=" in value:
            raise OptionsError(f"'{item}' holds more than one name=value pair: separate them with commas")
        try:
            number = float(value)
        except ValueError:
            raise OptionsError(f"slider '{name}': '{value}' is not a number") from None
        if not math.isfinite(number):
            raise OptionsError(f"slider '{name}': the value must be finite")
        if name in out:
            raise OptionsError(f"slider '{name}' is given twice")
        out[name] = number
    return out


def moves_a_slider(sliders: dict[str, float]) -> bool:
    """Whether any slider is off zero. Every call needs one, with or without the dialog: an unedited
    projection is not an edit (and is easy to produce by mistake with an empty or misspelt argument)."""
    return any(value != 0 for value in sliders.values())


def check_sliders(sliders: dict[str, float], directions: dict) -> None:
    """Unknown names and out-of-range values, against the directions the backend announced
    (``{name: {"range": [lo, hi]}}``), with the list of what is available."""
    for name, value in sliders.items():
        if name not in directions:
            known = ", ".join(sorted(directions)) or "none"
            raise OptionsError(f"unknown slider '{name}'; the backend's model has: {known}")
        lo, hi = (directions[name] or {}).get("range", (-math.inf, math.inf))
        if not lo <= value <= hi:
            raise OptionsError(f"slider '{name}' = {value:g} is outside its range [{lo:g}, {hi:g}]")


def check_cost(cost: str) -> str:
    """``full``, ``preview`` or ``RES:RATIO``: a power-of-two resolution (8–4096; the backend accepts those
    of its model) and a channel ratio in (0, 1]."""
    cost = (cost or "full").strip()
    if cost in ("full", "preview"):
        return cost
    m = _COST.match(cost)
    if not m:
        raise OptionsError(f"cost '{cost}' is not 'full', 'preview' or RES:RATIO (e.g. 256:0.5)")
    res, ratio = int(m["res"]), float(m["ratio"])
    if not MIN_RESOLUTION <= res <= MAX_RESOLUTION or res & (res - 1):
        raise OptionsError(f"cost '{cost}': the resolution must be a power of two from {MIN_RESOLUTION} to "
                           f"{MAX_RESOLUTION}")
    if not 0 < ratio <= 1:
        raise OptionsError(f"cost '{cost}': the channel ratio must be above 0 and at most 1")
    return cost


def parse_options(sliders: str, model: str = "", refine_steps: int = 0, cost: str = "full") -> EditOptions:
    """The non-interactive call's arguments; at least one slider must move (``moves_a_slider``)."""
    if not 0 <= int(refine_steps) <= MAX_REFINE_STEPS:
        raise OptionsError(f"refine-steps must be between 0 and {MAX_REFINE_STEPS}, not {refine_steps}")
    parsed = parse_sliders(sliders or "")
    if not moves_a_slider(parsed):
        raise OptionsError("no slider moves: give at least one non-zero slider as name=value (e.g. 'smile=0.5'); "
                           "the names come from the backend's model")
    return EditOptions(parsed, (model or "").strip(), int(refine_steps), check_cost(cost))
