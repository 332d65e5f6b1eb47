"""Installing the GIMP 3 plug-in: ``anycost install gimp [--plug-ins-dir DIR] [--link]`` / ``anycost uninstall gimp``.

What goes where (``<plug-ins>`` is GIMP's user plug-ins folder, e.g. ``~/.config/GIMP/3.0/plug-ins``)::

    <plug-ins>/anycost_face_edit/anycost_face_edit.py    the plug-in, executable
    <plug-ins>/anycost_face_edit/face_edit_*.py          its modules
    <plug-ins>/anycost_face_edit/anycost_client/         the client package
    <plug-ins>/anycost_face_edit/vendor/cpXY-PLATFORM/   pyzmq + msgpack, where GIMP bundles its Python

GIMP 3 registers a Python plug-in only as ``NAME/NAME.py`` with the folder named like the file and
the file executable. The plug-in runs under GIMP's Python, which cannot see this environment, so the
client package is copied beside it. Linux distributions' GIMP runs plug-ins with the system
``python3`` (pyzmq and msgpack come from the distribution: ``python3-zmq``, ``python3-msgpack``); the
Windows and macOS builds bundle their own Python, for which pyzmq and msgpack wheels are vendored.
With ``link`` (development) the folder is real but its files link to the sources, so ``vendor/`` stays
out of the checkout.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .sources import PLUGIN, PluginSources, plugin_sources
from .staging import (
    InstallError,
    InstallReport,
    Staging,
    copy_sources,
    default_backend_command,
    finish_stage,
    links_hint,
    save_backend_command,
)
from .wheels import Target, WheelError, host_target

GIMP_VERSION_DIR = "3.0"
EXECUTABLE = stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH


@dataclass(kw_only=True)
class GimpInstallReport(InstallReport):
    gimp_python: GimpPython | None = None  # the Python GIMP runs the plug-in with, where it was checked


def sources() -> PluginSources:
    """The plug-in folder and the client package: from a checkout, or where the wheel put them."""
    return plugin_sources("gimp", "the GIMP plug-in", f"{PLUGIN}.py")


# ------------------------------------------------------------------------------------ locations
def default_plug_ins_dir(platform: str = sys.platform, env: Mapping[str, str] | None = None,
                         home: Path | None = None) -> Path:
    """The user's GIMP 3 plug-ins folder (``$GIMP3_DIRECTORY`` overrides GIMP's whole user folder)."""
    env = os.environ if env is None else env
    home = Path.home() if home is None else home
    if env.get("GIMP3_DIRECTORY"):
        return Path(env["GIMP3_DIRECTORY"]) / "plug-ins"
    if platform == "win32":
        base = Path(env.get("APPDATA") or home / "AppData" / "Roaming")
    elif platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    return base / "GIMP" / GIMP_VERSION_DIR / "plug-ins"


def bundles_python(platform: str = sys.platform) -> bool:
    """Whether GIMP's official builds on this platform run plug-ins under their own Python."""
    return platform in ("win32", "darwin")


def _gimp_roots(platform: str) -> list[Path]:
    if platform == "win32":
        roots = [Path(os.environ[v]) / "GIMP 3" for v in ("ProgramFiles", "ProgramW6432") if os.environ.get(v)]
        if os.environ.get("LOCALAPPDATA"):
            roots.append(Path(os.environ["LOCALAPPDATA"]) / "Programs" / "GIMP 3")
        return roots
    if platform == "darwin":
        return [Path("/Applications/GIMP.app"), Path.home() / "Applications" / "GIMP.app"]
    return []


def detect_gimp_python(gimp: str | os.PathLike | None = None, platform: str = sys.platform) -> tuple[str, str] | None:
    """(Python version, where it was seen) of the Python bundled with the GIMP at ``gimp`` (its install
    folder, ``GIMP.app`` or binary), or with GIMP in the usual places; None when none is found."""
    roots = [Path(gimp).parent.parent if Path(gimp).is_file() else Path(gimp)] if gimp else _gimp_roots(platform)
    patterns = ("lib/python3.*", "bin/python3.*.exe", "bin/libpython3.*.dll", "Contents/Resources/lib/python3.*",
                "Contents/Frameworks/Python.framework/Versions/3.*", "Contents/Frameworks/libpython3.*.dylib")
    for root in roots:
        for pattern in patterns:
            versions = sorted({int(m.group(1)) for hit in glob.glob(str(root / pattern))
                               if (m := re.search(r"(?:python|Versions/)3\.?(\d{1,2})", hit.replace("\\", "/")))})
            if versions:
                return f"3.{versions[-1]}", str(root)
    return None


