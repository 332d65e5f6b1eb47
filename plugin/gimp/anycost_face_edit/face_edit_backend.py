"""Reaching the backend from a one-shot (non-interactive) plug-in call: the running backend's
connection file, else the configured backend command started (with ``--model`` when a model was
asked for) and left running for the next call, else a message that says what to do.

While the call waits for the backend, it watches the backend (``backend_watch``): a backend that dies
mid-call (its process, which the connection file names, is gone) or stops (it withdrew its connection
file) ends the call within a second, with a message naming its log, rather than after the full timeout.
Where the process cannot be seen (another machine, a sandbox with its own process ids), a backend that
answers not even heartbeats for ``SILENT_LIMIT`` seconds ends it.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

from anycost_client.backend_launcher import (
    ENV_COMMAND,
    BackendLauncher,
    LaunchError,
    config_path,
    configured_command,
    default_log_dir,
)
from anycost_client.client import BackendError, Client, Status
from anycost_client.connection_file import (
    ConnectionFileError,
    find_connection_file,
    is_backend_process,
    read_connection_file,
)

CONNECT_TIMEOUT = 10.0
START_TIMEOUT = 180.0
SILENT_LIMIT = 60.0  # seconds without even a heartbeat from a backend whose process cannot be watched
HOST = "gimp"  # names the connection and log files of a backend the plug-in starts


class BackendUnavailable(Exception):
    """No suitable backend could be reached; the message says why and what to do."""


def start_args(model: str) -> list[str]:
    """Extra options for a backend the plug-in starts: the asked-for model, if any."""
    return ["--model", model] if model else []


def served_model(welcome: dict) -> str:
    """The name of the model a backend serves, from its welcome ('' when it does not say)."""
    models = welcome.get("models") or [{}]
    return str((models[0] or {}).get("name") or "")


def model_matches(wanted: str, served: str) -> bool:
    """``wanted`` is a model name, or a model file whose stem is the name (as ``anycost serve --model FILE``
    names it when the file carries no name of its own)."""
    return not wanted or wanted == served or Path(wanted).stem == served


def _backend_file(model: str) -> tuple[Path, BackendLauncher | None]:
    """(connection file, the launcher when this call started the backend)."""
    try:
        return find_connection_file(), None
    except ConnectionFileError as e:
        why = str(e)
    command = configured_command()
    if not command:
        raise BackendUnavailable(f"{why}; no backend command is configured either (run 'anycost install gimp' "
                                 f"from the backend's environment, set ${ENV_COMMAND}, or 'backend_command' in "
                                 f"{config_path()})")
    try:
        launcher = BackendLauncher(command, host=HOST, extra_args=start_args(model), die_with_host=False)
        launcher.start()
        return launcher.wait_ready(START_TIMEOUT), launcher
    except LaunchError as e:
        raise BackendUnavailable(str(e)) from None


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


def _zombie(pid: int) -> bool:
    """A process that has exited but not been reaped still answers to its pid (Linux: state Z or X)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return False
    return raw[raw.rfind(b")") + 2:][:1] in (b"Z", b"X")


def backend_watch(client: Client, info: dict, connection_file: Path,
                  launcher: BackendLauncher | None = None) -> Callable[[], str | None]:
    """The check ``Client.watch`` runs while a call waits: why the backend can no longer answer, or None.

    Its connection file: withdrawn means it is stopping. Its process, when this process could see it on
    connecting (same machine, same process ids): gone (or a zombie) means it died. Otherwise its
    heartbeats: silent for ``SILENT_LIMIT`` seconds."""
    pid, tag = info.get("pid"), info.get("process")
    visible = is_backend_process(pid, tag) and not _zombie(pid)  # type: ignore[arg-type]
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
            if code is None and is_backend_process(pid, tag) and not _zombie(pid):  # type: ignore[arg-type]
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


def connect_backend(timeout: float = 300.0, model: str = "") -> Client:
    """A connected client (its welcome received) of a backend serving ``model`` (empty: any model);
    ``timeout`` bounds each later wait for an answer."""
    model = (model or "").strip()
    path, launcher = _backend_file(model)
    try:
        info = read_connection_file(path)
    except ConnectionFileError as e:
        raise BackendUnavailable(str(e)) from None
    try:
        client = Client.connect(path, timeout=timeout, connect_timeout=CONNECT_TIMEOUT, client_name="gimp-plugin")
    except BackendError as e:
        raise BackendUnavailable(
            f"the Anycost backend (pid {info.get('pid')}, {info.get('endpoint')}) did not answer: {e.message}. "
            f"Restart it with 'anycost serve', or remove the stale connection file {path}.") from None
    served = served_model(client.welcome)
    if launcher is None and not model_matches(model, served):
        client.close()
        raise BackendUnavailable(model_mismatch(model, served, info.get("pid")))
    client.watch(backend_watch(client, info, path, launcher))
    return client


def model_mismatch(wanted: str, served: str, pid: object = None) -> str:
    """What to say when the running backend serves another model than the one asked for."""
    which = f" (pid {pid})" if pid else ""
    return (f"the running Anycost backend{which} serves model '{served}', not '{wanted}': stop it and start one "
            f"with 'anycost serve --model {wanted}', or leave the model empty to use '{served}'")
