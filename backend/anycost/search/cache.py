"""Where measured latencies and searched tables are kept, the fingerprints that key them, and
reading back the table searched for a model on this machine (``cached_table``).

Latency tables depend on the architecture and the machine; searched tables also on the weights.
Files live in ``$ANYCOST_CACHE_DIR``, else ``$XDG_CACHE_HOME/anycost``, else ``~/.cache/anycost``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path

import torch

from ..models.generator import Generator
from .table import SearchTable

_SAMPLE_VALUES = 1024  # per tensor, for the weights fingerprint


def cache_dir() -> Path:
    env = os.environ.get("ANYCOST_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "anycost"


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def architecture_id(G: Generator) -> str:
    """Changes when anything that affects render time changes: the generator's settings."""
    return _digest({"config": G.config.to_dict(), "full_channels": G.full_channels})[:16]


@torch.no_grad()
def weights_id(G: Generator) -> str:
    """Changes when the weights change: settings, then per tensor its shape, sum and a strided
    sample of its values (hashing every byte of a 1024 px model would cost a second)."""
    h = hashlib.sha256(architecture_id(G).encode())
    for name, t in G.state_dict().items():
        flat = t.detach().reshape(-1).float().cpu()
        sample = flat[:: max(1, flat.numel() // _SAMPLE_VALUES)]
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(repr(float(flat.double().sum())).encode())
        h.update(sample.numpy().tobytes())
    return h.hexdigest()[:16]


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


_RENDERER_SOURCES = ("generator.py", "fast_synthesis.py", "layers.py")


def renderer_id() -> str:
    """Changes with the rendering code (timings taken before a renderer change must not be reused)."""
    from .. import models

    h = hashlib.sha256()
    for name in _RENDERER_SOURCES:
        try:
            h.update((Path(models.__file__).parent / name).read_bytes())
        except OSError:
            h.update(name.encode())
    return h.hexdigest()[:16]


def machine_info(device: torch.device | str = "cpu") -> dict:
    """What render time depends on besides the model: processor, threads, library and renderer versions."""
    from .. import __version__

    device = torch.device(device)
    info = {
        "device": device.type,
        "machine": platform.machine(),
        "system": platform.system(),
        "torch": torch.__version__,
        "anycost": __version__,
        "renderer": renderer_id(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["capability"] = list(torch.cuda.get_device_capability(device))
    else:
        info["cpu"] = _cpu_name()
        info["cores"] = os.cpu_count()
        info["threads"] = torch.get_num_threads()
        info["malloc_tuning"] = os.environ.get("ANYCOST_MALLOC_TUNING", "1") != "0"
    return info


def machine_id(info: dict) -> str:
    return _digest(info)[:16]


def latency_cache_path(G: Generator, device: torch.device | str = "cpu") -> Path:
    return cache_dir() / "latency" / f"{architecture_id(G)}-{machine_id(machine_info(device))}.json"


def table_cache_path(G: Generator, device: torch.device | str = "cpu") -> Path:
    return cache_dir() / "search" / f"{weights_id(G)}-{machine_id(machine_info(device))}.json"


def cached_table_path(G: Generator, device: torch.device | str | None = None) -> Path:
    """Where the table searched for these weights on this machine is cached."""
    return table_cache_path(G, G._device() if device is None else device)


def cached_table(G: Generator, device: torch.device | str | None = None, *,
                 path: Path | None = None) -> SearchTable | None:
    """The table searched for these weights on this machine, if one is cached (None when absent or
    unreadable). ``path``: the cache file when already known (finding it hashes the weights)."""
    device = G._device() if device is None else device
    path = table_cache_path(G, device) if path is None else path
    if not path.is_file():
        return None
    try:
        table = SearchTable.load(path)
        table.check_fits(G)
    except Exception:  # noqa: BLE001 - a damaged cache file only means: search again
        return None
    if not table.for_weights(weights_id(G)) or table.machine_id != machine_id(machine_info(device)):
        return None
    return table