# ------------------------------------------------------------------------------------ GIMP's own Python
GIMP_TYPELIB_CHECK = "import gi; gi.require_version('Gimp', '3.0'); from gi.repository import Gimp"
DEPS_CHECK = ("import importlib, json\nmissing = []\nfor name in ('zmq', 'msgpack'):\n    try:\n"
              "        importlib.import_module(name)\n    except Exception:\n        missing.append(name)\n"
              "print(json.dumps(missing))")
PIP_NAMES = {"zmq": "pyzmq", "msgpack": "msgpack"}


def interpreter_dirs(plug_ins_dir: Path | None = None) -> list[Path]:
    """Where GIMP 3 reads its interpreter files (``*.interp``): its installation's
    ``lib[/ARCH]/gimp/3.0/interpreters`` (the usual prefixes) and the user's own folder beside ``plug-ins``."""
    found: list[Path] = []
    for prefix in ("/usr", "/usr/local", "/opt/gimp", "/opt/gimp-3.0"):
        for pattern in ("lib/gimp/3.0/interpreters", "lib/*/gimp/3.0/interpreters", "lib64/gimp/3.0/interpreters"):
            found += [Path(p) for p in sorted(glob.glob(os.path.join(prefix, pattern)))]
    if plug_ins_dir is not None:
        found.append(Path(plug_ins_dir).parent / "interpreters")
    return [d for d in found if d.is_dir()]


def read_interpreters(dirs: list[Path]) -> tuple[dict[str, str], dict[str, str], list[Path]]:
    """GIMP's interpreter files in ``dirs``: (program name → interpreter, file extension → program, the
    files read). Lines are ``NAME=PATH`` or binfmt-style ``:NAME:E::EXT::PROGRAM:``; later files win."""
    programs: dict[str, str] = {}
    extensions: dict[str, str] = {}
    files: list[Path] = []
    for d in dirs:
        for f in sorted(d.glob("*.interp")):
            try:
                text = f.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            files.append(f)
            for line in text.splitlines():
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                if line.startswith(":"):
                    fields = line.split(":")
                    if len(fields) >= 7 and fields[2] == "E" and fields[4]:
                        extensions[fields[4].lower()] = fields[6]
                elif "=" in line:
                    name, _, path = line.partition("=")
                    programs[name.strip()] = path.strip()
    return programs, extensions, files


def _plain_path() -> list[str]:
    """PATH as GIMP started from the desktop sees it: without this environment's own bin folder (a venv's)."""
    own = {os.path.realpath(os.path.join(sys.prefix, "bin")), os.path.realpath(os.path.dirname(sys.executable))}
    if os.environ.get("VIRTUAL_ENV"):
        own.add(os.path.realpath(os.path.join(os.environ["VIRTUAL_ENV"], "bin")))
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and os.path.realpath(d) not in own]
    return dirs + [d for d in ("/usr/local/bin", "/usr/bin", "/bin") if d not in dirs]


