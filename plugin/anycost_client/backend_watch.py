"""Watching a backend while a blocking call waits for it (``Client.watch``): a backend that dies mid-call
(its process, which the connection file names, is gone) or stops (it withdrew its connection file) ends
the call within a second, with a message naming its log, rather than after the call's full timeout.
Where the process cannot be seen (another machine, a sandbox with its own process ids), a backend that
answers not even heartbeats for ``SILENT_LIMIT`` seconds ends it. Used by one-shot plug-in calls (GIMP's)
and scripts."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .backend_launcher import BackendLauncher, default_log_dir
from .client import Client, Status
from .connection_file import is_backend_process, process_state

__all__ = ["SILENT_LIMIT", "backend_log", "backend_watch"]

SILENT_LIMIT = 60.0  # seconds without even a heartbeat from a backend whose process cannot be watched


def backend_log(connection_file: Path, pid: object, launcher: BackendLauncher | None = None) -> Path | None:
    """Where the backend writes its log, as far as this process can tell (ask while it runs): the log of a
    backend a plug-in started (``backend-HOST.json`` → ``backend-HOST.log`` in the log folder), else the file
    its standard error goes to (Linux); None when it writes to a terminal or pipe, or nothing can be seen."""
    if launcher is not None:
        return launcher.log_file
    m = re.fullmatch(r"backend-([A-Za-z][\w-]*)\.json", connection_file.name)
    if m and (default_log_dir() / f"backend-{m.group(1)}.log").is_file():
        return default_log_dir() / f"backend-{m.group(1)}.log"
    if isinstance(pid, int) and sys.platform.startswith("linux"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/2")
        except OSError:
            return None
        if target.startswith("/") and not target.startswith(("/dev/", "/proc/")):
            return Path(target[:-len(" (deleted)")] if target.endswith(" (deleted)") else target)
    return None


def backend_watch(client: Client, info: dict, connection_file: Path,
                  launcher: BackendLauncher | None = None) -> Callable[[], str | None]:
    """The check ``Client.watch`` runs while a call waits: why the backend can no longer answer, or None.

    Its connection file: withdrawn means it is stopping. Its process, when this process could see it on
    connecting (same machine, same process ids): gone (or a zombie) means it died. Otherwise its
    heartbeats: silent for ``SILENT_LIMIT`` seconds."""
    pid, tag = info.get("pid"), info.get("process")
    visible = is_backend_process(pid, tag) and process_state(pid) not in ("Z", "X")
    log = backend_log(connection_file, pid, launcher)
    where = (f"its log is {log}" if log else "its log is wherever it was started (the standard error of "
             "'anycost serve')")
    silent_since: list[float] = []

    def withdrawn() -> bool:
        """A stopping backend (SIGTERM, Ctrl-C) first removes its connection file, then finishes what runs."""
        try:
            return json.loads(connection_file.read_text(encoding="utf-8")).get("pid") != pid
        except FileNotFoundError:
            return True
        except (OSError, ValueError, AttributeError):
            return False  # unreadable for another reason: no sign either way

    def check() -> str | None:
        if withdrawn():
            return (f"the Anycost backend (pid {pid}) stopped while working on this edit: it withdrew its "
                    f"connection file {connection_file}; {where}. Run the edit again once a backend runs "
                    "('anycost serve', or the configured backend command the plug-in starts)")
        if visible:
            code = launcher.proc.poll() if launcher is not None and launcher.proc is not None else None
            if code is None and is_backend_process(pid, tag) and process_state(pid) not in ("Z", "X"):
                return None
            how = (f" (killed by signal {-code})" if code < 0 else f" (exit code {code})") if code is not None else ""
            return (f"the Anycost backend (pid {pid}) died while working on this edit{how}; {where}. "
                    "Run the edit again once a backend runs ('anycost serve', or the configured backend command "
                    "the plug-in starts)")
        if client.status == Status.CONNECTED:
            silent_since.clear()
            return None
        now = time.monotonic()
        if not silent_since:
            silent_since.append(now)
        if now - silent_since[0] < SILENT_LIMIT:
            return None
        return (f"the Anycost backend (pid {pid}, {info.get('endpoint')}) has not answered for {SILENT_LIMIT:g} s, "
                f"not even heartbeats: it stopped or hangs; {where}")

    return check
