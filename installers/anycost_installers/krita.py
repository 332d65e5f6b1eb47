"""Installing the Krita plugin, and the zip for Krita's "Import Python Plugin from File…".

What goes where (``<res>`` is Krita's resource folder, e.g. ``~/.local/share/krita``)::

    <res>/pykrita/anycost_face_edit.desktop
    <res>/pykrita/anycost_face_edit/               the plugin (plugin/krita/anycost_face_edit)
    <res>/pykrita/anycost_face_edit/lib/anycost_client/     the client package
    <res>/pykrita/anycost_face_edit/vendor/cpXY-PLATFORM/   pyzmq + msgpack for Krita's Python
    <res>/pykrita/anycost_face_edit/anycost_face_edit.action  the action's text and shortcut
    kritarc: [python] enable_anycost_face_edit=true

The client package lives inside the plugin folder because Krita's importer copies only the plugin's
own folder (plus its ``.desktop`` and ``.action`` files) out of a zip. Krita reads ``.action`` files
from plugin folders and from ``<res>/actions``; one copy only, or it warns about duplicates: the
zip carries the action file at its top level (the importer puts it in ``<res>/actions``), the
installed folder carries it inside.
"""

from __future__ import annotations

import datetime
import glob
import json
import os
import re
import shutil
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .sources import client_package, host_folder, missing
from .wheels import PLATFORMS, Target, WheelError, host_target, vendor

PLUGIN = "anycost_face_edit"
KRITA_BUNDLED_PYTHONS = ("3.10", "3.11", "3.12", "3.13")  # official builds (5.2: 3.10, later 3.13) and distros
PACKAGE_PLATFORMS = ("win_amd64", "macosx_x86_64", "macosx_arm64", "linux_x86_64")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")


class InstallError(Exception):
    """The plugin could not be installed; the message says what to do."""


def plugin_sources() -> tuple[Path, Path, Path]:
    """(plugin folder, .desktop file, client package): from a checkout, or where the wheel put them."""
    host = host_folder("krita")
    client = client_package()
    folder = host / PLUGIN if host else None
    desktop = host / f"{PLUGIN}.desktop" if host else None
    for name, p in (("the Krita plugin", folder), ("its .desktop file", desktop), ("the client package", client)):
        if p is None or not p.exists():
            raise InstallError(missing(name))
    return folder, desktop, client


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


def detect_krita_python(krita: str | os.PathLike | None = None) -> tuple[str, str] | None:
    """(Python version, where it was found) of the Krita at ``krita`` (binary, install folder or .app),
    or of the Krita on PATH / in the usual places; None when no Krita is found."""
    candidates: list[Path] = []
    if krita:
        p = Path(krita)
        candidates.append(p.parent.parent if p.is_file() else p)
    else:
        exe = shutil.which("krita")
        if exe:
            candidates.append(Path(os.path.realpath(exe)).parent.parent)
        if sys.platform == "win32":
            for env in ("ProgramFiles", "ProgramW6432"):
                if os.environ.get(env):
                    candidates.append(Path(os.environ[env]) / "Krita (x64)")
        elif sys.platform == "darwin":
            candidates.append(Path("/Applications/krita.app"))
        candidates.append(Path("/usr"))
    for root in candidates:
        patterns = [
            "lib/*/kritaplugins/kritapykrita.so", "lib/kritaplugins/kritapykrita.so",
            "lib64/kritaplugins/kritapykrita.so",
            "bin/python3*.dll", "lib/krita-python-libs", "Contents/Frameworks/Python.framework/Versions/3.*",
            "Contents/PlugIns/kritapykrita.so", "lib/python3.*",
        ]
        for pat in patterns:
            for hit in sorted(glob.glob(str(root / pat))):
                path = Path(hit)
                if path.is_file() and path.suffix == ".so":
                    try:
                        version = _python_in(path.read_bytes())
                    except OSError:
                        version = None
                elif "Versions" in hit:  # macOS: …/Python.framework/Versions/3.10
                    version = path.name if re.fullmatch(r"3\.\d{1,2}", path.name) else None
                else:
                    version = _python_in(path.name)
                if version:
                    return version, str(path)
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
@dataclass
class InstallReport:
    plugin_dir: Path
    desktop: Path
    action: Path
    kritarc: Path
    vendored: list[str] = field(default_factory=list)
    python_version: str = ""
    python_source: str = ""
    backend_command: list[str] = field(default_factory=list)
    linked: bool = False


def default_backend_command() -> list[str]:
    """The backend as installed next to this installer: this Python running ``anycost serve``."""
    return [sys.executable, "-m", "anycost", "serve"]


def _copy_plugin(dest: Path, link: bool) -> None:
    folder, _, client = plugin_sources()
    if dest.is_symlink() or dest.is_file():
        dest.unlink()
    elif dest.exists():
        shutil.rmtree(dest)
    if not link:
        shutil.copytree(folder, dest, ignore=IGNORE)
        shutil.copytree(client, dest / "lib" / "anycost_client", ignore=IGNORE)
        return
    # development: a real folder of links to the sources (vendor/ stays out of the checkout)
    dest.mkdir(parents=True)
    for src in folder.iterdir():
        if src.name != "__pycache__":
            (dest / src.name).symlink_to(src.resolve(), target_is_directory=src.is_dir())
    (dest / "lib").mkdir()
    (dest / "lib" / "anycost_client").symlink_to(client.resolve(), target_is_directory=True)


