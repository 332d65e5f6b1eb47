"""Writing files so that a reader never sees half of one.

Outputs are written to a temporary file beside the target, then renamed into place. A writer that is
killed (kill -9, power loss) leaves its temporary file behind; the name says what it is, who wrote it
and where: ``.anycost-partial-<host>-<pid>-<random><suffix>``, and the next write into that folder
removes such files once their writer is gone (see ``sweep_partials``).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

PARTIAL_PREFIX = ".anycost-partial-"
STALE_AFTER = 24 * 3600.0  # seconds: a partial file this old is removed whoever wrote it
_PARTIAL_NAME = re.compile(re.escape(PARTIAL_PREFIX) + r"([0-9a-f]{8})-(\d+)-")
_swept: set[str] = set()  # folders already swept by this process


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _host() -> str:
    return hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def _alive(pid: int) -> bool:
    if sys.platform == "win32":
        return True  # os.kill would end the process there: leave it to the age rule
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def sweep_partials(folder: str | os.PathLike, *, now: float | None = None, force: bool = False) -> list[Path]:
    """Remove the partial outputs in ``folder`` whose writer is gone: written on this host by a process
    that no longer exists, or older than a day. Only this user's regular files are touched. Each folder
    is swept once per process (``force``: again); returns what was removed."""
    key = os.path.realpath(folder)
    if key in _swept and not force:
        return []
    _swept.add(key)
    now = time.time() if now is None else now
    host, me = _host(), os.getpid()
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _PARTIAL_NAME.match(entry.name)
        if m is None:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
            continue
        pid = int(m.group(2))
        gone = m.group(1) == host and pid != me and not _alive(pid)
        if gone or now - st.st_mtime > STALE_AFTER:
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:
                pass
    return removed


def partial_file(path: str | os.PathLike, suffix: str | None = None) -> str:
    """Create (mode 0600) and return the temporary file for writing ``path``: in the same folder, named
    ``.anycost-partial-<host>-<pid>-<random><suffix>`` (short: a name built from a long target name could
    exceed the file-name limit). Leftovers of dead writers in that folder are removed first."""
    path = Path(path)
    sweep_partials(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f"{PARTIAL_PREFIX}{_host()}-{os.getpid()}-",
                               suffix=suffix if suffix is not None else path.suffix or ".tmp", dir=path.parent)
    os.close(fd)
    return tmp


def atomic_write(path: str | os.PathLike, write: Callable[[str], object], *, suffix: str | None = None,
                 mode: int | None = None) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place.

    On any failure the temporary file is removed and ``path`` is left as it was. ``suffix``
    (default: the target's own) matters to writers that pick a format by extension. ``mode``
    defaults to what a plain ``open`` would give (0666 less the umask); the temporary file
    itself is private (0600) while it is written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_file(path, suffix)
    try:
        write(tmp)
        os.chmod(tmp, _default_mode() if mode is None else mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
