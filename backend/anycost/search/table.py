"""Searched sub-generator tables: budget → configuration, as JSON.

The project's tables look like this (``budgets`` has the shape of the published Anycost files,
``{"<budget>": {"channels", "dist", "res", "macs"}}``, with more fields per entry)::

    {"format": "anycost-search-table", "version": 1,
     "model": {"name", "resolution", "full_channels", "weights", "architecture", "space"},
     "machine": {...}, "machine_id": "…", "latency": {...}, "search": {...},
     "dist_metric": "lpips" | "mse", "created": "…",
     "budgets": {"80ms": {"budget_ms": 80, "res": 128, "channels": [...], "ratio": null,
                          "predicted_ms": 71.2, "measured_ms": 74.0, "measured_min_ms": 69.8, "fits": true,
                          "psnr": 29.1, "lpips": null, "dist": 0.0049, "score": 29.1,
                          "flops": 1234567890, "macs": 617283945,
                          "baseline": {"label": "128:0.5", "psnr": 27.9, ...},
                          "scoring": {"metric": "lpips", "validation_latents": 16, ...}}, ...}}

The published files (``{"101G": {"channels": [...], "dist": 0.019, "res": 1024, "macs": 1.0e11}, …}``,
budgets in GMACs, no timings) load too; a service measures their entries on its own machine.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import InputError
from ..fsutil import atomic_write
from ..models.generator import Generator

FORMAT = "anycost-search-table"
FORMAT_VERSION = 1


def budget_label(budget_ms: float) -> str:
    return f"{budget_ms:g}ms"


def parse_budgets(text: str) -> list[float]:
    """``"40,80,160"`` (or with ``ms``) → [40.0, 80.0, 160.0]; positive, finite, sorted, unique."""
    out = []
    for part in str(text).split(","):
        p = part.strip().lower().removesuffix("ms").strip()
        if not p:
            continue
        try:
            v = float(p)
        except ValueError as e:
            raise InputError(f"budgets must be milliseconds like 40,80,160; got {part.strip()!r}") from e
        if not (math.isfinite(v) and v > 0):
            raise InputError(f"a budget must be a positive number of milliseconds, got {part.strip()!r}")
        out.append(v)
    if not out:
        raise InputError("give at least one budget in milliseconds, e.g. --budget-ms 40,80,160")
    return sorted(set(out))


# Search settings that change what a score means: the metric and the latents it is measured on.
SCORING_KEYS = ("validation_latents", "truncation", "latents_edited")


def scoring_settings(dist_metric: str | None, search: dict) -> dict:
    """How a search scores configurations, from its table's ``dist_metric`` and ``search`` settings."""
    evolution = search.get("evolution") if isinstance(search.get("evolution"), dict) else {}
    return {"metric": dist_metric, **{k: search.get(k) for k in SCORING_KEYS}, "seed": evolution.get("seed")}


@dataclass
class TableEntry:
    res: int
    channels: list[int]
    budget_ms: float | None = None  # None in published tables (their budgets are MACs)
    ratio: float | None = None  # the uniform ratio this configuration equals, if any
    predicted_ms: float | None = None
    measured_ms: float | None = None  # median of whole renders right after the search
    measured_min_ms: float | None = None  # fastest of them (the predictor's statistic)
    psnr: float | None = None
    lpips: float | None = None
    dist: float | None = None
    score: float | None = None
    flops: int | None = None
    macs: int | None = None
    baseline: dict | None = None  # the best uniform ratio within the same budget, for comparison
    fits: bool | None = None  # measured_ms fitted budget_ms by the rule of budget.py; None when not timed
    # how psnr/score were measured (metric, latents): scores compare only between equal settings
    scoring: dict | None = None

    def quality(self) -> float:
        """Higher is better: the search's score, else PSNR, else minus the published distance."""
        if self.score is not None:
            return self.score
        if self.psnr is not None:
            return self.psnr
        return -self.dist if self.dist is not None else -math.inf

    def label(self) -> str:
        return f"{self.res}:{self.ratio:g}" if self.ratio is not None else f"{self.res}:flexible"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str) -> TableEntry:
        if not isinstance(d, dict):
            raise InputError(f"{where}: an entry must be a JSON object")
        known = set(cls.__dataclass_fields__)
        try:
            channels = [int(c) for c in d["channels"]]
            res = int(d["res"])
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{where}: an entry needs 'res' and a 'channels' list of integers") from e
        kw = {k: d[k] for k in known & set(d) if k not in ("channels", "res")}
        for k in ("budget_ms", "ratio", "predicted_ms", "measured_ms", "measured_min_ms", "psnr", "lpips", "dist",
                  "score"):
            if kw.get(k) is not None:
                try:
                    kw[k] = float(kw[k])
                except (TypeError, ValueError) as e:
                    raise InputError(f"{where}: {k!r} must be a number") from e
        for k in ("flops", "macs"):
            if kw.get(k) is not None:
                kw[k] = int(float(kw[k]))
        if kw.get("fits") is not None and not isinstance(kw["fits"], bool):
            raise InputError(f"{where}: 'fits' must be true, false or null")
        if kw.get("scoring") is not None and not isinstance(kw["scoring"], dict):
            raise InputError(f"{where}: 'scoring' must be an object")
        return cls(res=res, channels=channels, **kw)