def install(pykrita_dir: str | os.PathLike | None = None, *, link: bool = False, python_version: str | None = None,
            platform: str | None = None, wheel_dir: str | os.PathLike | None = None, krita: str | None = None,
            kritarc: str | os.PathLike | None = None, backend_command: list[str] | None = None,
            vendor_wheels: bool = True, download: bool = True, log=print) -> InstallReport:
    folder, desktop_src, _ = plugin_sources()
    pykrita = Path(pykrita_dir) if pykrita_dir else default_resource_dir() / "pykrita"
    resources = pykrita.parent
    rc = Path(kritarc) if kritarc else default_kritarc()
    source = "--python-version"
    if python_version is None:
        found = detect_krita_python(krita)
        if found is None:
            raise InstallError("cannot find Krita's Python: no Krita found"
                               f"{' at ' + str(krita) if krita else ' on PATH or in the usual places'}. "
                               "Pass --python-version (Help ▸ About Krita ▸ Python, or 3.10 for official "
                               "Krita 5.2 builds) and --platform if Krita runs elsewhere")
        python_version, source = found
    target = Target(python_version, platform or host_target().platform)

    pykrita.mkdir(parents=True, exist_ok=True)
    dest = pykrita / PLUGIN
    _copy_plugin(dest, link)
    desktop = pykrita / f"{PLUGIN}.desktop"
    shutil.copyfile(desktop_src, desktop)
    action = dest / f"{PLUGIN}.action"
    stale = resources / "actions" / f"{PLUGIN}.action"  # from an earlier zip import: one copy only
    if stale.exists():
        stale.unlink()
    report = InstallReport(dest, desktop, action, rc, python_version=python_version, python_source=source,
                           linked=link)
    try:
        if vendor_wheels:
            out = vendor(target, dest / "vendor", wheel_dir=Path(wheel_dir) if wheel_dir else None,
                         download=download, log=log)
            report.vendored = sorted(p.name for p in out.iterdir())
    except WheelError as e:
        raise InstallError(str(e)) from e
    set_ini_value(rc, "python", f"enable_{PLUGIN}", "true")

    from anycost_client.backend_launcher import save_config

    report.backend_command = list(backend_command or default_backend_command())
    save_config({"backend_command": report.backend_command})
    (dest / "INSTALL.json").write_text(json.dumps({
        "installed": datetime.datetime.now().isoformat(timespec="seconds"), "python": python_version,
        "python_found_in": source, "vendor": target.key if vendor_wheels else None, "linked": link,
        "backend_command": report.backend_command}, indent=2) + "\n", encoding="utf-8")
    return report


def uninstall(pykrita_dir: str | os.PathLike | None = None, *, kritarc: str | os.PathLike | None = None) -> list[Path]:
    """Remove what ``install`` put in place; returns what was removed."""
    pykrita = Path(pykrita_dir) if pykrita_dir else default_resource_dir() / "pykrita"
    rc = Path(kritarc) if kritarc else default_kritarc()
    removed = []
    dest = pykrita / PLUGIN
    if dest.is_symlink() or dest.is_file():
        dest.unlink()
        removed.append(dest)
    elif dest.exists():
        shutil.rmtree(dest)
        removed.append(dest)
    for p in (pykrita / f"{PLUGIN}.desktop", pykrita.parent / "actions" / f"{PLUGIN}.action"):
        if p.exists():
            p.unlink()
            removed.append(p)
    if get_ini_value(rc, "python", f"enable_{PLUGIN}") is not None:
        set_ini_value(rc, "python", f"enable_{PLUGIN}", None)
        removed.append(rc)
    return removed


# ------------------------------------------------------------------------------------ package
def package(output: str | os.PathLike, *, python_versions: tuple[str, ...] = KRITA_BUNDLED_PYTHONS,
            platforms: tuple[str, ...] = PACKAGE_PLATFORMS, wheel_dir: str | os.PathLike | None = None,
            download: bool = True, log=print) -> Path:
    """The zip for Tools ▸ Scripts ▸ Import Python Plugin from File…: the ``.desktop`` file, the plugin
    folder with the client package and vendored wheels for every (Python, platform) pair, and the
    ``.action`` file (the importer copies it to Krita's actions folder)."""
    import tempfile

    folder, desktop_src, client = plugin_sources()
    for plat in platforms:
        if plat not in PLATFORMS:
            raise InstallError(f"unknown platform {plat!r}; choose from {', '.join(PLATFORMS)}")
    out = Path(output)
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / PLUGIN
        shutil.copytree(folder, stage, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", f"{PLUGIN}.action"))
        shutil.copytree(client, stage / "lib" / "anycost_client", ignore=IGNORE)
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
            z.write(desktop_src, f"{PLUGIN}.desktop")
            z.write(folder / f"{PLUGIN}.action", f"{PLUGIN}.action")
            z.writestr(f"{PLUGIN}/", b"")  # Krita's importer looks for the folder's own entry
            for path in sorted(stage.rglob("*")):
                rel = path.relative_to(Path(tmp)).as_posix()
                if path.is_dir():
                    z.writestr(rel + "/", b"")
                else:
                    z.write(path, rel)
        os.replace(tmp_zip, out)
    return out
