"""Vendoring pyzmq and msgpack for a host program's own Python.

Krita and GIMP bundle (or use) a Python that is not the backend's, often another version, on
another platform than the machine building a package. The plugin therefore carries its two binary
dependencies unpacked from wheels, one folder per target::

    vendor/cp310-win_amd64/zmq/…  vendor/cp310-win_amd64/msgpack/…  vendor/cp311-linux_x86_64/…

A target is a CPython version (``3.11``) and a platform key (``linux_x86_64``, ``linux_aarch64``,
``win_amd64``, ``macosx_x86_64``, ``macosx_arm64``). Wheels come from a local folder (offline) or are
fetched with ``pip download`` into a cache.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PACKAGES",
    "PLATFORMS",
    "Target",
    "WheelError",
    "cache_dir",
    "compatible",
    "download_wheels",
    "find_wheel",
    "host_target",
    "unpack_wheel",
    "vendor",
    "vendored_wheels",
]

PACKAGES = ("pyzmq", "msgpack")
IMPORT_NAMES = {"pyzmq": "zmq", "msgpack": "msgpack"}
WHEELS_RECORD = "WHEELS.txt"  # in each vendor folder: the wheels it was unpacked from
PLATFORMS = ("linux_x86_64", "linux_aarch64", "win_amd64", "macosx_x86_64", "macosx_arm64")

# pip's --platform values to ask for, best first, per platform key
PIP_PLATFORMS = {
    "linux_x86_64": ["manylinux_2_28_x86_64", "manylinux_2_26_x86_64", "manylinux_2_17_x86_64",
                     "manylinux2014_x86_64", "manylinux1_x86_64", "linux_x86_64"],
    "linux_aarch64": ["manylinux_2_28_aarch64", "manylinux_2_26_aarch64", "manylinux_2_17_aarch64",
                      "manylinux2014_aarch64", "linux_aarch64"],
    "win_amd64": ["win_amd64"],
    "win_arm64": ["win_arm64"],
    "macosx_x86_64": ["macosx_10_15_x86_64", "macosx_10_9_x86_64", "macosx_10_15_universal2",
                      "macosx_10_9_universal2"],
    "macosx_arm64": ["macosx_11_0_arm64", "macosx_10_15_universal2", "macosx_10_9_universal2"],
}


class WheelError(Exception):
    """No usable wheel; the message says what to do."""


@dataclass(frozen=True)
class Target:
    python_version: str  # "3.11"
    platform: str  # a key of PIP_PLATFORMS

    def __post_init__(self) -> None:
        if not re.fullmatch(r"3\.\d{1,2}", self.python_version):
            raise WheelError(f"python version must look like 3.11, got {self.python_version!r}")
        if self.platform not in PIP_PLATFORMS:
            raise WheelError(f"unknown platform {self.platform!r}; choose one of {', '.join(PIP_PLATFORMS)}")

    @property
    def key(self) -> str:
        """The vendor folder's name (``vendor_paths.vendor_key`` in the plugin)."""
        return f"cp{self.python_version.replace('.', '')}-{self.platform}"

    @property
    def minor(self) -> int:
        return int(self.python_version.split(".")[1])


def host_target() -> Target:
    """The Python running this code, as a target."""
    import platform

    machine = platform.machine().lower()
    if sys.platform == "win32":
        plat = "win_amd64" if machine in ("amd64", "x86_64") else "win_arm64"
    elif sys.platform == "darwin":
        plat = "macosx_arm64" if machine == "arm64" else "macosx_x86_64"
    else:
        plat = "linux_aarch64" if machine in ("aarch64", "arm64") else "linux_x86_64"
    return Target(f"{sys.version_info.major}.{sys.version_info.minor}", plat)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "anycost" / "wheels"


# ------------------------------------------------------------------------------------ tags
_WHEEL = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-(?P<build>\d[^-]*))?-(?P<py>[^-]+)-(?P<abi>[^-]+)"
                    r"-(?P<plat>[^-]+)\.whl$")


def _parse(filename: str) -> dict | None:
    m = _WHEEL.match(filename)
    return m.groupdict() if m else None


def _version_key(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else -1 for p in re.split(r"[.+-]", version))


def _platform_ok(plat_tags: set[str], target: Target) -> bool:
    if "any" in plat_tags:
        return True
    arch = target.platform.split("_", 1)[1]
    for tag in plat_tags:
        if target.platform.startswith("linux") and (re.fullmatch(rf"manylinux(1|2010|2014|_\d+_\d+)_{arch}", tag)
                                                    or tag == target.platform):
            return True
        if target.platform.startswith("macosx") and (re.fullmatch(rf"macosx_\d+_\d+_({arch}|universal2)", tag)):
            return True
        if target.platform.startswith("win") and tag == target.platform:
            return True
    return False


