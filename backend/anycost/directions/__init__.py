"""Edit directions: the Direction type, storage, and three ways to obtain them
(classifier labels, SeFa, the published boundary files)."""

from __future__ import annotations

from .direction import SOURCES, Direction, DirectionSet
from .official import load_official_boundaries
from .sefa import sefa_directions
from .storage import (
    directions_in_model,
    from_component,
    load_directions_file,
    save_directions_file,
    to_component,
)

__all__ = [
    "SOURCES",
    "Direction",
    "DirectionSet",
    "directions_in_model",
    "from_component",
    "load_directions_file",
    "load_official_boundaries",
    "save_directions_file",
    "sefa_directions",
    "to_component",
]
