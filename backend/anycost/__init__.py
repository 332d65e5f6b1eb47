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


def load_generator(model, *, device="cpu") -> Generator:
    """Load a generator by registered name (``"anycost-demo"``, a file in the models folder) or path:
    the project's format, an official Anycost or rosinality checkpoint, or a StyleGAN2-ADA network
    pickle (read as data). The same names as every ``--model`` option."""
    from .registry import load_registered_generator

    return load_registered_generator(model, device=str(device))


def load_encoder(path, *, device="cpu") -> Encoder:
    """Load a W+ encoder: the official ``{'state_dict': …}`` layout or the project's own format."""
    from .io.checkpoint import load_encoder as _load

    return _load(path, device=device)
