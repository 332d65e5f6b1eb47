"""Anycost face editing: the torch-side package (models, editing, training, service)."""

from __future__ import annotations

from .models.channels import STANDARD_RATIOS
from .models.encoder import Encoder, EncoderConfig
from .models.flops import count_flops
from .models.generator import Generator, GeneratorConfig

__version__ = "0.1.0"

__all__ = [
    "Encoder",
    "EncoderConfig",
    "Generator",
    "GeneratorConfig",
    "STANDARD_RATIOS",
    "count_flops",
    "load_generator",
    "load_encoder",
    "__version__",
]


def load_generator(path, *, device="cpu"):
    """Load a generator from a model file: the official layout or the project's own format."""
    from .io.checkpoint import load_generator as _load

    return _load(path, device=device)


def load_encoder(path, *, device="cpu"):
    """Load a W+ encoder: the official ``{'state_dict': …}`` layout or the project's own format."""
    from .io.checkpoint import load_encoder as _load

    return _load(path, device=device)
