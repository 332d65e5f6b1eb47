"""What installing a host plug-in means for both hosts: stage, then swap in.

An install is built in a hidden folder beside its destination (same file system, so the move is one
rename) and replaces the previous install only once it is complete; if the move fails the previous
install is put back. An install that fails or is killed midway therefore leaves the previous one
working, and the next run clears what it left. Also here: the installers' error, their report, the
copy of the sources and the vendored wheels every stage gets, and the record (``INSTALL.json``) in it.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from .wheels import Target, WheelError, vendor, vendored_wheels

IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")  # what a copy of the sources leaves out
RECORD = "INSTALL.json"  # in the installed folder: when, for which Python, which wheels, which backend


class InstallError(Exception):
    """The plug-in cannot be installed or removed; the message says what to do."""


@dataclass
class InstallReport:
    """What an install put in place, for the command to tell; hosts add their own fields."""

    plugin_dir: Path
    linked: bool = False
    vendored: list[str] = field(default_factory=list)  # wheel file names
    python_version: str = ""  # the host's Python the wheels are for ("" where nothing is vendored)
    python_source: str = ""  # where that version was read
    backend_command: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def default_backend_command() -> list[str]:
    """The backend as installed next to this installer: this Python running ``anycost serve``."""
    return [sys.executable, "-m", "anycost", "serve"]


def save_backend_command(report: InstallReport) -> None:
    """Record the backend command in the plug-ins' shared settings, where the plug-in looks for it."""
    from anycost_client.backend_launcher import save_config

    save_config({"backend_command": report.backend_command})


def links_hint() -> str:
    """Why making a symbolic link may fail here, for the message that says so."""
    return (" Windows allows symbolic links only with Developer Mode on or as administrator;"
            if sys.platform == "win32" else "")


# ------------------------------------------------------------------------------------ files
@contextmanager
def file_errors(what: str) -> Iterator[None]:
    """An ``OSError`` (a folder that cannot be created, a file in the way, no permission) becomes an
    ``InstallError`` naming the path, so the command says it in one line."""
    try:
        yield
    except InstallError:
        raise
    except OSError as e:
        where = e.filename if e.filename is not None else ""
        also = f" → {e.filename2}" if getattr(e, "filename2", None) else ""
        reason = e.strerror or str(e)
        raise InstallError(f"cannot {what}: {where}{also}: {reason}" if where else f"cannot {what}: {reason}") from e


def check_writable_file(path: Path, what: str) -> None:
    """Raise ``InstallError`` unless ``path`` can be written: a regular file (or nothing yet) whose
    nearest existing folder above it is a writable folder. Checked before anything changes, so an
    install never stops halfway for want of it."""
    if path.exists() and not path.is_file():
        raise InstallError(f"cannot write {what} {path}: it is not a regular file")
    if path.is_file() and not os.access(path, os.W_OK):
        raise InstallError(f"cannot write {what} {path}: permission denied")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InstallError(f"cannot write {what} {path}: {parent} is a file, not a folder")
    if not path.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise InstallError(f"cannot write {what} {path}: {parent} is not writable")


def remove(path: Path) -> bool:
    """Remove a file, a link (not what it points to) or a folder; whether there was one."""
    if path.is_symlink() or path.is_file():
        path.unlink()
        return True
    if path.exists():
        shutil.rmtree(path)
        return True
    return False


def replace_file(src: Path, dest: Path) -> None:
    """Copy ``src`` over ``dest`` in one rename: ``dest`` is never half written."""
    tmp = dest.with_name(f".{dest.name}.new")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


# ------------------------------------------------------------------------------------ stage, then swap in
class Staging:
    """Folders and links built in ``parent`` beside the ones they replace, and swapped in when complete.

    ``with Staging(parent, name) as staging``: clears what an earlier run killed midway left, makes
    ``parent``, and on leaving removes whatever was staged and not swapped in. File-system errors are
    ``OSError``, for the host to put in its own words."""

    def __init__(self, parent: Path, name: str) -> None:
        self.parent, self.name = Path(parent), name
        self._staged: list[Path] = []

    def __enter__(self) -> Staging:
        self.parent.mkdir(parents=True, exist_ok=True)
        # what a run killed midway left: its stage goes; an earlier install moved aside comes back if nothing
        # took its place (killed between the two renames of swap_in), else goes too
        for old in self.parent.glob(f".{self.name}*.old"):
            dest = self.parent / old.name[1:-len(".old")]
            if dest.exists() or dest.is_symlink():
                remove(old)
            else:
                old.rename(dest)
        for pattern in (f".{self.name}.installing*", f".{self.name}-new-*", f".{self.name}-old-*"):
            for leftover in self.parent.glob(pattern):  # (the last two: the names earlier versions used)
                remove(leftover)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        for path in self._staged:
            remove(path)
        self._staged.clear()

    def path(self, suffix: str = "") -> Path:
        """A free hidden name beside the destination for something staged (e.g. a link), removed on leaving
        unless swapped in."""
        path = self.parent / f".{self.name}.installing{suffix}"
        if path in self._staged:
            raise ValueError(f"{path} is staged already")
        self._staged.append(path)
        return path

    def folder(self, suffix: str = "") -> Path:
        """A new empty folder to build a replacement in."""
        path = self.path(suffix)
        path.mkdir()
        return path

    def swap_in(self, staged: Path, dest: Path) -> None:
        """Put ``staged`` in place of ``dest`` (both in ``parent``). What was there (a folder, or a link) is moved
        aside and removed only once the new one is in place; if the move fails it is put back and the error
        raised."""
        old = self.parent / f".{dest.name}.old"
        moved_aside = dest.exists() or dest.is_symlink()
        if moved_aside:
            remove(old)
            dest.rename(old)
        try:
            staged.rename(dest)
        except OSError:
            if moved_aside:
                try:
                    old.rename(dest)
                except OSError:
                    pass  # keep it under the hidden name (the next run puts it back) rather than lose it
            raise
        self._staged.remove(staged)
        if moved_aside:
            remove(old)


# ------------------------------------------------------------------------------------ what every stage holds
def copy_sources(folder: Path, client: Path, dest: Path, client_dest: str,
                 ignore: Callable[[str, list[str]], set[str]] = IGNORE) -> None:
    """Copy the plug-in ``folder`` into the staged ``dest`` and the client package to ``dest/client_dest``."""
    shutil.copytree(folder, dest, ignore=ignore, dirs_exist_ok=True)
    shutil.copytree(client, dest / client_dest, ignore=IGNORE)


def finish_stage(stage: Path, report: InstallReport, target: Target | None, *,
                 wheel_dir: str | os.PathLike | None, download: bool, log: Callable[[str], None]) -> None:
    """Vendor pyzmq and msgpack for ``target`` (None: nothing) into ``stage/vendor`` and write the record of
    the install, filling ``report.vendored``."""
    if target is not None:
        try:
            out = vendor(target, stage / "vendor", wheel_dir=Path(wheel_dir) if wheel_dir else None,
                         download=download, log=log)
        except WheelError as e:
            raise InstallError(str(e)) from e
        report.vendored = vendored_wheels(out)
    (stage / RECORD).write_text(json.dumps({
        "installed": datetime.datetime.now().isoformat(timespec="seconds"),
        "python": report.python_version or None, "python_found_in": report.python_source or None,
        "vendor": target.key if target else None, "linked": report.linked, "wheels": report.vendored,
        "backend_command": report.backend_command}, indent=2) + "\n", encoding="utf-8")
