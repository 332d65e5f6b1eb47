"""The one training loop every trainer runs.

A trainer keeps its own step (``train_step``: one optimisation step that advances ``step`` and returns
its losses), its models and losses, and what it does once training ends. ``run_steps`` does the rest,
the same way for all: the progress bar, log rows at an interval with images per second, periodic
actions (sample images, metrics), periodic atomic checkpoints and the final one, and a clean stop on
Ctrl-C or SIGTERM: the step under way finishes, a checkpoint is written and ``TrainingStopped`` says
how to continue. Trainers with a run folder get their checkpoint state and resume from
``run_state.RunFolderTrainer``.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import AnycostError
from . import distributed as ddp

Logs = dict[str, float]


class Steppable(Protocol):
    @property
    def step(self) -> int: ...

    def train_step(self) -> Logs: ...


class TrainingStopped(AnycostError):
    """Ctrl-C or SIGTERM stopped a run at a step boundary, after its checkpoint was written."""


@dataclass
class Every:
    """``action(step, logs)`` after every ``steps``-th step (0: never); with ``last``, after the final step too."""

    steps: int
    action: Callable[[int, Logs], object]
    last: bool = False

    def due(self, step: int, total: int) -> bool:
        return bool(self.steps and step % self.steps == 0) or (self.last and step == total)


@dataclass
class Timing:
    """What one ``run_steps`` call did: steps run and the seconds they took."""

    steps: int
    seconds: float

    def per_second(self, per_step: float) -> float:
        """``per_step`` (images, say) per second over the call."""
        return self.steps * per_step / max(self.seconds, 1e-9)


def postfix_of(logs: Logs, keep: Callable[[str], bool]) -> dict[str, str]:
    """Progress-bar fields: the kept log entries, by the last part of their name."""
    return {k.split("/")[-1]: f"{v:.3g}" for k, v in logs.items() if keep(k)}


def run_steps(trainee: Steppable, total: int, *, log: Callable[[int, Logs], object] | None = None,
              log_every: int = 0, log_last: bool = False, images_per_step: int = 0,
              postfix: Callable[[Logs], dict[str, str]] | None = None, postfix_every: int | None = None,
              every: Sequence[Every] = (), checkpoint: Callable[[float], object] | None = None,
              checkpoint_every: int = 0, on_step: Callable[[int, Logs], object] | None = None,
              progress: bool = True, desc: str | None = None, unit: str = "it",
              resume_hint: str = "run the same command again to continue") -> Timing:
    """Step ``trainee`` until its step reaches ``total``.

    After each step, in this order: a log row every ``log_every`` steps (``img_per_s`` added when
    ``images_per_step`` is given; also after the last step with ``log_last``), the ``every`` actions,
    a checkpoint every ``checkpoint_every`` steps, the progress bar, ``on_step``. ``checkpoint`` gets
    the seconds trained so far in this call; it is written once more at the end unless the last step
    just wrote it. Only with a checkpoint do Ctrl-C and SIGTERM stop the run at the next step boundary
    (a second Ctrl-C interrupts at once); without one they interrupt as usual.
    """
    from tqdm import tqdm

    log_at = Every(log_every, lambda s, logs: None, last=log_last)
    postfix_at = Every(log_every if postfix_every is None else postfix_every, lambda s, logs: None)

    def checkpoint_due(step: int) -> bool:
        return bool(checkpoint_every and step % checkpoint_every == 0)

    first = trainee.step
    bar = tqdm(total=total, initial=first, desc=desc, unit=unit, dynamic_ncols=True, disable=not progress)
    t0 = t_last = time.perf_counter()
    images = 0
    try:
        with stop_requests(checkpoint is not None) as stop_asked:
            while trainee.step < total:
                logs = trainee.train_step()
                step = trainee.step
                images += images_per_step
                if log_at.due(step, total):
                    now = time.perf_counter()
                    if images_per_step:
                        logs["img_per_s"] = images / max(now - t_last, 1e-9)
                    t_last, images = now, 0
                    if log is not None:
                        log(step, logs)
                if postfix is not None and postfix_at.due(step, total):
                    bar.set_postfix(postfix(logs))
                for e in every:
                    if e.due(step, total):
                        e.action(step, logs)
                if checkpoint is not None and checkpoint_due(step):
                    checkpoint(time.perf_counter() - t0)
                bar.update(1)
                if on_step is not None:
                    on_step(step, logs)
                if stop_asked():
                    if checkpoint is not None and not checkpoint_due(step):
                        checkpoint(time.perf_counter() - t0)
                    raise TrainingStopped(f"training stopped at step {step} of {total}; its checkpoint is written: "
                                          f"{resume_hint}")
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    if checkpoint is not None and not checkpoint_due(trainee.step):
        checkpoint(seconds)
    return Timing(trainee.step - first, seconds)


@contextmanager
def stop_requests(enabled: bool) -> Iterator[Callable[[], bool]]:
    """While enabled (and in the main thread, where Python delivers signals), Ctrl-C and SIGTERM only
    ask for a stop; the yielded function says whether any process was asked. The first signal puts the
    previous handler back, so a second one acts as before."""
    asked = threading.Event()
    previous: dict[int, Any] = {}

    def handle(signum: int, frame: object) -> None:
        asked.set()
        signal.signal(signum, previous[signum])

    if enabled and threading.current_thread() is threading.main_thread():
        for sig in (int(signal.SIGINT), int(signal.SIGTERM)):
            previous[sig] = signal.signal(sig, handle)
    try:
        yield (lambda: ddp.any_rank(asked.is_set())) if enabled else (lambda: False)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