@dataclass
class SearchTable:
    entries: dict[str, TableEntry]
    model: dict = field(default_factory=dict)
    machine: dict | None = None
    machine_id: str | None = None
    latency: dict = field(default_factory=dict)
    search: dict = field(default_factory=dict)
    dist_metric: str | None = None
    created: str = ""
    source: str = "search"  # 'search' (this project's) or 'published' (MAC budgets, no timings)
    path: Path | None = None

    # ------------------------------------------------------------------ checks
    def check_fits(self, G: Generator) -> SearchTable:
        """Every entry must be a valid sub-generator of ``G``; raises InputError naming the table."""
        where = str(self.path) if self.path else "search table"
        full = G.full_channels
        for key, e in self.entries.items():
            if e.res not in G.resolutions:
                raise InputError(f"{where}: entry {key!r} has resolution {e.res}; this model renders "
                                 f"{G.resolutions}")
            if len(e.channels) != len(full):
                raise InputError(f"{where}: entry {key!r} lists {len(e.channels)} widths; this model has "
                                 f"{len(full)} sliceable layers (is the table for another model?)")
            for i, (c, f) in enumerate(zip(e.channels, full, strict=True)):
                if not 1 <= c <= f:
                    raise InputError(f"{where}: entry {key!r}, layer {i}: {c} channels is outside 1..{f}")
        return self

    def for_weights(self, weights: str) -> bool:
        return self.model.get("weights") == weights

    def budgets_ms(self) -> list[float]:
        return sorted(e.budget_ms for e in self.entries.values() if e.budget_ms is not None)

    def ranked(self, budget_ms: float) -> list[TableEntry]:
        """Entries searched for a budget of at most ``budget_ms``, best first (richer budget first on ties)."""
        fit = [e for e in self.entries.values() if e.budget_ms is not None and e.budget_ms <= budget_ms]
        return sorted(fit, key=lambda e: (-e.quality(), -(e.budget_ms or 0.0)))

    def scoring_of(self, e: TableEntry) -> dict:
        """How ``e``'s scores were measured: its own record, else this table's header (older files)."""
        if e.scoring is not None:
            return e.scoring
        return scoring_settings(self.dist_metric, self.search)

    def merged(self, other: SearchTable) -> SearchTable:
        """``other``'s entries plus those of this table it lacks (same budget: ``other`` wins), with
        ``other``'s header. Entries scored otherwise than ``other``'s (another metric, latent set or
        seed) are dropped: the service ranks entries by score, which only compares between equals."""
        mine = {k: e for k, e in self.entries.items()
                if k not in other.entries and self.scoring_of(e) == other.scoring()}
        out = SearchTable({**mine, **other.entries}, other.model, other.machine, other.machine_id,
                          other.latency, other.search, other.dist_metric, other.created, other.source, other.path)
        out.entries = dict(sorted(out.entries.items(), key=lambda kv: (kv[1].budget_ms or 0.0, kv[0])))
        return out

    def scoring(self) -> dict:
        """The scoring settings of this table's own search (its header)."""
        return scoring_settings(self.dist_metric, self.search)

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": FORMAT_VERSION, "model": self.model, "machine": self.machine,
                "machine_id": self.machine_id, "latency": self.latency, "search": self.search,
                "dist_metric": self.dist_metric, "created": self.created,
                "budgets": {k: e.to_dict() for k, e in self.entries.items()}}

    def save(self, path: str | os.PathLike) -> Path:
        text = json.dumps(self.to_dict(), indent=1)
        self.path = atomic_write(path, lambda tmp: Path(tmp).write_text(text + "\n"))
        return self.path

    @classmethod
    def from_dict(cls, d, where: str = "search table") -> SearchTable:
        if not isinstance(d, dict):
            raise InputError(f"{where}: expected a JSON object")
        if "format" in d:
            if d.get("format") != FORMAT:
                raise InputError(f"{where}: not a search table (format {d.get('format')!r})")
            if d.get("version") != FORMAT_VERSION:
                raise InputError(f"{where}: search table version {d.get('version')!r} is not supported "
                                 f"(this version reads {FORMAT_VERSION})")
            budgets = d.get("budgets")
            if not isinstance(budgets, dict):
                raise InputError(f"{where}: 'budgets' must be an object of budget → entry")
            entries = {str(k): TableEntry.from_dict(v, f"{where}, entry {k!r}") for k, v in budgets.items()}
            return cls(entries, dict(d.get("model") or {}), d.get("machine"), d.get("machine_id"),
                       dict(d.get("latency") or {}), dict(d.get("search") or {}), d.get("dist_metric"),
                       str(d.get("created", "")), "search")
        # the published layout: {"<budget>": {channels, dist, res, macs}}
        if not d or not all(isinstance(v, dict) and "channels" in v for v in d.values()):
            raise InputError(f"{where}: neither a search table nor a published "
                             "{\"<budget>\": {channels, dist, res, macs}} file")
        entries = {}
        for k, v in d.items():
            e = TableEntry.from_dict(v, f"{where}, entry {k!r}")
            m = re.fullmatch(r"\s*([0-9.]+)\s*ms\s*", str(k))
            e.budget_ms = float(m.group(1)) if m else None
            entries[str(k)] = e
        return cls(entries, dist_metric="published", source="published")

    @classmethod
    def load(cls, path: str | os.PathLike) -> SearchTable:
        p = Path(path)
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError as e:
            raise InputError(f"search table {p} does not exist") from e
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(f"cannot read search table {p}: {e}") from e
        table = cls.from_dict(data, str(p))
        table.path = p
        return table