def _run_python(python: str, code: str, timeout: float = 60.0) -> subprocess.CompletedProcess | None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    try:
        return subprocess.run([python, "-I", "-c", code], env=env, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None


@dataclass
class GimpPython:
    """The Python GIMP runs this plug-in with, as far as the installer can tell."""

    python: str | None  # None: not found, so nothing could be checked
    how: str  # how it was found, or why it was not
    missing: list[str] | None = None  # modules it lacks (None: not checked)


def find_gimp_python(plug_ins_dir: Path | None = None, *, dirs: list[Path] | None = None,
                     path: list[str] | None = None) -> GimpPython:
    """The interpreter GIMP runs ``anycost_face_edit.py`` with: the one its interpreter files register for
    ``.py`` files or for ``python3`` (the plug-in's ``#!/usr/bin/env python3``), else the ``python3`` GIMP's
    PATH gives, which must load GIMP 3's GObject introspection (``gi`` with the ``Gimp 3.0`` typelib) to run
    any Python plug-in. ``dirs``: the interpreter folders (default ``interpreter_dirs``); ``path``: the
    folders searched for ``python3`` (default PATH without this environment's own)."""
    programs, extensions, files = read_interpreters(interpreter_dirs(plug_ins_dir) if dirs is None else dirs)
    program = extensions.get("py") or "python3"
    registered = programs.get(program) or programs.get(os.path.basename(program))
    if registered is None and os.path.isabs(program):
        registered = program
    if registered:
        where = ", ".join(str(f) for f in files)
        return GimpPython(registered, f"registered in GIMP's interpreter files ({where})")
    tried: list[str] = []
    seen_real: set[str] = set()
    for folder in (_plain_path() if path is None else path):
        candidate = os.path.join(folder, "python3")
        if not os.access(candidate, os.X_OK) or os.path.realpath(candidate) in seen_real:
            continue
        seen_real.add(os.path.realpath(candidate))
        tried.append(candidate)
        done = _run_python(candidate, GIMP_TYPELIB_CHECK)
        if done is not None and done.returncode == 0:
            return GimpPython(candidate, "the python3 on PATH that loads GIMP 3's Python bindings (gi, Gimp 3.0)")
    seen = f" (tried {', '.join(tried)})" if tried else ""
    return GimpPython(None, "no interpreter file of GIMP registers a Python, and no python3 here loads GIMP 3's "
                            f"Python bindings (gi with the Gimp 3.0 typelib){seen}")


def check_gimp_python(found: GimpPython) -> GimpPython:
    """``found`` with the modules the plug-in needs that its Python cannot import."""
    if found.python is None:
        return found
    done = _run_python(found.python, DEPS_CHECK)
    if done is None or done.returncode != 0:
        return GimpPython(found.python, f"{found.how}; it did not run", None)
    try:
        missing = [str(m) for m in json.loads(done.stdout.strip().splitlines()[-1])]
    except (ValueError, IndexError):
        return GimpPython(found.python, f"{found.how}; it did not say what it can import", None)
    return GimpPython(found.python, found.how, missing)


def gimp_python_notes(found: GimpPython, plug_ins_dir: Path) -> list[str]:
    """What to tell the user about GIMP's Python and pyzmq/msgpack: the check's result, or that it could
    not be made and what to check by hand."""
    if "/.var/app/org.gimp.GIMP/" in str(plug_ins_dir).replace("\\", "/") + "/":
        return ["the Flatpak GIMP runs plug-ins with the Python inside its sandbox, which cannot be checked from "
                "here: re-run with --vendor --python-version 3.X (GIMP's Python-Fu console shows the version)"]
    if found.python is None:
        return [f"could not check GIMP's Python for pyzmq and msgpack: {found.how}. Check it by hand: GIMP's "
                "Python-Fu console (Filters ▸ Development ▸ Python-Fu ▸ Console) must 'import zmq, msgpack'"]
    if found.missing is None:
        return [f"could not check GIMP's Python {found.python} ({found.how}) for pyzmq and msgpack"]
    if not found.missing:
        return []
    names = " and ".join(PIP_NAMES[m] for m in found.missing)
    return [f"GIMP runs plug-ins with {found.python} ({found.how}), which cannot import {names}: install them "
            "for it (Debian/Ubuntu: apt install python3-zmq python3-msgpack; Fedora: dnf install python3-zmq "
            "python3-msgpack), or re-run with --vendor --python-version X.Y for a GIMP with its own Python "
            "(Flatpak, AppImage)"]


# ------------------------------------------------------------------------------------ install
def _build_plugin(dest: Path, src: PluginSources, link: bool) -> list[str]:
    """Fill the new, empty folder ``dest`` with the plug-in and the client package: copies, or for ``link``
    symbolic links to the sources (the main file is copied when the source is not executable, as GIMP
    needs it executable). Returns notes for the user."""
    main = f"{PLUGIN}.py"
    if not link:
        copy_sources(src.folder, src.client, dest, "anycost_client")
        (dest / main).chmod((dest / main).stat().st_mode | EXECUTABLE)
        return []
    notes = []
    try:
        for item in sorted(src.folder.iterdir()):
            if item.name == "__pycache__" or item.name.endswith((".pyc", ".pyo")):
                continue
            if item.name == main and not os.access(item, os.X_OK):
                shutil.copy2(item, dest / main)
                (dest / main).chmod((dest / main).stat().st_mode | EXECUTABLE)
                notes.append(f"{item} is not executable, so it was copied rather than linked: re-run the install "
                             f"after changing it, or make it executable (chmod +x) and re-run once")
                continue
            (dest / item.name).symlink_to(item.resolve(), target_is_directory=item.is_dir())
        (dest / "anycost_client").symlink_to(src.client.resolve(), target_is_directory=True)
    except OSError as e:
        raise InstallError(f"cannot link the plug-in's sources into {dest.parent}: {e}.{links_hint()} install "
                           "without --link to copy them instead") from e
    return notes


def install(plug_ins_dir: str | os.PathLike | None = None, *, link: bool = False, vendor_wheels: bool | None = None,
            python_version: str | None = None, platform: str | None = None, gimp: str | os.PathLike | None = None,
            wheel_dir: str | os.PathLike | None = None, download: bool = True,
            backend_command: list[str] | None = None, log: Callable[[str], None] = print) -> GimpInstallReport:
    """Copy (or with ``link``, link) the plug-in and the client package into ``plug_ins_dir/anycost_face_edit``
    (built beside it and swapped in when complete, ``staging``: a failed install leaves the earlier one as it
    was; a folder there that is not this plug-in is refused) and record the backend command the plug-in
    starts when no backend runs.

    ``vendor_wheels`` (default: where GIMP bundles its Python, i.e. Windows and macOS) unpacks pyzmq
    and msgpack for ``python_version`` (default: detected from the GIMP at ``gimp`` or in the usual
    places) on ``platform`` (a wheel platform key such as ``win_amd64``; default: this machine's). Where
    nothing is vendored, the options that only choose wheels are refused. Every refusal comes before
    anything on disk changes."""
    src = sources()
    target_dir = Path(plug_ins_dir) if plug_ins_dir is not None else default_plug_ins_dir()
    dest = target_dir / PLUGIN
    report = GimpInstallReport(dest, linked=link)
    try:  # every check before anything on disk changes
        target = _vendor_target(report, vendor_wheels, python_version, platform, gimp)
    except WheelError as e:
        raise InstallError(f"cannot choose the wheels to vendor: {e}") from e
    if target is None:
        _refuse_unused_vendor_options(python_version=python_version, platform=platform, gimp=gimp,
                                      wheel_dir=wheel_dir, offline=not download)
    if not dest.is_symlink() and dest.exists() and not _is_installed_plugin(dest):
        raise InstallError(f"{dest} exists and does not look like this plug-in (neither {PLUGIN}.py nor "
                           "INSTALL.json in it); not replacing it: move it away, or install into another "
                           "--plug-ins-dir")

    report.backend_command = list(backend_command or default_backend_command())
    try:
        with Staging(target_dir, PLUGIN) as staging:
            stage = staging.folder()
            report.notes += _build_plugin(stage, src, link)
            finish_stage(stage, report, target, wheel_dir=wheel_dir, download=download, log=log)
            staging.swap_in(stage, dest)
    except OSError as e:
        raise InstallError(f"cannot install the GIMP plug-in into {target_dir}: {e}") from e

    save_backend_command(report)
    if target is None and sys.platform.startswith("linux"):
        found = check_gimp_python(find_gimp_python(target_dir))
        report.gimp_python = found
        report.notes += gimp_python_notes(found, target_dir)
    return report


def _vendor_target(report: GimpInstallReport, vendor_wheels: bool | None, python_version: str | None,
                   platform: str | None, gimp: str | os.PathLike | None) -> Target | None:
    """The wheels to vendor (None: none), noting GIMP's Python version and where it came from in ``report``;
    raises WheelError for a malformed version or an unknown platform."""
    wheel_platform = platform or host_target().platform
    if vendor_wheels is None:
        vendor_wheels = bundles_python(sys.platform) if platform is None else not wheel_platform.startswith("linux")
    if not vendor_wheels:
        return None
    report.python_version, report.python_source = python_version or "", "--python-version"
    if not python_version:
        found = detect_gimp_python(gimp)
        if found is None:
            raise InstallError("cannot find GIMP's bundled Python to vendor pyzmq and msgpack for it: no GIMP 3 "
                               f"found{' at ' + str(gimp) if gimp else ' in the usual places'}. Pass --gimp "
                               "with GIMP's install folder, or --python-version (GIMP's Python-Fu console "
                               "shows it: Filters ▸ Development ▸ Python-Fu ▸ Console)")
        report.python_version, report.python_source = found
    return Target(report.python_version, wheel_platform)


def _refuse_unused_vendor_options(**given: object) -> None:
    """Options that only choose the wheels to vendor are errors when nothing is vendored: a typo'd or
    misplaced option must not pass silently."""
    used = [f"--{name.replace('_', '-')}" + ("" if value is True else f" {value}")
            for name, value in given.items() if value not in (None, False, "")]
    if used:
        raise InstallError(f"{' '.join(used)}: {'these options choose' if len(used) > 1 else 'this option chooses'} "
                           "the wheels to vendor, and nothing is vendored here; add --vendor for a GIMP with its "
                           "own Python (Flatpak, AppImage), or leave them out")


def _is_installed_plugin(folder: Path) -> bool:
    """Whether ``folder`` holds an install of this plug-in (possibly a damaged one), so it may be replaced or
    removed; anything else in its place belongs to someone else."""
    return (folder / f"{PLUGIN}.py").is_file() or (folder / "INSTALL.json").is_file()


def uninstall(plug_ins_dir: str | os.PathLike | None = None) -> list[Path]:
    """Remove the installed plug-in folder; returns what was removed."""
    dest = (Path(plug_ins_dir) if plug_ins_dir is not None else default_plug_ins_dir()) / PLUGIN
    if dest.is_symlink():  # a folder linked in by hand: remove the link, not what it points to
        dest.unlink()
        return [dest]
    if not dest.exists():
        return []
    if not _is_installed_plugin(dest):
        raise InstallError(f"{dest} does not look like this plug-in (neither {PLUGIN}.py nor INSTALL.json in it); "
                           "not removing it")
    try:
        shutil.rmtree(dest)
    except OSError as e:
        raise InstallError(f"cannot remove {dest}: {e}") from e
    return [dest]
