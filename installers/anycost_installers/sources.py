"""Where the host plug-in files are: a source checkout, or the data folder a wheel installed them to."""

from __future__ import annotations

import importlib.util
import sys
import sysconfig
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2] / "plugin"
DATA_SUBDIR = Path("share") / "anycost-face-edit" / "plugins"  # matches [tool.setuptools.data-files]


def plugin_roots() -> list[Path]:
    """Candidate folders holding ``krita/`` and ``gimp/``: the checkout, then this environment's data
    folder (a virtual environment or system install), then the user's (``pip install --user``)."""
    bases = [sysconfig.get_path("data"), sys.prefix, sysconfig.get_path("data", sysconfig.get_preferred_scheme("user"))]
    roots = [CHECKOUT]
    for base in bases:
        p = Path(base) / DATA_SUBDIR
        if p not in roots:
            roots.append(p)
    return roots


def host_folder(host: str) -> Path | None:
    """``<root>/<host>`` of the first root that has it."""
    for root in plugin_roots():
        if (root / host).is_dir():
            return root / host
    return None


def client_package() -> Path | None:
    """The ``anycost_client`` package folder (checkout or installed), copied next to the plug-ins."""
    if (CHECKOUT / "anycost_client" / "protocol.py").is_file():
        return CHECKOUT / "anycost_client"
    spec = importlib.util.find_spec("anycost_client")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def missing(what: str) -> str:
    looked = ", ".join(str(r) for r in plugin_roots())
    return (f"{what} is missing (looked in {looked}); reinstall the package (pip install anycost-face-edit) "
            "or run the installer from the project's checkout")
