"""Reaching the backend from a one-shot (non-interactive) plug-in call: the running backend's
connection file, else the configured backend command started (with ``--model`` when a model was
asked for) and left running for the next call, else a message that says what to do.

While the call waits for the backend, it watches the backend (``anycost_client.backend_watch``): a
backend that dies or stops mid-call ends the call within a second, with a message naming its log,
rather than after the full timeout.
"""

from __future__ import annotations

from pathlib import Path

from anycost_client.backend_launcher import (
    ENV_COMMAND,
    BackendLauncher,
    LaunchError,
    config_path,
    configured_command,
)
from anycost_client.backend_watch import backend_watch
from anycost_client.client import BackendError, Client
from anycost_client.connection_file import ConnectionFileError, find_connection_file, read_connection_file

CONNECT_TIMEOUT = 10.0
START_TIMEOUT = 180.0
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
