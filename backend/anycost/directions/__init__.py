"""Edit directions: the Direction type, storage, and the ways to obtain them (classifier labels,
SeFa, PCA of the latent distribution, the published boundary files)."""

from __future__ import annotations

from .direction import SOURCES, Direction, DirectionSet
from .official import load_official_boundaries
from .pca import pca_directions
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
    "pca_directions",
    "save_directions_file",
    "sefa_directions",
    "to_component",
]
