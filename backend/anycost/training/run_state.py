"""What the trainers that keep a run folder share: the common part of their checkpoints, writing them
atomically (a full disk leaves the previous one intact), exact resume, the loss log, and the loop.

A checkpoint holds the trainer's modules and optimisers (``parts``), its own extra state
(``own_state``) and what every run has: the step, the seconds trained, the shared schedule RNG
(``sched``: choices that must agree across processes), every process's Python/NumPy/torch RNG states
and data positions. Restoring all of them makes a resumed run continue bit for bit on the CPU.
"""

from __future__ import annotations

import json
import random
import warnings
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from ..errors import InputError
from . import distributed as ddp
from .checkpoint import (
    as_tuple,
    capture_rng,
    load_checkpoint,
    restore_rng,
    resume_path,
    save_checkpoint_in,
    write_or_explain,
)
from .harness import Logs, Timing, run_steps

CKPT_FORMAT = "anycost-train-checkpoint"
T = TypeVar("T")


class RunFolderTrainer:
    """Base of ``AnycostTrainer``, ``AutoencoderTrainer`` and ``Distiller``.

    A subclass sets ``cfg`` (with ``to_dict``, ``keep_last`` and ``checkpoint_every``), ``out`` (the run
    folder), ``sched``, ``data`` (a stream with ``state_dict``, or None), ``rank``/``world`` and calls
    ``start_run_state``; it names its modules and optimisers in ``parts``.
    """

    kind: ClassVar[str]  # the checkpoint's "kind"
    what: ClassVar[str]  # for messages: "a checkpoint of <what>"
    untagged_ok: ClassVar[bool] = False  # also accept checkpoints written before they carried a kind
    resume_hint: ClassVar[str] = "run the same command again with --resume"

    cfg: Any
    out: Path
    step: int
    seconds: float
    sched: random.Random
    data: Any
    rank: int = 0
    world: int = 1

    def start_run_state(self) -> None:
        self.step = 0
        self.seconds = 0.0

    # ------------------------------------------------------------------ what a trainer adds
    def train_step(self) -> Logs:
        """One optimisation step: advances ``step``, returns the step's losses."""
        raise NotImplementedError

    def parts(self) -> dict[str, Any]:
        """Modules and optimisers by checkpoint key (None: not in this run)."""
        raise NotImplementedError

    def own_state(self) -> dict:
        return {}

    def load_own_state(self, state: dict) -> None:
        """Restore ``own_state`` (runs before the parts are loaded: a refusal comes first)."""

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Everything needed to continue exactly (gathers every process's RNG and data position)."""
        rng = ddp.all_gather_object(capture_rng())
        data = ddp.all_gather_object(self.data.state_dict()) if self.data is not None else None
        return {
            "format": CKPT_FORMAT, "kind": self.kind, "version": 1, "config": self.cfg.to_dict(),
            "step": self.step, "world": self.world, "seconds": self.seconds,
            "sched_rng": self.sched.getstate(), "rng": rng, "data": data,
            **{key: part.state_dict() if part is not None else None for key, part in self.parts().items()},
            **self.own_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        kind = state.get("kind")
        if kind != self.kind and not (kind is None and self.untagged_ok):
            raise InputError(f"the checkpoint is not one of {self.what}")
        self.load_own_state(state)
        try:
            for key, part in self.parts().items():
                if part is not None and not (key in state and state[key] is None):
                    part.load_state_dict(state[key])
        except (RuntimeError, ValueError, KeyError) as e:
            raise InputError(f"the checkpoint does not fit these model settings: {e}") from e
        self.step = int(state["step"])
        self.seconds = float(state.get("seconds") or 0.0)
        self.sched.setstate(as_tuple(state["sched_rng"]))
        rng = _per_rank(state["rng"])
        if len(rng) != self.world:
            warnings.warn(f"checkpoint was written by {len(rng)} process(es), resuming with {self.world}: "
                          "the run continues but not bit-for-bit", RuntimeWarning, stacklevel=2)
        restore_rng(rng[self.rank % len(rng)])
        if self.data is not None and state.get("data"):
            data = _per_rank(state["data"])
            self.data.load_state_dict(data[self.rank % len(data)])

    def save_checkpoint(self, run_dir: str | Path | None = None) -> Path | None:
        """Write ``checkpoints/ckpt-STEP.pt`` (the first process writes; every process must call this)."""
        state = self.state_dict()
        if self.rank != 0:
            return None
        folder = Path(run_dir) if run_dir is not None else self.out
        return write_or_explain(lambda: save_checkpoint_in(folder, state, self.step, self.cfg.keep_last),
                                f"the step-{self.step} checkpoint in {folder}", self.resume_hint)

    def resume(self, path: str | Path | None = None) -> Path:
        """Continue from ``path``, else from the newest checkpoint in the run folder."""
        path = resume_path(self.out, path)
        self.load_state_dict(load_checkpoint(path))
        return path

    # ------------------------------------------------------------------ the run
    def open_log(self, *, write_config: bool = True, tensorboard: bool = False):
        """The run's ``losses.csv`` with rows after the current step dropped (first process only; else None)."""
        from .reporting import LossLog

        if self.rank != 0:
            return None
        self.out.mkdir(parents=True, exist_ok=True)
        if write_config:
            (self.out / "config.json").write_text(json.dumps(self.cfg.to_dict(), indent=2, sort_keys=True))
        log = LossLog(self.out, tensorboard)
        log.truncate(self.step)
        return log

    def train(self, total: int, *, log=None, columns: Callable[[int], dict] | None = None, **loop) -> Timing:
        """``run_steps`` to ``total`` with this run's checkpoints, seconds and log rows
        (``{"step": s, **columns(s), **losses}``); ``loop`` passes on the rest."""
        start = self.seconds

        def checkpoint(spent: float) -> None:
            self.seconds = start + spent
            self.save_checkpoint()

        def row(step: int, logs: Logs) -> None:
            log.append({"step": step, **(columns(step) if columns else {}), **logs})

        timing = run_steps(self, total, log=row if log is not None else None, log_every=self.cfg.log_every,
                           checkpoint=checkpoint, checkpoint_every=self.cfg.checkpoint_every,
                           resume_hint=self.resume_hint, **loop)
        self.seconds = start + timing.seconds
        return timing


def settings_from(cls: type[T], saved: dict) -> T:
    """A checkpoint's settings as the dataclass ``cls``, leaving out keys this version no longer has."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in saved.items() if k in known})


def _per_rank(x: Any) -> list:
    """A list per process; checkpoints of single-process trainers once held the one entry alone."""
    return list(x) if isinstance(x, list | tuple) else [x]
