"""When the plugin's dependencies cannot be imported: an action that says so instead of a silent failure."""

from __future__ import annotations

import sys

from krita import Extension, Krita

from . import qt_compat as Q
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
        v = sys.version_info
        Q.QMessageBox.critical(
            None, "Anycost Face Edit",
            f"The plugin cannot load its libraries: {self.error}.\n\n"
            f"Krita runs Python {v.major}.{v.minor} ({candidate_keys()[0]}). Install the plugin for this Krita "
            "with 'anycost install krita' (it vendors pyzmq and msgpack for Krita's Python; a Flatpak, AppImage "
            "or Snap Krita needs --python-version), or import anycost_krita.zip (Python 3.8 to 3.13 on Windows, "
            "macOS and Linux x86-64).")


def register_broken(error: ImportError) -> None:
    print(f"Anycost Face Edit: cannot import its libraries: {error}", file=sys.stderr)
    Krita.instance().addExtension(BrokenInstallExtension(Krita.instance(), error))
