"""One search from a model name to a cached table: what ``anycost search`` and the service's
background search run."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..directions import DirectionSet
from ..models.generator import Generator
from .cache import cached_table, table_cache_path
from .consistency import load_lpips_if_available
from .evolution import Progress, SearchResult, SearchSettings, search
from .latency import LatencyTable, PredictorCheck, latency_table
from .space import SearchSpace, SpaceKind, model_space_kind


@dataclass
class LoadedModel:
    G: Generator
    name: str
    path: Path
    info: dict = field(default_factory=dict)
    directions: DirectionSet = field(default_factory=DirectionSet)
    space_kind: SpaceKind = "uniform"


def load_model(model: str | os.PathLike | None, device: torch.device | str = "cpu",
               directions: str | os.PathLike | None = None) -> LoadedModel:
    """A model's generator, information and edit directions (file directions plus ``directions``)."""
    from ..directions import directions_in_model, load_directions_file, load_official_boundaries
    from ..io.checkpoint import open_model
    from ..registry import DEFAULT_MODEL, KNOWN_MODELS, resolve_model

    name = DEFAULT_MODEL if model is None else str(model)
    path = resolve_model(name)
    spec = KNOWN_MODELS.get(name)
    mf = open_model(path, expect=spec.architecture if spec else None)
    G = mf.generator(torch.device(device))
    info = dict(mf.info)
    dirs = directions_in_model(mf)
    if directions is not None:
        p = Path(directions)
        extra = load_official_boundaries(p) if p.suffix in (".pt", ".pth") else load_directions_file(p)
        for d in extra.values():
            d.check_fits(G.n_style, G.style_dim)
        dirs = dirs.merged(extra)
    kind = model_space_kind(info, spec.channel_configs if spec else None)
    return LoadedModel(G.eval(), str(info.get("name") or Path(path).stem), Path(path), info, dirs, kind)


def run_search(m: LoadedModel, budgets_ms: list[float], *, settings: SearchSettings | None = None,
               space_kind: SpaceKind | None = None, min_res: int | None = None, max_res: int | None = None,
               use_lpips: bool = True, cache: bool = True, remeasure: bool = False, measure: bool = True,
               after_timing: Callable[[], None] | None = None,
               progress: Progress = None) -> tuple[SearchResult, LatencyTable, PredictorCheck | None]:
    """Time the layers (or take them from the cache), search every budget, and cache the table
    (merged with what was cached for other budgets).

    ``after_timing`` runs once the layers are timed (e.g. lowering the process's priority: timing
    needs the CPU the way renders get it, the search does not); ``measure=False`` skips timing the
    chosen sub-generators with whole renders."""
    settings = settings or SearchSettings()
    ratios = m.info.get("channel_ratios") or None
    kw = {"ratios": ratios} if ratios else {}
    space = SearchSpace(m.G, space_kind or m.space_kind, min_res=min_res, max_res=max_res, **kw)
    if progress:
        progress(f"{m.name}: {m.G.resolution} px, {space.kind} space of {space.size()} sub-generators at "
                 f"{', '.join(map(str, space.resolutions))} px")
    table, check = latency_table(m.G, space, cache=cache, remeasure=remeasure, seed=settings.evolution.seed,
                                 progress=progress)
    if after_timing is not None:
        after_timing()
    lpips_model = load_lpips_if_available(m.G._device()) if use_lpips else None
    result = search(m.G, budgets_ms, space, table, settings=settings, directions=m.directions or None,
                    lpips_model=lpips_model, model_info={**m.info, "name": m.name}, measure=measure,
                    progress=progress)
    if cache:
        old = cached_table(m.G)
        merged = old.merged(result.table) if old is not None else result.table
        merged.save(table_cache_path(m.G, m.G._device()))
        result.table.path = merged.path
    return result, table, check
