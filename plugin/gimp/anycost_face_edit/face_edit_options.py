"""The plug-in's non-interactive arguments, parsed before anything touches the image.

Only their form is checked here: which sliders the model has, their ranges and the costs it renders at
are the backend's to check (``face_edit_session`` turns its refusal into ``ArgumentError``).
Standard library only: this runs under GIMP's Python and in the project's tests.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

_COST = re.compile(r"^\d{1,5}:(\d+(\.\d*)?|\.\d+)$")  # RES:RATIO
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


def check_cost(cost: str) -> str:
    """``full``, ``preview`` or ``RES:RATIO`` (digits, e.g. ``256:0.5``): the argument's form only. Whether
    the model renders at that resolution and channel ratio is for the backend to say (``bad_input``)."""
    cost = (cost or "full").strip()
    if cost in ("full", "preview") or _COST.match(cost):
        return cost
    raise OptionsError(f"cost '{cost}' is not 'full', 'preview' or RES:RATIO (e.g. 256:0.5)")


def parse_options(sliders: str, model: str = "", refine_steps: int = 0, cost: str = "full") -> EditOptions:
    """The non-interactive call's arguments; at least one slider must move (``moves_a_slider``)."""
    if not 0 <= int(refine_steps) <= MAX_REFINE_STEPS:
        raise OptionsError(f"refine-steps must be between 0 and {MAX_REFINE_STEPS}, not {refine_steps}")
    parsed = parse_sliders(sliders or "")
    if not moves_a_slider(parsed):
        raise OptionsError("no slider moves: give at least one non-zero slider as name=value (e.g. 'smile=0.5'); "
                           "the names come from the backend's model")
    return EditOptions(parsed, (model or "").strip(), int(refine_steps), check_cost(cost))
