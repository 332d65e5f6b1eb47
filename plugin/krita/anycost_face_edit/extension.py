"""The Krita extension: the Filter ▸ Anycost Face Edit… action, the backend link, the dialog."""

from __future__ import annotations

import atexit
import logging
import logging.handlers
from typing import Any

from krita import Extension, Krita

from anycost_client.backend_launcher import default_log_dir
from anycost_client.backend_link import BackendLink
from anycost_client.edit_controller import EditController
from anycost_client.regions import FormatError

from . import qt_compat as Q
from .dialog import FaceEditDialog, QtEventLoop, SettingsDialog, parse_position
from .krita_canvas import read_region
from .settings import Settings

ACTION_ID = "anycost_face_edit"
SETTINGS_ACTION_ID = "anycost_face_edit_settings"
TITLE = "Anycost Face Edit"

log = logging.getLogger("anycost.krita")

# The running extension, for scripts that drive the plugin (Krita's ``extensions()`` hands back
# C++ wrappers, not this Python object).
instance: AnycostFaceEditExtension | None = None


def setup_logging() -> str:
    """Plugin and client logs go to ``krita-plugin.log`` in the anycost log folder."""
    path = default_log_dir() / "krita-plugin.log"
    root = logging.getLogger("anycost")
    if not any(isinstance(h, logging.handlers.RotatingFileHandler) for h in root.handlers):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.handlers.RotatingFileHandler(path, maxBytes=1_000_000, backupCount=2, encoding="utf-8")
        except OSError:
            return ""
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    return str(path)


class AnycostFaceEditExtension(Extension):
    def __init__(self, parent: Any):
        super().__init__(parent)
        self.app = Krita.instance()
        self.loop = QtEventLoop()
        self.link: BackendLink | None = None
        self._link_key: Any = None
        self.dialog: FaceEditDialog | None = None
        self.controller: EditController | None = None  # the newest edit, finished or not
        self.actions: list[Any] = []
        self.log_file = ""
        self._timer: Any = None

    # ------------------------------------------------------------------ Krita hooks
    def setup(self) -> None:
        global instance
        instance = self
        self.log_file = setup_logging()
        log.info("Anycost Face Edit loaded (Qt %s)", "6" if Q.QT6 else "5")
        self.app.notifier().applicationClosing.connect(self.shutdown)
        atexit.register(self.shutdown)

    def createActions(self, window: Any) -> None:
        action = window.createAction(ACTION_ID, f"{TITLE}…", "filter")
        action.setToolTip("Edit the selected face with Anycost GAN sliders")
        action.triggered.connect(lambda *_: self.run())
        settings = window.createAction(SETTINGS_ACTION_ID, f"{TITLE} Settings…", "tools/scripts")
        settings.triggered.connect(lambda *_: self.edit_settings())
        self.actions += [action, settings]
        notifier = self.app.notifier()
        for signal in ("imageCreated", "imageClosed", "viewCreated", "viewClosed"):
            getattr(notifier, signal).connect(lambda *_: Q.QTimer.singleShot(0, self._update_enabled))
        self._update_enabled()

    def _update_enabled(self) -> None:
        has_doc = bool(self.app.documents())
        for action in self.actions[::2]:
            try:
                action.setEnabled(has_doc)
            except RuntimeError:  # the window (and its actions) is gone: Krita is closing
                pass

    # ------------------------------------------------------------------ backend
    def settings(self) -> Settings:
        return Settings.load(self.app.readSetting)

    def _link(self, settings: Settings) -> BackendLink:
        ls = settings.link_settings()
        key = (tuple(ls.backend_command or ()), tuple(ls.backend_args), ls.connection_file, ls.endpoint)
        if self.link is None or key != self._link_key:
            if self.link is not None:
                self.link.shutdown()
            self.link = BackendLink(self.loop, ls)
            self._link_key = key
        if self._timer is None:
            self._timer = Q.QTimer()
            self._timer.setInterval(250)
            self._timer.timeout.connect(self._tick)
            self._timer.start()
        return self.link

    def _tick(self) -> None:
        if self.link is not None:
            try:
                self.link.tick()
            except Exception:
                log.exception("backend link tick failed")

    def shutdown(self) -> None:
        """Krita is closing: stop a backend this plugin started."""
        if self.dialog is not None and self.controller is not None and not self.controller.finished:
            self.controller.cancel()
        if self.link is not None:
            log.info("Krita is closing; stopping the backend link")
            self.link.shutdown()
            self.link = None
        if self._timer is not None:
            self._timer.stop()

    # ------------------------------------------------------------------ the action
    def _parent_widget(self) -> Any:
        window = self.app.activeWindow()
        return window.qwindow() if window is not None else None

    def run(self) -> None:
        if self.dialog is not None:
            self.dialog.raise_()
            return
        doc = self.app.activeDocument()
        settings = self.settings()
        try:
            node = doc.activeNode() if doc is not None else None
            region = read_region(doc, node, settings.padding)
        except FormatError as e:
            Q.QMessageBox.warning(self._parent_widget(), TITLE, f"Cannot edit this: {e}.")
            return
        from .krita_canvas import KritaCanvas

        link = self._link(settings)
        canvas = KritaCanvas(self.app, doc, node, region)
        controller = EditController(link, region, canvas, quality=settings.quality,
                                    refine_steps=settings.refine_steps)
        parent = self._parent_widget()
        dialog = FaceEditDialog(controller, settings, parent, on_settings=self.edit_settings)
        self.dialog, self.controller = dialog, controller
        # beside the canvas, or where the user left it last time (kept on the screen)
        where = dialog.place_on_screen(window=parent.frameGeometry() if parent is not None else None,
                                       saved=parse_position(settings.dialog_position))
        log.info("dialog opened on %r, region %s, at %s", region.layer_name, region.rect.as_tuple(), where)
        try:
            controller.start()
            dialog.refresh()
            Q.exec_dialog(dialog)
        except Exception:
            log.exception("the dialog failed")
            controller.cancel()
            raise
        finally:
            if not controller.finished:
                controller.cancel()
            changed = []
            if controller.quality != settings.quality:
                settings.quality = controller.quality
                changed.append("quality")
            if dialog.moved_by_user:
                settings.dialog_position = "{},{}".format(*dialog.position)
                changed.append("dialog_position")
            if changed:
                settings.save(self.app.writeSetting, *changed)
            self.dialog = None
            dialog.deleteLater()
        log.info("dialog closed: %s", controller.phase.value)

    def edit_settings(self) -> None:
        dialog = SettingsDialog(self.settings(), self.dialog or self._parent_widget())
        if Q.exec_dialog(dialog):
            dialog.result_settings().save(self.app.writeSetting)
            log.info("settings saved")
