"""Installing the Krita plugin, and the zip for Krita's "Import Python Plugin from File…".

What goes where (``<res>`` is Krita's resource folder, e.g. ``~/.local/share/krita``)::

    <res>/pykrita/anycost_face_edit.desktop
    <res>/pykrita/anycost_face_edit/               the plugin (plugin/krita/anycost_face_edit)
    <res>/pykrita/anycost_face_edit/lib/anycost_client/     the client package
    <res>/pykrita/anycost_face_edit/vendor/cpXY-PLATFORM/   pyzmq + msgpack for Krita's Python
    <res>/pykrita/anycost_face_edit/anycost_face_edit.action  the action's text and shortcut
    kritarc: [python] enable_anycost_face_edit=true

With ``--link`` (development) the plugin folder is a link to the checkout's, and what must not go
into the checkout sits beside it, where the plugin also looks (``vendor_paths``)::

    <res>/pykrita/anycost_face_edit -> <checkout>/plugin/krita/anycost_face_edit
    <res>/pykrita/anycost_face_edit.linked/lib/anycost_client -> <checkout>/plugin/anycost_client
    <res>/pykrita/anycost_face_edit.linked/vendor/cpXY-PLATFORM/

The client package lives inside the plugin folder because Krita's importer copies only the plugin's
own folder (plus its ``.desktop`` and ``.action`` files) out of a zip. Krita reads ``.action`` files
from plugin folders and from ``<res>/actions``; one copy only, or it warns about duplicates: the
zip carries the action file at its top level (the importer puts it in ``<res>/actions``), the
installed folder carries it inside.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .sources import PLUGIN, PluginSources, plugin_sources
from .staging import (
    InstallError,
    InstallReport,
    Staging,
    check_writable_file,
    copy_sources,
    default_backend_command,
    file_errors,
    finish_stage,
    links_hint,
    remove,
    replace_file,
    save_backend_command,
)
from .wheels import PLATFORMS, Target, WheelError, host_target, vendor

SETTINGS_GROUP = PLUGIN  # the plugin's own settings in kritarc (plugin/krita/anycost_face_edit/settings.py)
# Pythons Krita runs: official builds bundle 3.8 (5.0, 5.1), 3.10 (5.2) and 3.13 (later); distributions use theirs
KRITA_BUNDLED_PYTHONS = ("3.8", "3.9", "3.10", "3.11", "3.12", "3.13")
PACKAGE_PLATFORMS = ("win_amd64", "macosx_x86_64", "macosx_arm64", "linux_x86_64")
LINKED_SUFFIX = ".linked"  # the folder beside a linked plugin (vendor_paths.LINKED_SUFFIX)


def sources() -> PluginSources:
    """The plugin folder, its .desktop file and the client package: from a checkout, or where the wheel put them."""
    return plugin_sources("krita", "the Krita plugin", "__init__.py", desktop=True)



# ------------------------------------------------------------------------------------ locations
def default_resource_dir() -> Path:
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming") / "krita"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "krita"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "krita"


def default_kritarc() -> Path:
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "kritarc"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Preferences" / "kritarc"
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kritarc"


# ------------------------------------------------------------------------------------ Krita's Python
def _python_in(data: bytes | str) -> str | None:
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    found = re.findall(r"(?:libpython|python)3\.?(\d{1,2})(?:\.so|\.dll|\.dylib|/|\b)", text)
    minors = sorted({int(m) for m in found if 6 <= int(m) <= 30})
    return f"3.{minors[-1]}" if minors else None


# Files that only Krita's own Python support ships; a folder holding one of them is a Krita. The version
# comes from the file (the libpython the plugin library links to) or from its name.
KRITA_EVIDENCE = (
    "lib/*/kritaplugins/kritapykrita.so", "lib/kritaplugins/kritapykrita.so", "lib64/kritaplugins/kritapykrita.so",
    "lib/*/kritaplugins/kritapykrita.dylib", "Contents/PlugIns/kritapykrita.so",
    "Contents/Frameworks/Python.framework/Versions/3.*",  # krita.app bundles its Python framework
    "bin/python3*.dll", "python/python3*.dll", "python/python3*.zip",  # Windows: Krita's embedded Python
)
# Only for a folder the user named with --krita: a Python library folder says nothing about Krita on a
# shared prefix such as /usr, but inside an unpacked AppImage or a custom build it is Krita's.
EXPLICIT_ONLY = ("lib/python3.*",)


def _version_of(path: Path) -> str | None:
    if path.is_file() and path.suffix in (".so", ".dylib"):
        try:
            return _python_in(path.read_bytes())
        except OSError:
            return None
    if "Versions" in path.parts:  # macOS: …/Python.framework/Versions/3.10
        return path.name if re.fullmatch(r"3\.\d{1,2}", path.name) else None
    return _python_in(path.name)


def _krita_roots() -> list[Path]:
    """Where a Krita may be installed: the prefix of ``krita`` on PATH, then the platform's usual places."""
    roots: list[Path] = []
    exe = shutil.which("krita")
    if exe:
        roots.append(Path(os.path.realpath(exe)).parent.parent)
    if sys.platform == "win32":
        for env in ("ProgramFiles", "ProgramW6432"):
            if os.environ.get(env):
                roots.append(Path(os.environ[env]) / "Krita (x64)")
    elif sys.platform == "darwin":
        roots.append(Path("/Applications/krita.app"))
    else:
        roots.append(Path("/usr"))
    return list(dict.fromkeys(roots))