def compatible(filename: str, target: Target) -> bool:
    """Whether a wheel file name fits the target's CPython version and platform."""
    w = _parse(filename)
    if w is None:
        return False
    py_tags, abi_tags = set(w["py"].split(".")), set(w["abi"].split("."))
    cp = f"cp3{target.minor}"
    if cp in py_tags and (cp in abi_tags or "none" in abi_tags or "abi3" in abi_tags):
        ok_py = True
    elif "abi3" in abi_tags:  # stable ABI: built for cp3Y, runs on any later CPython
        ok_py = any(re.fullmatch(r"cp3(\d+)", t) and int(t[3:]) <= target.minor for t in py_tags)
    else:
        ok_py = bool({"py3", f"py3{target.minor}"} & py_tags) and "none" in abi_tags
    return ok_py and _platform_ok(set(w["plat"].split(".")), target)


def find_wheel(folder: Path, package: str, target: Target) -> Path | None:
    """The newest wheel of ``package`` in ``folder`` that fits ``target``."""
    best: tuple | None = None
    norm = package.replace("-", "_").lower()
    for p in Path(folder).glob("*.whl"):
        w = _parse(p.name)
        if w is None or w["name"].replace("-", "_").lower() != norm or not compatible(p.name, target):
            continue
        key = (_version_key(w["version"]), p.name)
        if best is None or key > best[0]:
            best = (key, p)
    return best[1] if best else None


def download_wheels(target: Target, dest: Path, packages: tuple[str, ...] = PACKAGES,
                    python: str | None = None) -> None:
    """``pip download`` the packages' wheels for ``target`` into ``dest`` (needs the package index)."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [python or sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--quiet",
           "--only-binary=:all:", "--no-deps", "--python-version", target.python_version, "--implementation",
           "cp", "--dest", str(dest)]
    for plat in PIP_PLATFORMS[target.platform]:
        cmd += ["--platform", plat]
    cmd += ["pyzmq>=25", "msgpack>=1.0"] if packages == PACKAGES else list(packages)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        raise WheelError(f"could not download {', '.join(packages)} for Python {target.python_version} on "
                         f"{target.platform} (pip says:\n{tail}\n). Without network access, pass --wheel-dir with "
                         f"the wheels (e.g. fetched elsewhere with 'pip download --only-binary=:all: "
                         f"--python-version {target.python_version} --platform "
                         f"{PIP_PLATFORMS[target.platform][0]} pyzmq msgpack')")


def unpack_wheel(wheel: Path, dest: Path) -> list[str]:
    """Extract a wheel (a zip) into ``dest``; returns its top-level names. Refuses paths that escape."""
    dest.mkdir(parents=True, exist_ok=True)
    top: set[str] = set()
    root = dest.resolve()
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            target = (dest / info.filename).resolve()
            if root not in target.parents and target != root:
                raise WheelError(f"{wheel.name}: refusing the path {info.filename!r}")
            top.add(info.filename.split("/", 1)[0])
        z.extractall(dest)
    return sorted(top)


def vendor(target: Target, vendor_root: Path, *, wheel_dir: Path | None = None, download: bool = True,
           packages: tuple[str, ...] = PACKAGES, log=print) -> Path:
    """Unpack the packages' wheels for ``target`` into ``vendor_root/<target.key>``.

    Wheels are looked up in ``wheel_dir`` first, then in the download cache; missing ones are
    downloaded into the cache unless ``download`` is False."""
    folders = [f for f in (wheel_dir, cache_dir()) if f is not None]
    wheels: dict[str, Path] = {}
    for pkg in packages:
        for folder in folders:
            found = find_wheel(folder, pkg, target) if folder.is_dir() else None
            if found:
                wheels[pkg] = found
                break
    missing = [p for p in packages if p not in wheels]
    if missing:
        if not download:
            where = f"in {wheel_dir}" if wheel_dir else "(no --wheel-dir given)"
            raise WheelError(f"no wheel of {', '.join(missing)} for Python {target.python_version} on "
                             f"{target.platform} {where}")
        log(f"downloading {', '.join(missing)} for Python {target.python_version} ({target.platform})")
        download_wheels(target, cache_dir(), tuple(missing))
        for pkg in missing:
            found = find_wheel(cache_dir(), pkg, target)
            if found is None:
                raise WheelError(f"pip found no wheel of {pkg} for Python {target.python_version} on {target.platform}")
            wheels[pkg] = found
    out = vendor_root / target.key
    if out.exists():
        shutil.rmtree(out)
    for wheel in wheels.values():
        unpack_wheel(wheel, out)
        log(f"vendored {wheel.name}")
    (out / WHEELS_RECORD).write_text("".join(f"{w.name}\n" for w in wheels.values()), encoding="utf-8")
    return out


def vendored_wheels(folder: Path) -> list[str]:
    """The wheel file names ``vendor`` unpacked into ``folder`` (one ``vendor_root/<key>``)."""
    record = Path(folder) / WHEELS_RECORD
    return record.read_text(encoding="utf-8").split() if record.is_file() else []
