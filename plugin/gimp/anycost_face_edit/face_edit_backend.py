"""Reaching the backend from a one-shot (non-interactive) plug-in call: the running backend's
connection file, else the configured backend command started and left running for the next call,
else a message that says what to do."""

from __future__ import annotations

from anycost_client.backend_launcher import LaunchError, ensure_backend
from anycost_client.client import BackendError, Client
from anycost_client.connection_file import ConnectionFileError, read_connection_file

CONNECT_TIMEOUT = 10.0
START_TIMEOUT = 180.0


class BackendUnavailable(Exception):
    """No backend could be reached; the message says why and what to do."""


def connect_backend(timeout: float = 300.0) -> Client:
    """A connected client (its welcome received); ``timeout`` bounds each later wait for an answer."""
    try:
        path = ensure_backend(host="gimp", timeout=START_TIMEOUT, stop_at_exit=False)
        info = read_connection_file(path)
    except (LaunchError, ConnectionFileError) as e:
        raise BackendUnavailable(str(e)) from None
    try:
        return Client.connect(path, timeout=timeout, connect_timeout=CONNECT_TIMEOUT, client_name="gimp-plugin")
    except BackendError as e:
        raise BackendUnavailable(
            f"the Anycost backend (pid {info.get('pid')}, {info.get('endpoint')}) did not answer: {e.message}. "
            f"Restart it with 'anycost serve', or remove the stale connection file {path}.") from None
