"""Starting and stopping a backend for a host plugin.

A plugin first looks for a running backend (its connection file). When there is none it starts the
configured backend command, e.g. ``/home/me/.venv/bin/python -m anycost serve``, with:

- ``--connection-file`` at a fixed path per host (``backend-krita.json`` in the runtime folder) and
  ``--reuse-connection-file``, so a backend restarted after a crash keeps its endpoint and key and the
  plugin's connection reconnects by itself;
- an environment without ``PYTHONPATH``/``PYTHONHOME`` (hosts point them at their own Python, which
  would break the backend's), stdout/stderr into a log file;
- on Linux, a parent-death signal, so the backend does not outlive a host that crashed (unless
  it is meant to outlive a one-shot plug-in process).

The command is never ``sys.executable``: inside a host that is the host's binary or its bundled
Python, not the backend's. It comes from the host's settings, ``$ANYCOST_BACKEND_COMMAND``, or the
``backend_command`` the installer wrote into ``plugin.json`` (see ``config_path``).

Standard library only. ``BackendLauncher`` never blocks for long: ``start`` returns at once and
``ready_file`` is polled from the host's event loop; ``oneshot.ensure_backend`` is the blocking path for
plug-ins that run one edit per process.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from .connection_file import (
    ConnectionFileError,
    _pid_alive,
    default_runtime_dir,
    ensure_private_folder,
    read_connection_file,
)

__all__ = [
    "BackendLauncher",
    "LaunchError",
    "child_environment",
    "config_path",
    "configured_command",
    "default_log_dir",
    "load_config",
    "parse_command",
    "save_config",
]

ENV_COMMAND = "ANYCOST_BACKEND_COMMAND"
# Variables a host sets for its own embedded Python; a child Python must not inherit them.
HOST_PYTHON_VARS = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONEXECUTABLE", "__PYVENV_LAUNCHER__")


class LaunchError(Exception):
    """The backend could not be started or stopped answering; the message says why and what to do."""


# ---------------------------------------------------------------------------------------- settings
def config_path() -> Path:
    """``plugin.json`` shared by the host plugins: ``$XDG_CONFIG_HOME/anycost`` (``%APPDATA%\\anycost``
    on Windows, ``~/Library/Application Support/anycost`` on macOS)."""
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "anycost" / "plugin.json"


def load_config(path: str | os.PathLike | None = None) -> dict:
    """The shared plugin settings (``{}`` when there are none or the file is unreadable)."""
    p = Path(path) if path is not None else config_path()
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_config(updates: dict, path: str | os.PathLike | None = None) -> Path:
    """Merge ``updates`` into the settings file (keys set to None are removed)."""
    p = Path(path) if path is not None else config_path()
    data = load_config(p)
    for k, v in updates.items():
        if v is None:
            data.pop(k, None)
        else:
            data[k] = v
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, p)
    return p


def parse_command(command: str | Sequence[str] | None) -> list[str]:
    """A command as an argument list: a list stays a list, a string is split like a shell would
    (Windows paths keep their backslashes)."""
    if command is None:
        return []
    if isinstance(command, str):
        return shlex.split(command, posix=sys.platform != "win32") if command.strip() else []
    return [str(c) for c in command]


def configured_command(override: str | Sequence[str] | None = None) -> list[str]:
    """The backend command: ``override`` (the host's own setting), else ``$ANYCOST_BACKEND_COMMAND``,
    else ``backend_command`` from ``plugin.json``; ``[]`` when none is configured."""
    for source in (override, os.environ.get(ENV_COMMAND), load_config().get("backend_command")):
        cmd = parse_command(source)
        if cmd:
            return cmd
    return []


def default_log_dir() -> Path:
    """Where plugins and the backends they start write their logs."""
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "anycost" / "logs"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Logs" / "anycost"
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "anycost"


def child_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for the backend process: the host's, minus its Python settings."""
    env = dict(os.environ if base is None else base)
    for name in HOST_PYTHON_VARS:
        env.pop(name, None)
    if env.get("APPIMAGE") or env.get("APPDIR"):
        # an AppImage points the loader at its own libraries; the backend's Python needs the system's
        env.pop("LD_LIBRARY_PATH", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _parent_death_signal() -> None:  # runs in the child between fork and exec (Linux only)
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


# ---------------------------------------------------------------------------------------- launcher
class BackendLauncher:
    """One backend process started by a plugin.

    ``start()`` spawns it; ``ready_file()`` (poll it) returns the connection file once the backend
    listens, or raises ``LaunchError`` with the end of its log if it died first; ``stop()`` ends it.
    ``restart()`` after a crash reuses the connection file, hence the endpoint and key.
    """

    def __init__(self, command: str | Sequence[str], *, host: str = "plugin",
                 connection_file: str | os.PathLike | None = None, log_file: str | os.PathLike | None = None,
                 extra_args: Sequence[str] = (), env: dict[str, str] | None = None, die_with_host: bool = True):
        self.command = parse_command(command)
        if not self.command:
            raise LaunchError("no backend command is configured")
        if os.path.abspath(self.command[0]) == os.path.abspath(sys.executable) and _inside_host():
            raise LaunchError(f"the backend command {self.command[0]} is the host program's own Python; "
                              "configure the Python (or 'anycost' command) of the environment where the "
                              "backend is installed")
        self.host = host
        self.connection_file = (Path(connection_file) if connection_file
                                else default_runtime_dir() / f"backend-{host}.json")
        self.log_file = Path(log_file) if log_file else default_log_dir() / f"backend-{host}.log"
        self.extra_args = list(extra_args)
        self.env = env
        self.die_with_host = die_with_host  # False: the backend outlives this process (one-shot plug-ins)
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self.starts = 0
        self._log: IO[bytes] | None = None

    @property
    def argv(self) -> list[str]:
        return [*self.command, "--connection-file", str(self.connection_file), "--reuse-connection-file",
                *self.extra_args]

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def start(self) -> None:
        if self.running():
            return
        try:  # the backend refuses a folder others could write; say so before starting it
            ensure_private_folder(self.connection_file.parent)
        except ConnectionFileError as e:
            raise LaunchError(str(e)) from e
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._close_log()
        log = self._log = open(self.log_file, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {shlex.join(self.argv)}\n".encode())
        log.flush()
        kw: dict = {}
        if sys.platform == "win32":
            kw["creationflags"] = getattr(subprocess, "CREATE_NO_WINDOW", 0)
        elif self.die_with_host and sys.platform.startswith("linux"):
            kw["preexec_fn"] = _parent_death_signal
        if not self.die_with_host and sys.platform != "win32":
            kw["start_new_session"] = True  # not hit by signals meant for the host's process group
        self.started_at = time.time()
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                         stderr=subprocess.STDOUT, env=child_environment(self.env), **kw)
        except OSError as e:
            self._close_log()
            raise LaunchError(f"cannot start the backend command {shlex.join(self.command)}: {e}") from e
        self.starts += 1

    def ready_file(self) -> Path | None:
        """The connection file once this process has written it; None while it starts up."""
        if self.proc is None:
            raise LaunchError("the backend was not started")
        code = self.proc.poll()
        if code is not None:
            raise LaunchError(f"the backend exited with code {code} before it was ready. The end of its log "
                              f"({self.log_file}):\n{self.log_tail()}")
        try:
            if self.connection_file.stat().st_mtime < self.started_at - 1.0:
                return None  # left by an earlier run
            info = read_connection_file(self.connection_file)
        except (OSError, ConnectionFileError):
            return None
        return self.connection_file if _pid_alive(info.get("pid")) else None

    def wait_ready(self, timeout: float = 180.0, poll: float = 0.1) -> Path:
        deadline = time.monotonic() + timeout
        while True:
            path = self.ready_file()
            if path is not None:
                return path
            if time.monotonic() > deadline:
                self.stop()
                raise LaunchError(f"the backend did not become ready within {timeout:g} s; see {self.log_file}")
            time.sleep(poll)

    def restart(self) -> None:
        self.stop()
        self.start()

    def stop(self, timeout: float = 10.0) -> int | None:
        """Ask the backend to stop (it removes its connection file), kill it if it does not."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                proc.terminate()
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
                self._remove_own_connection_file(proc.pid)  # a killed backend cannot remove it
            except OSError:
                pass
        self._close_log()
        return None if proc is None else proc.poll()

    def _remove_own_connection_file(self, pid: int) -> None:
        try:
            if read_connection_file(self.connection_file).get("pid") == pid:
                self.connection_file.unlink()
        except (OSError, ConnectionFileError):
            pass

    def log_tail(self, lines: int = 15) -> str:
        try:
            with open(self.log_file, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 16384))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def _inside_host() -> bool:
    """True inside an embedding host (Krita, GIMP) rather than a plain Python interpreter."""
    exe = os.path.basename(sys.executable).lower()
    return not exe.startswith("python")
