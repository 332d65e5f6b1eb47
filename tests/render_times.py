"""Render times given to the preview choice instead of measured, so that tests of what it chooses for
a budget decide the same on a fast, a slow or a busy machine.

The times follow a simple model of a generator's cost (``RenderTimes``): a fixed part per render plus
the full generator's time scaled by FLOPs. They replace the two readings the preview choice takes
(``MEASUREMENTS``: the uniform ratios' and a search table's entries'): in a test's own process through
``given_render_times``, in a backend it starts through ``RenderTimes.env``, which that backend's
``sitecustomize`` (``render_times_site/``) reads at start-up. Previews still render, and are timed, for real.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV = "ANYCOST_TEST_RENDER_TIMES"  # "FULL_MS,FLOOR_MS" in a backend's environment
SITE = Path(__file__).resolve().parent / "render_times_site"

# where the preview choice reads render times: (module, function)
MEASUREMENTS = (("anycost.editing.preview_choice", "measure_cost_ms"), ("anycost.editing.preview_choice", "time_entry"))


@dataclass(frozen=True)
class RenderTimes:
    full_ms: float  # the full generator
    floor_ms: float = 1.0  # any render, however small (per-layer overheads)

    def ms(self, G: Any, res: int | None, channels: Any) -> float:
        from anycost.models.flops import count_flops

        share = count_flops(G, res, channels) / count_flops(G)
        return self.floor_ms + (self.full_ms - self.floor_ms) * share

    # the readings replaced, with the signatures of the functions they replace
    def measure_cost_ms(self, G: Any, cost: Any, repeats: int = 0, dtype: Any = None) -> float:
        return self.ms(G, cost.res, cost.render_kwargs()["channels"])

    def time_entry(self, G: Any, e: Any, passes: int = 0, dtype: Any = None) -> float:
        return self.ms(G, e.res, list(e.channels))

    def replacements(self) -> list[tuple[Any, str, Callable[..., float]]]:
        """(module, name, given reading) for each of ``MEASUREMENTS``; loud when one has moved."""
        out = []
        for module, name in MEASUREMENTS:
            mod = importlib.import_module(module)
            if not callable(getattr(mod, name, None)):
                raise RuntimeError(f"{module}.{name} is gone: tests/render_times.py must replace the preview "
                                   "choice's render-time readings where they are now")
            out.append((mod, name, getattr(self, name)))
        return out

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment (``base``, default ours) in which a started backend takes these times."""
        env = dict(os.environ if base is None else base)
        env[ENV] = f"{self.full_ms!r},{self.floor_ms!r}"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SITE), env.get("PYTHONPATH", "")) if p)
        return env


def given_render_times(monkeypatch: Any, times: RenderTimes) -> None:
    """This process's preview choice takes ``times`` for the rest of the test."""
    for mod, name, reading in times.replacements():
        monkeypatch.setattr(mod, name, reading)


def install_from_env() -> None:
    """At a backend's start-up: take the times its environment gives (``RenderTimes.env``), if any."""
    value = os.environ.get(ENV)
    if not value:
        return
    full_ms, floor_ms = (float(x) for x in value.split(","))
    for mod, name, reading in RenderTimes(full_ms, floor_ms).replacements():
        setattr(mod, name, reading)
