"""Anycost face editing: the torch-side package (models, editing, training, service).

The model classes load on first use (PEP 562), so that commands which refuse their options at once
(``anycost serve`` with bad key material, ``--help``) answer without importing torch first.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models.encoder import Encoder
    from .models.generator import Generator

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

_LAZY = {
    "Encoder": ".models.encoder",
    "EncoderConfig": ".models.encoder",
    "Generator": ".models.generator",
    "GeneratorConfig": ".models.generator",
    "STANDARD_RATIOS": ".models.channels",
    "count_flops": ".models.flops",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'anycost' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


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
