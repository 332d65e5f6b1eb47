"""Reaching a backend from a call that lives one edit long (GIMP's plug-in process, a script): the running
backend's connection file, else the configured backend command started (with ``--model`` when a model was
asked for) and left running for the next call, else a message that says what to do.

The client it returns watches the backend (``backend_watch``) while a call waits: a backend that dies or
stops mid-call ends the call within a second, with a message naming its log, rather than after the full
timeout. Interactive dialogs keep a backend link instead (``controller.BackendLink``), which never blocks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from .backend_launcher import ENV_COMMAND, BackendLauncher, LaunchError, config_path, configured_command
from .backend_watch import backend_watch
from .client import BackendError, Client
from .connection_file import ConnectionFileError, find_connection_file, read_connection_file

__all__ = [
    "CONNECT_TIMEOUT",
    "START_TIMEOUT",
    "BackendUnavailable",
    "connect_backend",
    "ensure_backend",
    "model_matches",
    "model_mismatch",
    "served_model",
    "start_args",
]

CONNECT_TIMEOUT = 10.0  # for the welcome of a backend whose connection file was found
START_TIMEOUT = 180.0  # for a backend this call starts to listen (it may load a large model)
INSTALLED_HOSTS = ("krita", "gimp")  # hosts whose installer records the backend command ('anycost install HOST')


class BackendUnavailable(Exception):
    """No suitable backend could be reached; the message says why and what to do."""


def start_args(model: str) -> list[str]:
    """Extra options for a backend a plug-in starts: the asked-for model, if any."""
    return ["--model", model] if model else []


def served_model(welcome: Mapping) -> str:
    """The name of the model a backend serves, from its welcome ('' when it does not say)."""
    models = welcome.get("models") or [{}]
    return str((models[0] or {}).get("name") or "")


def model_matches(wanted: str, served: str) -> bool:
    """``wanted`` is a model name, or a model file whose stem is the name (as ``anycost serve --model FILE``
    names it when the file carries no name of its own)."""
    return not wanted or wanted == served or Path(wanted).stem == served


def model_mismatch(wanted: str, served: str, pid: object = None) -> str:
    """What to say when the running backend serves another model than the one asked for."""
    which = f" (pid {pid})" if pid else ""
    return (f"the running Anycost backend{which} serves model '{served}', not '{wanted}': stop it and start one "
            f"with 'anycost serve --model {wanted}', or leave the model empty to use '{served}'")


def ensure_backend(host: str, *, model: str = "", command: str | Sequence[str] | None = None,
                   timeout: float = START_TIMEOUT) -> tuple[Path, BackendLauncher | None]:
    """The connection file of a running backend, and None; when none runs, that of the configured command
    (``command``, else ``configured_command``) started now with ``--model`` for ``model``, and its launcher.
    A started backend outlives this process (``die_with_host=False``, its own session) for the next call;
    its connection and log files are named after ``host``. Blocks until it listens."""
    try:
        return find_connection_file(), None
    except ConnectionFileError as e:
        why = str(e)
    cmd = configured_command(command)
    if not cmd:
        install = f"run 'anycost install {host}' from the backend's environment, " if host in INSTALLED_HOSTS else ""
        raise BackendUnavailable(f"{why}; no backend command is configured either ({install}set ${ENV_COMMAND}, "
                                 f"or 'backend_command' in {config_path()})")
    try:
        launcher = BackendLauncher(cmd, host=host, extra_args=start_args(model), die_with_host=False)
        launcher.start()
        return launcher.wait_ready(timeout), launcher
    except LaunchError as e:
        raise BackendUnavailable(str(e)) from None


def connect_backend(host: str, client_name: str, *, model: str = "", timeout: float = 300.0) -> Client:
    """A connected client (its welcome received, the backend watched) of a backend serving ``model`` (empty:
    any model), found or started by ``ensure_backend``; ``timeout`` bounds each later wait for an answer.
    A running backend that serves another model is refused; one started here serves the asked-for model."""
    model = (model or "").strip()
    path, launcher = ensure_backend(host, model=model)
    try:
        info = read_connection_file(path)
    except ConnectionFileError as e:
        raise BackendUnavailable(str(e)) from None
    try:
        client = Client.connect(path, timeout=timeout, connect_timeout=CONNECT_TIMEOUT, client_name=client_name)
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
