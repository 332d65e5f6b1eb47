"""The plug-in's non-interactive arguments, checked before anything touches the image.

Standard library only: this runs under GIMP's Python and in the project's tests.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

_COST = re.compile(r"^(preview|full|\d{1,5}:(0(\.\d+)?|1(\.0+)?))$")
MAX_REFINE_STEPS = 1000


class OptionsError(ValueError):
    """An argument the plug-in cannot use; the message says which and why."""


@dataclass
class EditOptions:
    sliders: dict[str, float] = field(default_factory=dict)
    model: str = ""  # empty: whatever model the backend serves
    refine_steps: int = 0
    cost: str = "full"


def parse_sliders(text: str) -> dict[str, float]:
    """``"smile=0.5, age=-0.3"`` → ``{"smile": 0.5, "age": -0.3}``. Separators: comma, semicolon or
    whitespace; a name given twice is an error rather than a silent override."""
    out: dict[str, float] = {}
    for item in re.split(r"[,;\s]+", text.strip()):
        if not item:
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise OptionsError(f"slider '{item}' is not of the form name=value")
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
    cost = (cost or "full").strip()
    if not _COST.match(cost):
        raise OptionsError(f"cost '{cost}' is not 'full', 'preview' or RES:RATIO (e.g. 256:0.5)")
    return cost


def parse_options(sliders: str, model: str = "", refine_steps: int = 0, cost: str = "full") -> EditOptions:
    if not 0 <= int(refine_steps) <= MAX_REFINE_STEPS:
        raise OptionsError(f"refine-steps must be between 0 and {MAX_REFINE_STEPS}, not {refine_steps}")
    return EditOptions(parse_sliders(sliders or ""), (model or "").strip(), int(refine_steps), check_cost(cost))
