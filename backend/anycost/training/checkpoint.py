"""Training checkpoints: atomic writes, keep-last-N, and complete RNG state.

Everything is stored as tensors and plain containers so checkpoints load with
``torch.load(weights_only=True)``; nothing in them is executable.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..errors import AnycostError, InputError
from ..fsutil import atomic_write

CKPT_RE = re.compile(r"^ckpt-(\d{8})\.pt$")


def capture_rng() -> dict:
    """Python, numpy, torch CPU and (when present) CUDA generator states."""
    np_state = np.random.get_state(legacy=True)
    state = {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    random.setstate(as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def as_tuple(x):
    # Pickled tuples come back as tuples, but be lenient with lists from other writers.
    return tuple(as_tuple(v) for v in x) if isinstance(x, list | tuple) else x


def save_atomic(obj: dict, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda tmp: torch.save(obj, tmp), suffix=".tmp")


def write_or_explain(write: Callable[[], Path], what: str, resume_hint: str) -> Path:
    """Run ``write`` (an atomic checkpoint write); a full disk, say, becomes one sentence saying that the
    previous checkpoint is intact, since the write never touched it."""
    try:
        return write()
    except OSError as e:
        raise AnycostError(f"could not write {what}: {e.strerror or e}. The previous checkpoint is intact: "
                           f"make room and {resume_hint}") from None


def checkpoint_path(out_dir: str | os.PathLike, step: int) -> Path:
    return Path(out_dir) / "checkpoints" / f"ckpt-{step:08d}.pt"


def list_checkpoints(out_dir: str | os.PathLike) -> list[Path]:
    d = Path(out_dir) / "checkpoints"
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := CKPT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    ckpts = list_checkpoints(out_dir)
    return ckpts[-1] if ckpts else None


def prune_checkpoints(out_dir: str | os.PathLike, keep_last: int) -> None:
    for p in list_checkpoints(out_dir)[:-keep_last]:
        p.unlink(missing_ok=True)


def load_checkpoint(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - report any unreadable file the same way
        raise InputError(f"checkpoint {path} could not be read: {e}") from e
    if not isinstance(obj, dict) or obj.get("format") != "anycost-train-checkpoint":
        raise InputError(f"{path} is not an Anycost training checkpoint")
    return obj


def save_checkpoint_in(out_dir: str | os.PathLike, state: dict, step: int, keep_last: int) -> Path:
    """Write the checkpoint of ``step`` into a run folder and keep only the newest ``keep_last``."""
    path = save_atomic(state, checkpoint_path(out_dir, step))
    prune_checkpoints(out_dir, keep_last)
    return path


def resume_path(out_dir: str | os.PathLike, path: str | os.PathLike | None = None) -> Path:
    """The checkpoint to resume from: ``path``, else the newest one in the run folder."""
    found = Path(path) if path else latest_checkpoint(out_dir)
    if found is None:
        raise InputError(f"--resume: no checkpoint found in {Path(out_dir) / 'checkpoints'}")
    return found
