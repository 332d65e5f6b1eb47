"""Vendoring pyzmq and msgpack for a host program's own Python.

Krita and GIMP bundle (or use) a Python that is not the backend's, often another version, on
another platform than the machine building a package. The plugin therefore carries its two binary
dependencies unpacked from wheels, one folder per target::

    vendor/cp310-win_amd64/zmq/…  vendor/cp310-win_amd64/msgpack/…  vendor/cp311-linux_x86_64/…

A target is a CPython version (``3.11``) and a platform key (``linux_x86_64``, ``linux_aarch64``,
``win_amd64``, ``macosx_x86_64``, ``macosx_arm64``). Wheels come from a local folder (offline) or are
fetched with ``pip download`` into a cache. Wheel names, tags and versions are read with ``packaging``,
by the rules pip follows.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

try:  # a dependency of the backend; a host's own Python that imports the installers (to check itself) may lack it
    from packaging.tags import Tag, compatible_tags, cpython_tags, mac_platforms
    from packaging.utils import BuildTag, InvalidWheelFilename, NormalizedName, canonicalize_name, parse_wheel_filename
    from packaging.version import InvalidVersion, Version

    HAVE_PACKAGING = True
except ImportError:
    HAVE_PACKAGING = False

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
    "platform_tags",
    "supported_tags",
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
# glibc versions that the legacy manylinux names stand for (PEP 600)
LEGACY_MANYLINUX = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}


def _require_packaging() -> None:
    if not HAVE_PACKAGING:
        raise WheelError(f"choosing wheels needs the 'packaging' library, which {sys.executable} lacks: run the "
                         "installer from the backend's environment (anycost install), or pip install packaging")


def platform_tags(platform: str) -> list[str]:
    """The wheel platform tags that run on a platform key, best first: what pip is asked for
    (``PIP_PLATFORMS``), where a ``manylinux_2_X`` also takes every older glibc (with its legacy name)
    and a ``macosx_X_Y`` every older macOS, as pip's own rules do for the machine it runs on."""
    _require_packaging()
    out: list[str] = []
    for plat in PIP_PLATFORMS[platform]:
        kind, _, rest = plat.partition("_")
        if kind in ("manylinux", "macosx"):
            major, minor, arch = rest.split("_", 2)
            if kind == "macosx":
                out += mac_platforms((int(major), int(minor)), arch)
                continue
            for glibc in range(int(minor), 4, -1):
                out.append(f"manylinux_{major}_{glibc}_{arch}")
                legacy = LEGACY_MANYLINUX.get((int(major), glibc))
                if legacy and (legacy == "manylinux2014" or arch in ("x86_64", "i686")):
                    out.append(f"{legacy}_{arch}")
        else:
            out.append(plat)
    return list(dict.fromkeys(out))


@functools.lru_cache(maxsize=64)
def supported_tags(target: Target) -> dict[Tag, int]:
    """Every tag a wheel for ``target`` may carry, with its rank (0 is the best): CPython's own ABI,
    the stable ABI of this and every earlier CPython 3, then pure-Python wheels."""
    _require_packaging()
    version = (3, target.minor)
    interpreter = f"cp3{target.minor}"
    abi = interpreter + ("m" if target.minor < 8 else "")  # pymalloc's "m" left the ABI tag in 3.8
    plats = platform_tags(target.platform)
    tags = [*cpython_tags(version, abis=[abi], platforms=plats), *compatible_tags(version, interpreter, plats)]
    return {tag: rank for rank, tag in reversed(list(enumerate(tags)))}


def _parse(filename: str) -> tuple[NormalizedName, Version, BuildTag, frozenset[Tag]] | None:
    try:
        return parse_wheel_filename(filename)
    except (InvalidWheelFilename, InvalidVersion):  # packaging before 23.2 raises the latter for the version
        return None


def _rank(tags: frozenset[Tag], target: Target) -> int | None:
    """The best rank among a wheel's tags for ``target``; None when none fits."""
    ranks = supported_tags(target)
    return min((ranks[t] for t in tags if t in ranks), default=None)


def compatible(filename: str, target: Target) -> bool:
    """Whether a wheel file name fits the target's CPython version and platform."""
    _require_packaging()
    parsed = _parse(filename)
    return parsed is not None and _rank(parsed[3], target) is not None


def find_wheel(folder: Path, package: str, target: Target) -> Path | None:
    """The wheel of ``package`` in ``folder`` that pip would take for ``target``: the newest final
    release (a pre-release only where there is none), then the best tag, then the highest build."""
    _require_packaging()
    best: tuple | None = None
    want = canonicalize_name(package)
    for p in Path(folder).glob("*.whl"):
        parsed = _parse(p.name)
        if parsed is None or parsed[0] != want:
            continue
        _, version, build, tags = parsed
        rank = _rank(tags, target)
        if rank is None:
            continue
        key = (not version.is_prerelease, version, -rank, build, p.name)
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
