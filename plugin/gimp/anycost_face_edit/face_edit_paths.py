"""Where the plug-in's bundled packages live, and which vendored folder fits the running Python.

    anycost_face_edit/anycost_client/               the client package (copied by the installer)
    anycost_face_edit/vendor/cp312-win_amd64/       pyzmq + msgpack unpacked from wheels, for a GIMP
                                                    that bundles its own Python

The installer names the vendor folder ``cpXY-PLATFORM`` (``anycost_installers.wheels.Target.key``);
``vendor_key`` here must give the same name for the running Python. Standard library only: this runs
before anything else in the plug-in, under GIMP's Python.
"""

from __future__ import annotations

import os
import platform
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def platform_key(system: str | None = None, machine: str | None = None) -> str:
    """``linux_x86_64``, ``linux_aarch64``, ``win_amd64``, ``win_arm64``, ``macosx_x86_64``, ``macosx_arm64``."""
    system = (system or sys.platform).lower()
    machine = (machine or platform.machine()).lower()
    machine = {"amd64": "x86_64", "x64": "x86_64"}.get(machine, machine)
    if system.startswith("win"):
        return "win_amd64" if machine == "x86_64" else f"win_{machine}"
    if system == "darwin":
        return "macosx_arm64" if machine in ("arm64", "aarch64") else "macosx_x86_64"
    return f"linux_{'aarch64' if machine == 'arm64' else machine}"


def vendor_key(version: tuple[int, int] | None = None, system: str | None = None, machine: str | None = None) -> str:
    """The vendor folder for Python ``version`` (default: this one) on this (or the given) platform."""
    major, minor = version or sys.version_info[:2]
    return f"cp{major}{minor}-{platform_key(system, machine)}"


def add_bundled_paths(root: str = HERE) -> list[str]:
    """Put the plug-in's own folder and its matching vendor folder (if any) first on ``sys.path``, the
    vendor folder before everything; returns what was added, first first."""
    added = [p for p in (os.path.join(root, "vendor", vendor_key()), root) if os.path.isdir(p)]
    for path in reversed(added):
        if path in sys.path:
            sys.path.remove(path)
        sys.path.insert(0, path)
    return added
