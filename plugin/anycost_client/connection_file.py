"""Where a running backend says it listens: the connection file (JSON, mode 0600).

    {"endpoint": "tcp://127.0.0.1:40123", "key": "<64 hex digits>", "pid": 4242,
     "protocol_version": 1, "signature_scheme": "hmac-sha256", "transport": "tcp",
     "model": "…", "curve_server_key": null | "<Z85 public key>"}

Files live in ``$XDG_RUNTIME_DIR/anycost/`` (fallback: ``~/.cache/anycost/runtime/``). Standard
library only, so host plugins can use it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ENV_FILE = "ANYCOST_CONNECTION_FILE"


class ConnectionFileError(Exception):
    """No usable connection file: the message says what to do."""


def default_runtime_dir() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / "anycost"
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
        return base / "anycost" / "runtime"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "anycost" / "runtime"


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    if sys.platform == "win32":
        return True  # no cheap check; a stale file fails at connect time instead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_connection_file(path: str | os.PathLike) -> dict:
    p = Path(path)
    try:
        info = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise ConnectionFileError(f"cannot read the backend connection file {p}: {e}") from e
    if not isinstance(info, dict) or not isinstance(info.get("endpoint"), str):
        raise ConnectionFileError(f"{p} is not a backend connection file (no endpoint)")
    key = info.get("key", "")
    try:
        info["key_bytes"] = bytes.fromhex(key) if key else b""
    except (TypeError, ValueError) as e:
        raise ConnectionFileError(f"{p}: the key is not hex") from e
    return info


def find_connection_file(directory: str | os.PathLike | None = None) -> Path:
    """``$ANYCOST_CONNECTION_FILE``, else the newest file of a live backend in the runtime directory."""
    env = os.environ.get(ENV_FILE)
    if env and directory is None:
        return Path(env)
    d = Path(directory) if directory is not None else default_runtime_dir()
    candidates = []
    for p in d.glob("backend-*.json") if d.is_dir() else ():
        try:
            info = json.loads(p.read_text())
            mtime = p.stat().st_mtime
        except (OSError, ValueError):
            continue
        if isinstance(info, dict) and _pid_alive(info.get("pid")):
            candidates.append((mtime, p))
    if not candidates:
        raise ConnectionFileError(f"no running backend found (no live connection file in {d}); start one with "
                                  "'anycost serve' or pass a connection file")
    return max(candidates)[1]
