"""Adding components to an existing model while keeping everything else in it."""

from __future__ import annotations

import os
from pathlib import Path

from ..io.checkpoint import open_model
from ..io.modelfile import Component, save_model
from ..models.encoder import Encoder
from ..models.generator import Generator


def model_parts(path: str | os.PathLike) -> tuple[Generator | None, dict[str, Component], dict]:
    """(generator or None, all components, info) of any supported model file (see ``open_model``)."""
    mf = open_model(Path(path))
    G = mf.generator() if "generator" in mf.components else None
    return G, dict(mf.components), dict(mf.info)


def update_model(source: str | os.PathLike, out: str | os.PathLike, *, encoder: Encoder | None = None,
                 components: dict[str, Component] | None = None, info: dict | None = None,
                 generator: Generator | None = None) -> Path:
    """Write ``out`` = ``source`` plus/with replaced components (atomic; ``out`` may equal ``source``).

    ``source`` may be any supported file (an official or rosinality checkpoint, a network pickle): its
    generator, the discriminator kept from it and its provenance are carried over into the new file.
    ``generator`` replaces the source's generator (a distilled one).
    """
    G, comps, old_info = model_parts(source)
    G = generator if generator is not None else G
    comps.pop("generator", None)
    if encoder is not None:
        comps.pop("encoder", None)
    comps.update(components or {})
    merged = {**old_info, **(info or {})}
    # a model shipped in float16 stays float16 (the new parts are stored the same way)
    half = merged.pop("stored_dtype", None) == "float16"
    return save_model(out, generator=G, encoder=encoder, components=comps, info=merged, half=half)
