"""When the plugin's dependencies cannot be imported: an action that says so instead of a silent failure."""

from __future__ import annotations

import sys

from krita import Extension, Krita

from . import qt_compat as Q
from .environment import python_environment_note
from .vendor_paths import candidate_keys


class BrokenInstallExtension(Extension):
    def __init__(self, parent, error: ImportError):
        super().__init__(parent)
        self.error = error

    def setup(self) -> None:
        pass

    def createActions(self, window) -> None:
        action = window.createAction("anycost_face_edit", "Anycost Face Edit…", "filter")
        action.triggered.connect(lambda *_: self.explain())

    def explain(self) -> None:
        Q.QMessageBox.critical(None, "Anycost Face Edit", broken_message(self.error))


def broken_message(error: ImportError) -> str:
    """What the broken plugin's action says: the error, the Python it needs libraries for, how to install
    them, and, first, a Python environment leaking in from the shell that started Krita."""
    v = sys.version_info
    note = python_environment_note()
    return (f"The plugin cannot load its libraries: {error}.\n\n"
            + (f"{note}\n\n" if note else "")
            + f"Krita runs Python {v.major}.{v.minor} ({candidate_keys()[0]}). Install the plugin for this Krita "
            "with 'anycost install krita' (it vendors pyzmq and msgpack for Krita's Python; a Flatpak, AppImage "
            "or Snap Krita needs --python-version), or import anycost_krita.zip (Python 3.8 to 3.13 on Windows, "
            "macOS and Linux x86-64).")


def register_broken(error: ImportError) -> None:
    note = python_environment_note()
    print(f"Anycost Face Edit: cannot import its libraries: {error}{'. ' + note if note else ''}", file=sys.stderr)
    Krita.instance().addExtension(BrokenInstallExtension(Krita.instance(), error))