def detect_krita_python(krita: str | os.PathLike | None = None) -> tuple[str, str] | None:
    """(Python version, the file it was read from) of the Krita at ``krita`` (binary, install folder or
    .app), or of the Krita on PATH / in the usual places; None when no Krita's Python is found.

    Without ``krita``, a folder counts only with evidence of Krita's own Python (its plugin library or
    bundled Python), so a system Python on a machine without Krita is never taken for Krita's."""
    patterns: tuple[str, ...]
    if krita:
        p = Path(krita)
        roots, patterns = [p.parent.parent if p.is_file() else p], KRITA_EVIDENCE + EXPLICIT_ONLY
    else:
        roots, patterns = _krita_roots(), KRITA_EVIDENCE
    for root in roots:
        for pat in patterns:
            for hit in sorted(glob.glob(str(root / pat)), reverse=True):  # python311.dll before python3.dll
                version = _version_of(Path(hit))
                if version:
                    return version, hit
    return None


# ------------------------------------------------------------------------------------ kritarc
def set_ini_value(path: Path, group: str, key: str, value: str | None) -> None:
    """Set (or with ``value=None`` remove) ``key`` in ``[group]`` of a KConfig file, keeping every other
    line as it is (configparser would rewrite Krita's own entries)."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    header = f"[{group}]"
    start = next((i for i, ln in enumerate(lines) if ln.strip() == header), None)
    entry = None if value is None else f"{key}={value}"
    if start is None:
        if entry is None:
            return
        if lines and lines[-1].strip():
            lines.append("")
        lines += [header, entry]
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))
        idx = next((i for i in range(start + 1, end) if lines[i].split("=", 1)[0].strip() == key), None)
        if idx is not None:
            if entry is None:
                del lines[idx]
            else:
                lines[idx] = entry
        elif entry is not None:
            ins = end
            while ins > start + 1 and not lines[ins - 1].strip():
                ins -= 1
            lines.insert(ins, entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def remove_ini_group(path: Path, group: str) -> bool:
    """Remove ``[group]`` and its entries from a KConfig file; whether it was there."""
    if not path.exists():
        return False
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.strip() == f"[{group}]"), None)
    if start is None:
        return False
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))
    del lines[start:end]
    path.write_text("\n".join(lines).strip("\n") + "\n", encoding="utf-8")
    return True


def get_ini_value(path: Path, group: str, key: str) -> str | None:
    if not path.exists():
        return None
    current = None
    for ln in path.read_text(encoding="utf-8").splitlines():
        s = ln.strip()
        if s.startswith("[") and s.endswith("]"):
            current = s[1:-1]
        elif current == group and "=" in s and s.split("=", 1)[0].strip() == key:
            return s.split("=", 1)[1].strip()
    return None


# ------------------------------------------------------------------------------------ install
@dataclass(kw_only=True)
class KritaInstallReport(InstallReport):
    desktop: Path
    action: Path
    kritarc: Path
    warnings: list[str] = field(default_factory=list)  # what in this shell would break Krita started from it



def venv_python_on_path(path: str | None = None) -> str | None:
    """The first ``python3`` on ``PATH`` when it belongs to a virtual environment (a ``pyvenv.cfg`` above its
    folder), else None. Krita's embedded Python (Debian's Krita 5.1.5, checked) takes its prefix from
    the ``python3`` it finds there: in a virtual environment it cannot import PyQt5."""
    exe = shutil.which("python3", path=os.environ.get("PATH", "") if path is None else path)
    if exe and (Path(exe).parent.parent / "pyvenv.cfg").is_file():  # the link itself, not what it points to
        return exe
    return None


def environment_warnings(environ: dict[str, str] | None = None) -> list[str]:
    """What in this shell would break Krita if Krita were started from it: an activated virtual
    environment (its ``python3`` first on ``PATH``: Krita's own Python then runs in it, cannot import
    PyQt5, and no Python plugin loads), or ``PYTHONHOME``."""
    env = os.environ if environ is None else environ
    out = []
    venv_python = venv_python_on_path(env.get("PATH", ""))
    if env.get("VIRTUAL_ENV") or venv_python:
        found = [f"VIRTUAL_ENV={env['VIRTUAL_ENV']}"] if env.get("VIRTUAL_ENV") else []
        if venv_python:
            found.append(f"its python3 first on PATH: {venv_python}")
        out.append(f"a virtual environment is activated in this shell ({'; '.join(found)}): start Krita from "
                   "a shell without it (run 'deactivate' first) or from the desktop menu. Krita started from "
                   "this shell runs its Python in this environment, which lacks PyQt5: no Python plugin loads "
                   "('No module named PyQt5'). The plugin does not need it: the recorded backend command runs "
                   "this environment's Python by its full path.")
    if env.get("PYTHONHOME"):
        out.append(f"PYTHONHOME is set ({env['PYTHONHOME']}): Krita started from this shell would look for its "
                   "Python there; unset it before starting Krita.")
    return out




def _symlink(link: Path, target: Path) -> Path:
    try:
        link.symlink_to(target.resolve(), target_is_directory=True)
    except OSError as e:
        raise InstallError(f"cannot link {link} to {target}: {e}.{links_hint()} install without --link to copy the "
                           "plugin instead") from e
    return link


def _swap_in(staging: Staging, staged: Path, dest: Path) -> None:
    try:
        staging.swap_in(staged, dest)
    except OSError as e:
        raise InstallError(f"cannot put the new plugin folder in place of {dest}: {e} (is a program using it? "
                           "close Krita and try again)") from e


def install(pykrita_dir: str | os.PathLike | None = None, *, link: bool = False, python_version: str | None = None,
            platform: str | None = None, wheel_dir: str | os.PathLike | None = None, krita: str | None = None,
            kritarc: str | os.PathLike | None = None, backend_command: list[str] | None = None,
            vendor_wheels: bool = True, download: bool = True, log=print) -> KritaInstallReport:
    """Install (or reinstall) the plugin. Everything is built in a folder beside the destination and
    swapped in only when complete (``staging``): a failed reinstall leaves the previous install as it
    was, and ``kritarc`` is touched only after success."""
    src = sources()
    pykrita = Path(pykrita_dir) if pykrita_dir else default_resource_dir() / "pykrita"
    rc = Path(kritarc) if kritarc else default_kritarc()
    source = "--python-version"
    if python_version is None:
        found = detect_krita_python(krita)
        if found is None:
            raise InstallError("cannot find Krita's Python: no Krita found"
                               f"{' at ' + str(krita) if krita else ' on PATH or in the usual places'}. "
                               "Pass --python-version (Help ▸ About Krita ▸ System Information, or 3.10 for "
                               "official Krita 5.2 builds, 3.8 for 5.0–5.1) and --platform if Krita runs elsewhere")
        python_version, source = found
    try:
        target = Target(python_version, platform or host_target().platform)
    except WheelError as e:
        raise InstallError(str(e)) from e

    check_writable_file(rc, "Krita's settings file")  # before anything is swapped in
    dest = pykrita / PLUGIN
    report = KritaInstallReport(plugin_dir=dest, desktop=pykrita / f"{PLUGIN}.desktop",
                                action=dest / f"{PLUGIN}.action", kritarc=rc, python_version=python_version,
                                python_source=source, linked=link,
                                backend_command=list(backend_command or default_backend_command()))
    with file_errors("install the plugin"):
        _install(src, pykrita, report, target if vendor_wheels else None, wheel_dir=wheel_dir, download=download,
                 log=log)
    save_backend_command(report)
    report.warnings = environment_warnings()
    return report


def _install(src: PluginSources, pykrita: Path, report: KritaInstallReport, target: Target | None, *,
             wheel_dir: str | os.PathLike | None, download: bool, log) -> None:
    """The plugin folder (or, linked, the folder beside the link) with the client package, the vendored
    wheels and INSTALL.json, swapped in; then the .desktop file and kritarc."""
    sidecar = pykrita / f"{PLUGIN}{LINKED_SUFFIX}"
    with Staging(pykrita, PLUGIN) as staging:
        stage = staging.folder()
        if report.linked:  # the folder itself is a link (new files show up); the rest goes beside it
            staged_link = _symlink(staging.path("-link"), src.folder)  # first: refused links change nothing
            (stage / "lib").mkdir()
            _symlink(stage / "lib" / "anycost_client", src.client)
        else:
            copy_sources(src.folder, src.client, stage, "lib/anycost_client")
        finish_stage(stage, report, target, wheel_dir=wheel_dir, download=download, log=log)
        if report.linked:
            _swap_in(staging, stage, sidecar)
            _swap_in(staging, staged_link, report.plugin_dir)
        else:
            _swap_in(staging, stage, report.plugin_dir)
            remove(sidecar)  # of an earlier linked install
    assert src.desktop is not None
    replace_file(src.desktop, report.desktop)
    stale = pykrita.parent / "actions" / f"{PLUGIN}.action"  # from an earlier zip import: one copy only
    if stale.exists():
        stale.unlink()
    set_ini_value(report.kritarc, "python", f"enable_{PLUGIN}", "true")


def uninstall(pykrita_dir: str | os.PathLike | None = None, *, kritarc: str | os.PathLike | None = None,
              purge: bool = False) -> list[Path]:
    """Remove what ``install`` put in place, and with ``purge`` the plugin's settings in ``kritarc`` too
    (group ``[anycost_face_edit]``); returns what was changed."""
    pykrita = Path(pykrita_dir) if pykrita_dir else default_resource_dir() / "pykrita"
    rc = Path(kritarc) if kritarc else default_kritarc()
    with file_errors("uninstall the plugin"):
        return _uninstall(pykrita, rc, purge)


def _uninstall(pykrita: Path, rc: Path, purge: bool) -> list[Path]:
    removed = [p for p in (pykrita / PLUGIN, pykrita / f"{PLUGIN}{LINKED_SUFFIX}") if remove(p)]
    for p in (pykrita / f"{PLUGIN}.desktop", pykrita.parent / "actions" / f"{PLUGIN}.action"):
        if p.exists():
            p.unlink()
            removed.append(p)
    changed = False
    if get_ini_value(rc, "python", f"enable_{PLUGIN}") is not None:
        set_ini_value(rc, "python", f"enable_{PLUGIN}", None)
        changed = True
    if purge and remove_ini_group(rc, SETTINGS_GROUP):
        changed = True
    if changed:
        removed.append(rc)
    return removed


# ------------------------------------------------------------------------------------ package
def package(output: str | os.PathLike, *, python_versions: tuple[str, ...] = KRITA_BUNDLED_PYTHONS,
            platforms: tuple[str, ...] = PACKAGE_PLATFORMS, wheel_dir: str | os.PathLike | None = None,
            download: bool = True, log=print) -> Path:
    """The zip for Tools ▸ Scripts ▸ Import Python Plugin from File…: the ``.desktop`` file, the plugin
    folder with the client package and vendored wheels for every (Python, platform) pair, and the
    ``.action`` file (the importer copies it to Krita's actions folder)."""
    src = sources()
    assert src.desktop is not None
    for plat in platforms:
        if plat not in PLATFORMS:
            raise InstallError(f"unknown platform {plat!r}; choose from {', '.join(PLATFORMS)}")
    out = Path(output)
    with file_errors("write the package"), tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / PLUGIN
        copy_sources(src.folder, src.client, stage, "lib/anycost_client",
                     ignore=shutil.ignore_patterns("__pycache__", "*.pyc", f"{PLUGIN}.action"))
        try:
            for version in python_versions:
                for plat in platforms:
                    vendor(Target(version, plat), stage / "vendor", wheel_dir=Path(wheel_dir) if wheel_dir else None,
                           download=download, log=log)
        except WheelError as e:
            raise InstallError(str(e)) from e
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp_zip = out.with_name(out.name + ".part")
        with zipfile.ZipFile(tmp_zip, "w", zipfile.ZIP_DEFLATED) as z:
            z.write(src.desktop, f"{PLUGIN}.desktop")
            z.write(src.folder / f"{PLUGIN}.action", f"{PLUGIN}.action")
            z.writestr(f"{PLUGIN}/", b"")  # Krita's importer looks for the folder's own entry
            for path in sorted(stage.rglob("*")):
                rel = path.relative_to(Path(tmp)).as_posix()
                if path.is_dir():
                    z.writestr(rel + "/", b"")
                else:
                    z.write(path, rel)
        os.replace(tmp_zip, out)
    return out
