"""Searching the preview sub-generator while the service runs.

When a search could improve the preview (the full generator misses the budget and no table holds
an entry searched for it: ``commands.serve.needs_search``), the service starts with what it has
(a second or two) and, some time after start-up, runs ``anycost search`` for its budget in a
child process, so start-up stays fast. The child times the layers at normal priority (while the service is idle after
start-up; timing must see the CPU as renders see it), then drops to low priority for the search
itself, so renders keep precedence. When it finishes, its table is in the cache (the next start
uses it at once) and previews switch to its choice if that fits the budget when timed here (the
rule of ``search/budget.py``, as for every other choice) and is better than the current one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..editing.preview_choice import PreviewChoice, better_choice
from ..search.cache import cache_dir, cached_table
from .log import log

NICE = 10
KEEP_LOGS = 5  # background-search logs kept in the cache folder (one per service run)


class PreviewSearch:
    """One background ``anycost search`` for the editor's preview budget."""

    def __init__(self, editor, *, device: str = "cpu", directions: str | None = None,
                 extra_args: list[str] | None = None,
                 in_render_thread: Callable[[Callable[[], bool]], bool] | None = None):
        """``in_render_thread`` runs the re-choice (which times renders) where the service renders
        (``Server.in_render_thread``); without it, in the search's own thread."""
        self.editor = editor
        self._in_render_thread = in_render_thread or (lambda fn: fn())
        self.device = device
        self.directions = directions
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen | None = None
        self.state = "idle"  # idle → waiting → running → done | failed | stopped
        self.started = 0.0
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self.log_path = cache_dir() / "search" / f"background-{os.getpid()}.log"

    def command(self) -> list[str]:
        ed = self.editor
        cmd = [sys.executable, "-m", "anycost", "search", "--model", str(Path(ed.path).resolve()),
               "--budget-ms", f"{ed.preview_budget_ms:g}", "--device", self.device, "--nice", str(NICE),
               "--no-final-timing", "--parent-pid", str(os.getpid()), "--quiet"]
        if self.directions:
            cmd += ["--directions", str(Path(self.directions).resolve())]
        return cmd + self.extra_args

    def start(self, delay: float = 0.0) -> None:
        """Launch the search after ``delay`` seconds (short-lived services, such as one a script starts
        for a single edit, then never pay for it)."""
        if delay <= 0:
            self._launch()
            return
        self.state = "waiting"
        self._timer = threading.Timer(delay, self._launch)
        self._timer.daemon = True
        self._timer.start()

    def _launch(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            self._spawn()

    def _spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        _prune_logs(self.log_path.parent, keep=KEEP_LOGS - 1)
        logf = open(self.log_path, "w")  # noqa: SIM115 - the child writes to it; closed when it ends
        try:
            # Same process group as the service (a supervisor stopping the group stops the search too),
            # and the child exits by itself when the service is gone (--parent-pid).
            self.proc = subprocess.Popen(self.command(), stdout=logf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        except OSError as e:
            logf.close()
            self.state = "failed"
            log("warning", "preview_search_failed", error=str(e))
            return
        self.state = "running"
        self.started = time.monotonic()
        log("info", "preview_search_started", pid=self.proc.pid, budget_ms=self.editor.preview_budget_ms,
            log_file=str(self.log_path))
        self._thread = threading.Thread(target=self._wait, args=(logf,), name="anycost-preview-search", daemon=True)
        self._thread.start()

    def _wait(self, logf) -> None:
        assert self.proc is not None
        rc = self.proc.wait()
        logf.close()
        if self._stopping.is_set():
            self.state = "stopped"
            return
        seconds = round(time.monotonic() - self.started, 1)
        if rc != 0:
            self.state = "failed"
            log("warning", "preview_search_failed", rc=rc, seconds=seconds, tail=_tail(self.log_path))
            return
        try:
            changed = self._adopt()
        except Exception as e:  # noqa: BLE001 - a bad table must not take the service down
            self.state = "failed"
            log("warning", "preview_search_failed", error=repr(e), seconds=seconds)
            return
        self.state = "done"
        choice = self.editor.preview_choice()
        log("info", "preview_search_done", seconds=seconds, changed=changed, preview_cost=choice.cost.label(),
            predictor=self._predictor_error(), **choice.describe())

    def _adopt(self) -> bool:
        """Choose the preview again from the table the search left in the cache (never a worse one
        than the current: ``recheck_preview``); True when the preview changed."""
        if cached_table(self.editor.generator) is None:
            raise RuntimeError("the search finished but left no table for this model and machine")
        return self._in_render_thread(lambda: recheck_preview(self.editor)[1])

    def _predictor_error(self) -> dict | None:
        """The latency predictor's out-of-sample error the search table records, for the log."""
        table = cached_table(self.editor.generator)
        check = (table.latency.get("check") if table is not None else None) or {}
        if not check.get("n"):
            return None
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in check.items()}

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._stopping.set()
            if self._timer is not None:
                self._timer.cancel()
            if self.state == "waiting":
                self.state = "stopped"
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)
        log("info", "preview_search_stopped", pid=self.proc.pid)


def recheck_preview(editor) -> tuple[PreviewChoice, bool]:
    """Choose the preview again if the cached search table changed since it was read, keeping the
    current choice unless the new one is better (``better_choice``): a re-run search may have other
    settings, or the machine be busier now. Returns the choice in effect and whether its cost changed."""
    before = editor.preview_choice()
    after = editor.preview_choice(recheck=True)
    if after is before:
        return before, False
    if better_choice(editor.generator, before, after) is not after:
        editor.set_preview(before)
        return before, False
    return after, after.cost != before.cost


def _prune_logs(folder: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` background-search logs (one is written per service run)."""
    def mtime(p: Path) -> float:
        try:
            return p.stat().st_mtime
        except OSError:
            return 0.0

    logs = sorted(folder.glob("background-*.log"), key=mtime, reverse=True)
    for old in logs[max(0, keep):]:
        try:
            old.unlink()
        except OSError:
            pass


def _tail(path: Path, n: int = 800) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""
