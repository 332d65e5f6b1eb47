"""Where a running backend says it listens: the connection file (JSON, mode 0600).

    {"endpoint": "tcp://127.0.0.1:40123", "key": "<64 hex digits>", "pid": 4242,
     "process": "<boot id>:<start time>", "protocol_version": 1, "signature_scheme": "hmac-sha256",
     "transport": "tcp", "auth": "plain", "model": "…", "curve_server_key": null | "<Z85 public key>"}

Files live in ``$XDG_RUNTIME_DIR/anycost/`` when that runtime folder is private to the user (as the
XDG spec demands), else in ``~/.cache/anycost/runtime/``. Anyone who can write such a folder could
plant a file that sends the user's images to their own backend, or delete the user's files, so:

- the folder is created with mode 0700 and used only while it is owned by the user and private;
- a file is read only when it is a regular file owned by the user with no permissions for others;
- a found file counts only while its ``pid`` is an ``anycost serve`` process of the same user (its
  ``process`` tag: boot id and start time, tells a reused pid apart); otherwise the next one is tried.

Standard library only, so host plugins can use it (and Python 3.8: hosts bundle old Pythons).
"""

from __future__ import annotations

import ipaddress
import json
import os
import stat
import sys
from pathlib import Path
from urllib.parse import urlsplit

ENV_FILE = "ANYCOST_CONNECTION_FILE"
MAX_FILE_BYTES = 64 * 1024  # a connection file is a few hundred bytes
_POSIX = sys.platform != "win32"


class ConnectionFileError(Exception):
    """No usable connection file: the message says what to do."""


# ---------------------------------------------------------------------------------------- folders
def _uid() -> int:
    return os.getuid() if _POSIX else -1


def _loose(mode: int, strict: bool) -> int:
    """The permission bits others should not have: any (strict) or write (a folder the user chose)."""
    return stat.S_IMODE(mode) & (0o077 if strict else 0o022)


def folder_problem(path: Path, strict: bool = True) -> str | None:
    """Why ``path`` is not a private folder of this user (None when it is).

    ``strict``: no permissions for group or others (mode 0700), as for the runtime folder; otherwise
    only write permission for them is a problem (a folder the user named for a connection file)."""
    if not _POSIX:
        return None
    try:
        st = os.lstat(path)
    except OSError as e:
        return f"{path} cannot be examined ({e.strerror or e})"
    if stat.S_ISLNK(st.st_mode):
        return f"{path} is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a folder"
    if st.st_uid != _uid() and (strict or st.st_uid != 0):  # a folder the user names may be root's
        return f"{path} belongs to another user (uid {st.st_uid})"
    if _loose(st.st_mode, strict):
        what = "accessible" if strict else "writable"
        return f"{path} is {what} by other users (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def ensure_private_folder(path: Path, strict: bool = True) -> Path:
    """Create ``path`` (mode 0700; missing parents too) or check the existing one; raise
    ConnectionFileError when it is not this user's own private folder. An existing folder of this user
    that is too open is tightened to 0700: nobody else could have made it."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            pass  # made meanwhile: checked below like any existing folder
        except OSError as e:
            raise ConnectionFileError(f"cannot create the folder {path}: {e.strerror or e}") from e
    if _POSIX:
        try:
            st = os.lstat(path)
        except OSError as e:
            raise ConnectionFileError(f"cannot examine {path}: {e.strerror or e}") from e
        if stat.S_ISDIR(st.st_mode) and st.st_uid == _uid() and _loose(st.st_mode, strict):
            os.chmod(path, 0o700)
    problem = folder_problem(path, strict)
    if problem:
        raise ConnectionFileError(f"refusing to use {path} for connection files: {problem}. Remove it, or "
                                  "point XDG_RUNTIME_DIR (or --connection-file) at a folder only you can use")
    return path


def _fallback_runtime_dir() -> Path:
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
        return base / "anycost" / "runtime"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "anycost" / "runtime"


def runtime_dir_choice() -> tuple[Path, str | None]:
    """(the folder for connection files, why $XDG_RUNTIME_DIR was passed over, or None)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        problem = folder_problem(Path(runtime), strict=True)
        if problem is None:
            return Path(runtime) / "anycost", None
        return _fallback_runtime_dir(), f"XDG_RUNTIME_DIR is not private: {problem}"
    return _fallback_runtime_dir(), None


def default_runtime_dir() -> Path:
    """``$XDG_RUNTIME_DIR/anycost`` when the runtime folder is private to this user, else the fallback."""
    return runtime_dir_choice()[0]


# ---------------------------------------------------------------------------------------- processes
def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    if sys.platform == "win32":
        return True  # no cheap check; a stale file fails at connect time instead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def process_state(pid: object) -> str | None:
    """A live process's state letter (Linux ``/proc/PID/stat``: ``R`` running, ``S`` sleeping, ``T``
    stopped, ``Z`` zombie…; ``?`` elsewhere, where only liveness is known), or None when there is no such
    process or nothing can be known (Windows)."""
    if sys.platform == "win32" or not _pid_alive(pid):
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None if sys.platform.startswith("linux") else "?"
    fields = raw[raw.rfind(b")") + 2:].split()
    return fields[0].decode() if fields else "?"


