"""Where the host plug-in files are: a source checkout, or the data folder a wheel installed them to."""

from __future__ import annotations

import importlib.util
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from .staging import InstallError

PLUGIN = "anycost_face_edit"  # the plug-in's folder (and file) name in both hosts
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


@dataclass(frozen=True)
class PluginSources:
    folder: Path  # the host's plug-in folder
    client: Path  # the anycost_client package, copied beside it
    desktop: Path | None  # Krita's .desktop file beside the folder (None for GIMP)


def plugin_sources(host: str, label: str, main: str, *, desktop: bool = False) -> PluginSources:
    """The files to install for ``host`` (``krita``, ``gimp``): from a checkout, or where the wheel put them.
    ``label`` names the plug-in in the error, ``main`` is a file it must hold; ``desktop``: it comes with a
    ``.desktop`` file beside it."""
    root = host_folder(host)
    folder = root / PLUGIN if root else None
    if folder is None or not (folder / main).is_file():
        raise InstallError(missing(label))
    desktop_file = folder.with_name(f"{PLUGIN}.desktop") if desktop else None
    if desktop_file is not None and not desktop_file.is_file():
        raise InstallError(missing("its .desktop file"))
    client = client_package()
    if client is None or not (client / "protocol.py").is_file():
        raise InstallError(missing("the client package"))
    return PluginSources(folder, client, desktop_file)
