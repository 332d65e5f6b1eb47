"""Where the plugin's bundled packages live, and which vendored wheels fit the running Python.

    anycost_face_edit/lib/anycost_client/          the client package (copied by the installer)
    anycost_face_edit/vendor/cp311-linux_x86_64/   pyzmq + msgpack unpacked from wheels, one folder per
    anycost_face_edit/vendor/cp310-win_amd64/      Python version and platform (the zip has several)
    anycost_face_edit.linked/lib, …/vendor         the same beside a plugin folder linked to a checkout

The installer names the folders with ``vendor_key``; the plugin picks its own with ``candidate_keys``.
Standard library only.
"""

from __future__ import annotations

import os
import platform
import sys

HERE = os.path.dirname(os.path.abspath(__file__))  # abspath keeps a linked folder's own path
LINKED_SUFFIX = ".linked"  # the installer's folder beside a plugin linked for development


def platform_key(system: str | None = None, machine: str | None = None) -> str:
    """``linux_x86_64``, ``linux_aarch64``, ``win_amd64``, ``win_arm64``, ``macosx_x86_64``, ``macosx_arm64``."""
    system = (system or sys.platform).lower()
    machine = (machine or platform.machine()).lower()
    machine = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64" if system.startswith("linux") else "arm64"}.get(
        machine, machine)
    if system.startswith("win"):
        return "win_amd64" if machine == "x86_64" else f"win_{machine}"
    if system == "darwin" or system.startswith("mac"):
        return "macosx_arm64" if machine in ("arm64", "aarch64") else "macosx_x86_64"
    return f"linux_{machine}"


def vendor_key(python_version: str, plat: str) -> str:
    """``("3.11", "linux_x86_64")`` → ``cp311-linux_x86_64``."""
    major, minor = python_version.split(".")[:2]
    return f"cp{major}{minor}-{plat}"


def candidate_keys() -> list[str]:
    v = f"{sys.version_info.major}.{sys.version_info.minor}"
    return [vendor_key(v, platform_key())]


def add_bundled_paths(root: str = HERE) -> list[str]:
    """Put ``lib`` and the matching ``vendor`` folder first on ``sys.path``; returns what was added. They are
    in the plugin folder, or for a plugin folder linked to a checkout in ``<folder>.linked`` beside it
    (``root`` is the path Krita imported the plugin from, not the link's target)."""
    added = []
    bases = [root, root.rstrip("/\\") + LINKED_SUFFIX]
    for key in candidate_keys():
        path = next((p for p in (os.path.join(b, "vendor", key) for b in bases) if os.path.isdir(p)), None)
        if path is not None:
            added.append(path)
            break
    lib = next((p for p in (os.path.join(b, "lib") for b in bases) if os.path.isdir(p)), None)
    if lib is not None:
        added.append(lib)
    for path in reversed(added):
        if path in sys.path:
            sys.path.remove(path)
        sys.path.insert(0, path)
    return added
