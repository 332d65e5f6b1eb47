"""The Qt dialog: sliders, preview quality, latency, projection progress, thumbnail, Apply/Cancel.

All decisions live in ``anycost_client.controller.EditController``; this module only draws its state
and forwards what the user does. Also the Qt implementation of the controller's ``EventLoop`` and the
settings dialog.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from anycost_client.controller import AUTO, EditController, LinkState, Phase

from . import qt_compat as Q
from .settings import Settings

log = logging.getLogger("anycost.krita")

SLIDER_STEPS = 100  # slider positions per unit of a direction
THUMB_SIDE = 256


class QtEventLoop:
    """``anycost_client.controller.EventLoop`` on Qt: socket notifiers and single-shot timers."""

    def __init__(self, parent: Any = None):
        self.parent = parent

    def watch(self, fd: int, callback: Callable[[], None]) -> Any:
        notifier = Q.QSocketNotifier(fd, Q.NOTIFIER_READ, self.parent)
        notifier.activated.connect(lambda *_: callback())
        notifier.setEnabled(True)
        return notifier

    def unwatch(self, token: Any) -> None:
        token.setEnabled(False)
        token.deleteLater()

    def call_later(self, seconds: float, callback: Callable[[], None]) -> None:
        Q.QTimer.singleShot(max(0, int(seconds * 1000)), callback)


class SliderRow:
    def __init__(self, dialog: FaceEditDialog, grid: Any, row: int, name: str):
        spec = dialog.controller.specs[name]
        self.name = name
        self.scale = SLIDER_STEPS
        self.label = Q.QLabel(spec.label)
        self.slider = Q.QSlider(Q.HORIZONTAL)
        self.slider.setObjectName(f"slider_{name}")
        self.slider.setRange(int(round(spec.lo * self.scale)), int(round(spec.hi * self.scale)))
        self.slider.setValue(int(round(dialog.controller.sliders.get(name, spec.neutral) * self.scale)))
        self.value = Q.QLabel()
        self.value.setMinimumWidth(44)
        self.reset = Q.QToolButton()
        self.reset.setText("↺")
        self.reset.setToolTip(f"Reset {spec.label}")
        self.slider.valueChanged.connect(lambda v: dialog.slider_moved(name, v / self.scale))
        self.reset.clicked.connect(lambda *_: dialog.controller.reset_slider(name))
        for col, w in enumerate((self.label, self.slider, self.value, self.reset)):
            grid.addWidget(w, row, col)
        self.show(dialog.controller.sliders.get(name, spec.neutral))

    def show(self, value: float) -> None:
        pos = int(round(value * self.scale))
        if self.slider.value() != pos:
            self.slider.blockSignals(True)
            self.slider.setValue(pos)
            self.slider.blockSignals(False)
        self.value.setText(f"{value:+.2f}")

    def remove(self) -> None:
        for w in (self.label, self.slider, self.value, self.reset):
            w.setParent(None)
            w.deleteLater()


class FaceEditDialog(Q.QDialog):
    """Modal, but previews stream: ``exec`` runs a nested event loop in which the controller's socket
    notifier and timer keep firing."""

    def __init__(self, controller: EditController, settings: Settings, parent: Any = None,
                 on_settings: Callable[[], None] | None = None):
        super().__init__(parent)
        self.controller = controller
        self.settings = settings
        self.setWindowTitle("Anycost Face Edit")
        self.setObjectName("anycost_face_edit_dialog")
        self.rows: dict[str, SliderRow] = {}
        self.thumbnail_updates = 0
        self._build(on_settings)
        controller.on_change = self._changed
        self.refresh()

    # ------------------------------------------------------------------ layout
    def _build(self, on_settings: Callable[[], None] | None) -> None:
        c = self.controller
        outer = Q.QVBoxLayout(self)
        self.status = Q.QLabel()
        self.status.setObjectName("status")
        self.status.setWordWrap(True)
        self.status.setTextFormat(Q.PLAIN_TEXT)
        self.status.setTextInteractionFlags(Q.TEXT_SELECTABLE)
        outer.addWidget(self.status)
        self.progress = Q.QProgressBar()
        self.progress.setObjectName("progress")
        self.progress.setRange(0, 100)
        self.progress.setTextVisible(True)
        outer.addWidget(self.progress)

        body = Q.QHBoxLayout()
        outer.addLayout(body)
        self.thumbnail = Q.QLabel()
        self.thumbnail.setObjectName("thumbnail")
        self.thumbnail.setFixedSize(THUMB_SIDE, THUMB_SIDE)
        self.thumbnail.setAlignment(Q.ALIGN_CENTER)
        body.addWidget(self.thumbnail)

        right = Q.QVBoxLayout()
        body.addLayout(right)
        self.slider_box = Q.QGroupBox("Directions")
        self.grid = Q.QGridLayout(self.slider_box)
        right.addWidget(self.slider_box)
        # directions the model hides (unnamed ones such as sefa_3 mean nothing to an artist) on request
        self.show_hidden = Q.QCheckBox("Show unnamed directions")
        self.show_hidden.setObjectName("show_hidden")
        self.show_hidden.setToolTip("Directions the model file hides from the dialog (see `anycost directions set`)")
        self.show_hidden.toggled.connect(self._show_hidden_toggled)
        right.addWidget(self.show_hidden)
        self.reset_all = Q.QPushButton("Reset all")
        self.reset_all.setObjectName("reset_all")
        self.reset_all.clicked.connect(lambda *_: c.reset_all())
        right.addWidget(self.reset_all)

        form = Q.QFormLayout()
        right.addLayout(form)
        self.quality = Q.QComboBox()
        self.quality.setObjectName("quality")
        self.quality.currentIndexChanged.connect(self._quality_changed)
        form.addRow("Preview quality", self.quality)
        self.latency = Q.QLabel("–")
        self.latency.setObjectName("latency")
        self.latency.setToolTip("Slider moved → preview drawn on the canvas, with the backend's render time")
        form.addRow("Preview latency", self.latency)
        self.choice = Q.QLabel()
        self.choice.setObjectName("preview_choice")
        self.choice.setWordWrap(True)
        self.choice.setToolTip("The sub-generator the backend picked for Auto previews, and its cost on the "
                               "backend's machine")
        form.addRow("Auto preview", self.choice)
        self.notice = Q.QLabel()
        self.notice.setWordWrap(True)
        right.addWidget(self.notice)
        right.addStretch(1)

        buttons = Q.QDialogButtonBox()
        self.apply_button = buttons.addButton("Apply", Q.ROLE_ACCEPT)
        self.apply_button.setObjectName("apply")
        self.cancel_button = buttons.addButton("Cancel", Q.ROLE_REJECT)
        self.cancel_button.setObjectName("cancel")
        if on_settings is not None:
            settings_button = buttons.addButton("Settings…", Q.ROLE_RESET)
            settings_button.clicked.connect(lambda *_: on_settings())
        self.retry_button = buttons.addButton("Retry", Q.ROLE_ACTION)
        self.retry_button.setObjectName("retry")
        self.retry_button.setToolTip("Look for the backend again, or start it")
        self.retry_button.clicked.connect(lambda *_: c.retry())
        self.apply_button.clicked.connect(lambda *_: self.apply())
        self.cancel_button.clicked.connect(lambda *_: self.reject())
        outer.addWidget(buttons)
        self._fill_quality()

    def _fill_quality(self) -> None:
        c = self.controller
        wanted = c.quality
        items = [(AUTO, "Auto (fits the latency budget)")] + [(lv, f"Fixed {lv}") for lv in c.levels]
        keys = [k for k, _ in items]
        if [self.quality.itemData(i) for i in range(self.quality.count())] == keys:
            idx = keys.index(wanted) if wanted in keys else 0
            if self.quality.currentIndex() != idx:  # the controller went back to Auto
                self.quality.blockSignals(True)
                self.quality.setCurrentIndex(idx)
                self.quality.blockSignals(False)
            return
        self.quality.blockSignals(True)
        self.quality.clear()
        for key, text in items:
            self.quality.addItem(text, key)
        idx = max(0, [k for k, _ in items].index(wanted) if wanted in [k for k, _ in items] else 0)
        self.quality.setCurrentIndex(idx)
        self.quality.blockSignals(False)

    def _rebuild_sliders(self) -> None:
        if list(self.rows) == list(self.controller.specs):
            return
        for row in self.rows.values():
            row.remove()
        self.rows = {name: SliderRow(self, self.grid, i, name) for i, name in enumerate(self.controller.specs)}

    # ------------------------------------------------------------------ user actions
    def slider_moved(self, name: str, value: float) -> None:
        self.controller.set_slider(name, value)
        self.rows[name].value.setText(f"{self.controller.sliders[name]:+.2f}")
        self._update_apply()  # a first moved slider enables Apply at once, not at the next preview

    def set_slider(self, name: str, value: float) -> None:
        """Move a slider as a user would (for scripts)."""
        self.rows[name].slider.setValue(int(round(value * SLIDER_STEPS)))

    def _quality_changed(self, index: int) -> None:
        key = self.quality.itemData(index)
        if key:
            self.controller.set_quality(str(key))

    def apply(self) -> None:
        c = self.controller
        if c.phase == Phase.READY and c.has_edit:
            # no face found, or a face beyond the model: the edit may be poor, so ask before writing a layer
            if c.confirm_apply and not self.confirm(c.apply_question()):
                return
            c.apply()
        self.refresh()

    def confirm(self, question: str) -> bool:
        """Ask a yes/no question; Yes is not the default, so a reflexive Enter does not write the layer."""
        answer = Q.QMessageBox.question(self, "Anycost Face Edit", question, Q.MSG_YES | Q.MSG_NO, Q.MSG_NO)
        return answer == Q.MSG_YES

    def _show_hidden_toggled(self, checked: bool) -> None:
        self.controller.set_show_hidden(bool(checked))
        self.refresh()

    def reject(self) -> None:  # Cancel button, Escape, the window's close button
        if not self.controller.finished:
            self.controller.cancel()
        super().reject()

    # ------------------------------------------------------------------ controller → widgets
    def _changed(self, what: str) -> None:
        if what == "done":
            self.accept()
            return
        if what == "preview" or what == "progress":
            self._update_thumbnail()
        self.refresh()

    def _update_thumbnail(self) -> None:
        r = self.controller.region
        data = bytes(self.controller.preview_rgba)  # QImage borrows it: keep it alive until scaled() copies
        img = Q.QImage(data, r.width, r.height, 4 * r.width, Q.FORMAT_RGBA8888)
        self.thumbnail.setPixmap(Q.QPixmap.fromImage(img.scaled(THUMB_SIDE, THUMB_SIDE, Q.KEEP_ASPECT, Q.SMOOTH)))
        self.thumbnail_updates += 1

    def refresh(self) -> None:
        c = self.controller
        self._rebuild_sliders()
        for name, row in self.rows.items():
            row.show(c.sliders.get(name, 0.0))
        self._fill_quality()
        self.status.setText(c.status_line() if not c.error else f"{c.status_line()}\n{c.error}")
        frac = c.progress_fraction()
        if c.phase in (Phase.CONNECTING, Phase.OPENING) and frac is None:
            self.progress.setRange(0, 0)  # busy
        else:
            self.progress.setRange(0, 100)
            self.progress.setValue(int(100 * (frac if frac is not None else (1.0 if c.phase != Phase.FAILED
                                                                               else 0.0))))
        self.latency.setText(c.latency_text())
        self.choice.setText(c.preview_choice_text() or "–")
        self.notice.setText(c.display_notice())
        self.show_hidden.setVisible(bool(c.hidden_sliders))
        self.show_hidden.setText(f"Show unnamed directions ({len(c.hidden_sliders)})")
        if self.thumbnail_updates == 0:
            self._update_thumbnail()
        self._update_apply()
        self.slider_box.setEnabled(c.phase in (Phase.CONNECTING, Phase.OPENING, Phase.READY))
        self.cancel_button.setText("Close" if c.phase == Phase.FAILED else "Cancel")
        self.retry_button.setVisible(c.can_retry)

    def _update_apply(self) -> None:
        c = self.controller
        connected = c.link.state == LinkState.CONNECTED
        # Apply waits for a moved slider: an unedited projection would add an empty layer and an undo step
        self.apply_button.setEnabled(c.phase == Phase.READY and connected and c.has_edit)


class SettingsDialog(Q.QDialog):
    def __init__(self, settings: Settings, parent: Any = None):
        super().__init__(parent)
        self.setWindowTitle("Anycost Face Edit Settings")
        self.settings = settings
        form = Q.QFormLayout(self)
        self.command = Q.QLineEdit(settings.backend_command)
        self.command.setPlaceholderText("as installed (e.g. /path/to/venv/bin/python -m anycost serve)")
        form.addRow("Backend command", self.command)
        self.conn_file = Q.QLineEdit(settings.connection_file)
        self.conn_file.setPlaceholderText("newest running backend")
        form.addRow("Connection file", self.conn_file)
        self.endpoint = Q.QLineEdit(settings.endpoint)
        self.endpoint.setPlaceholderText("from the connection file (e.g. tcp://gpu-box:5555)")
        form.addRow("Endpoint", self.endpoint)
        self.budget = Q.QSpinBox()
        self.budget.setRange(10, 10_000)
        self.budget.setSuffix(" ms")
        self.budget.setValue(settings.preview_budget_ms)
        self.budget.setToolTip("Given to a backend this plugin starts (--preview-budget-ms); a backend started "
                               "elsewhere keeps its own budget")
        form.addRow("Preview latency budget", self.budget)
        budget_note = Q.QLabel("Applies to a backend the plugin starts, from its next start.")
        budget_note.setWordWrap(True)
        form.addRow("", budget_note)
        self.padding = Q.QDoubleSpinBox()
        self.padding.setRange(0.0, 2.0)
        self.padding.setSingleStep(0.05)
        self.padding.setValue(settings.padding)
        form.addRow("Padding around the selection", self.padding)
        self.refine = Q.QSpinBox()
        self.refine.setRange(0, 1000)
        self.refine.setValue(settings.refine_steps)
        form.addRow("Projection refinement steps", self.refine)
        buttons = Q.QDialogButtonBox(Q.BUTTON_OK | Q.BUTTON_CANCEL)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def result_settings(self) -> Settings:
        s = self.settings
        return Settings(backend_command=self.command.text().strip(), connection_file=self.conn_file.text().strip(),
                        endpoint=self.endpoint.text().strip(), preview_budget_ms=self.budget.value(),
                        padding=self.padding.value(), refine_steps=self.refine.value(), quality=s.quality)