def process_tag(pid: int) -> str | None:
    """``boot id:start time`` of a process (Linux): a pid reused by another process gets another tag."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # the command name in parentheses may hold spaces: the fields after the last ')' are fixed
    fields = raw[raw.rfind(b")") + 2:].split()
    return f"{boot}:{fields[19].decode()}" if len(fields) > 19 else None


def _looks_like_serve(argv: list[str]) -> bool:
    names = [os.path.basename(a).lower() for a in argv]
    for i, name in enumerate(names[:-1]):
        if name in ("anycost", "anycost-script.py") or name.startswith("anycost."):
            if "serve" in names[i + 1:]:
                return True
    return False


def is_backend_process(pid: object, tag: object = None) -> bool:
    """Whether ``pid`` is a live ``anycost serve`` of this user (with ``tag``: that very process).

    On Linux: the process belongs to this user and its tag matches (or, for a file without one, its
    command line is an ``anycost serve``). Elsewhere only liveness can be checked."""
    if not _pid_alive(pid):
        return False
    proc = Path(f"/proc/{pid}")
    if not (sys.platform.startswith("linux") and proc.is_dir()):
        return True
    try:
        if proc.stat().st_uid != _uid():
            return False
        if isinstance(tag, str):
            return process_tag(pid) == tag  # type: ignore[arg-type]
        argv = [a.decode("utf-8", "replace") for a in (proc / "cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return False
    return _looks_like_serve(argv)


# ---------------------------------------------------------------------------------------- files
def read_connection_file(path: str | os.PathLike, *, follow_links: bool = True) -> dict:
    """The backend's connection info (``key_bytes`` added). The file must be a regular file of this
    user that nobody else may read or write, in a folder nobody else may write."""
    p = Path(path)
    flags = os.O_RDONLY | (0 if follow_links else getattr(os, "O_NOFOLLOW", 0))
    try:
        fd = os.open(p, flags)
    except OSError as e:
        raise ConnectionFileError(f"cannot read the backend connection file {p}: {e.strerror or e}") from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConnectionFileError(f"{p} is not a backend connection file (not a regular file)")
        if _POSIX and st.st_uid != _uid():
            raise ConnectionFileError(f"refusing the connection file {p}: it belongs to another user (uid "
                                      f"{st.st_uid}), who could send your images to a backend of their own")
        if _POSIX and stat.S_IMODE(st.st_mode) & 0o077:
            raise ConnectionFileError(f"refusing the connection file {p}: its mode is "
                                      f"{stat.S_IMODE(st.st_mode):04o}, but it holds a secret key; make it "
                                      f"private with 'chmod 600 {p}'")
        if st.st_size > MAX_FILE_BYTES:
            raise ConnectionFileError(f"{p} is not a backend connection file ({st.st_size} bytes)")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise ConnectionFileError(f"cannot read the backend connection file {p}: {e.strerror or e}") from e
    finally:
        os.close(fd)
    problem = folder_problem(Path(os.path.realpath(p)).parent, strict=False)
    if problem:
        raise ConnectionFileError(f"refusing the connection file {p}: {problem}, so someone else could have "
                                  "put it there")
    try:
        info = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ConnectionFileError(f"cannot read the backend connection file {p}: {e}") from e
    if not isinstance(info, dict) or not isinstance(info.get("endpoint"), str):
        raise ConnectionFileError(f"{p} is not a backend connection file (no endpoint)")
    key = info.get("key", "")
    try:
        info["key_bytes"] = bytes.fromhex(key) if key else b""
    except (TypeError, ValueError) as e:
        raise ConnectionFileError(f"{p}: the key is not hex") from e
    return info


def live_backend(path: str | os.PathLike) -> dict | None:
    """The connection info of ``path`` when it is a safe file of a running backend of this user, else None."""
    try:
        info = read_connection_file(path, follow_links=False)
    except ConnectionFileError:
        return None
    return info if is_backend_process(info.get("pid"), info.get("process")) else None


def find_connection_file(directory: str | os.PathLike | None = None) -> Path:
    """``$ANYCOST_CONNECTION_FILE``, else the newest file of a live backend in the runtime directory.

    Only a private folder of this user is searched; files that fail the checks of
    ``read_connection_file`` or name a process that is not a backend of this user are passed over."""
    env = os.environ.get(ENV_FILE)
    if env and directory is None:
        return Path(env)
    d = Path(directory) if directory is not None else default_runtime_dir()
    if not d.is_dir():
        raise ConnectionFileError(f"no running backend found (no folder {d}); start one with 'anycost serve' "
                                  "or pass a connection file")
    problem = folder_problem(d, strict=True)
    if problem:
        raise ConnectionFileError(f"no running backend found: not looking in {d} because {problem}; remove it, "
                                  "or start the backend with --connection-file in a folder only you can use")
    candidates = []
    for p in d.glob("backend-*.json"):
        try:
            mtime = os.lstat(p).st_mtime
        except OSError:
            continue
        candidates.append((mtime, str(p)))
    for _, name in sorted(candidates, reverse=True):  # newest first; the first live one wins
        if live_backend(name) is not None:
            return Path(name)
    raise ConnectionFileError(f"no running backend found (no live connection file in {d}); start one with "
                              "'anycost serve' or pass a connection file")


def is_loopback_endpoint(endpoint: str) -> bool:
    """True for ipc://, inproc:// and TCP on a loopback address (or 'localhost')."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    if not endpoint.startswith("tcp://"):
        return False
    host = urlsplit(endpoint).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # '*', an interface name or a host name: may be reachable from outside
