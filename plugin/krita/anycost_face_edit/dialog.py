"""The Qt dialog: sliders, preview quality, latency, projection progress, thumbnail, Apply/Cancel.

All decisions live in ``anycost_client.edit_controller.EditController``; this module only draws its state
and forwards what the user does. Also the Qt implementation of the link's ``EventLoop`` and the
settings dialog.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from anycost_client.backend_link import LinkState
from anycost_client.edit_controller import AUTO, EditController, Phase

from . import qt_compat as Q
from .placement import EDGE_MARGIN, Rect, parse_position, place
from .settings import Settings

__all__ = ["EDGE_MARGIN", "FaceEditDialog", "QtEventLoop", "SettingsDialog", "parse_position", "place"]

log = logging.getLogger("anycost.krita")

SLIDER_STEPS = 100  # slider positions per unit of a direction
THUMB_SIDE = 256
RIGHT_COLUMN_WIDTH = 400  # the sliders' column: fixed, so that no text that appears later widens the dialog
PREFERRED_SLIDER_ROWS = 8  # rows the slider area shows without scrolling, where the screen has room
MIN_SLIDER_ROWS = 2  # and at the least, on a small screen
SLIDER_LABEL_WIDTH = 104  # a direction's name; a longer one ends in "…" (the whole name in its tooltip)
STATUS_LINES = 2  # lines reserved for the status (it scrolls beyond them)
NOTICE_LINES = 4  # and for the notice about the face and the model, under the thumbnail
FRAME_ALLOWANCE = 36  # the window manager's title bar and borders, which Qt knows only after showing
class ElidedLabel(Q.QLabel):
    """One line that never asks for more width: text that does not fit ends in "…", the whole of it in
    the tooltip. ``text()`` is the whole text."""

    def __init__(self, text: str = ""):
        super().__init__()
        self._full = ""
        self.setSizePolicy(Q.SIZE_IGNORED, Q.SIZE_FIXED)
        self.setMinimumWidth(1)
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt's name
        self._full = str(text)
        self._elide()

    def text(self) -> str:
        return self._full

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        shown = self.fontMetrics().elidedText(self._full, Q.ELIDE_RIGHT, max(1, self.width()))
        Q.QLabel.setText(self, shown)
        self.setToolTip(self._full if shown != self._full else "")


def text_box(lines: int, name: str) -> tuple[Any, Any]:
    """A word-wrapped, selectable label in a frameless box ``lines`` high: longer text scrolls inside it
    instead of making the dialog taller. Returns (box, label)."""
    label = _wrapped_label(name)
    label.setTextInteractionFlags(Q.TEXT_SELECTABLE)
    box = Q.QScrollArea()
    box.setObjectName(f"{name}_box")
    box.setWidget(label)
    box.setWidgetResizable(True)
    box.setFrameShape(Q.NO_FRAME)
    box.setHorizontalScrollBarPolicy(Q.SCROLLBAR_OFF)
    box.setVerticalScrollBarPolicy(Q.SCROLLBAR_AS_NEEDED)
    box.viewport().setAutoFillBackground(False)
    label.setAutoFillBackground(False)
    box.setFixedHeight(lines_height(label, lines))
    box.setSizePolicy(Q.SIZE_IGNORED, Q.SIZE_FIXED)
    return box, label


def reserved_label(lines: int, name: str) -> Any:
    """A word-wrapped label with room for ``lines`` lines from the start, whatever text comes later."""
    label = _wrapped_label(name)
    label.setFixedHeight(lines_height(label, lines))
    label.setSizePolicy(Q.SIZE_IGNORED, Q.SIZE_FIXED)
    return label


def _wrapped_label(name: str) -> Any:
    label = Q.QLabel()
    label.setObjectName(name)
    label.setWordWrap(True)
    label.setTextFormat(Q.PLAIN_TEXT)
    label.setAlignment(Q.ALIGN_TOP_LEFT)
    return label


def lines_height(label: Any, lines: int) -> int:
    """The height ``label`` needs for ``lines`` lines of text, as its font draws them."""
    probe = Q.QLabel("\n".join(["Mg"] * lines))
    probe.setWordWrap(True)  # a wrapped label lays its lines out as a text document: more room per line
    probe.setFont(label.font())
    return probe.heightForWidth(400) + 4  # a little slack: rounding differs between texts


def _text_width(widget: Any, text: str) -> int:
    fm = widget.fontMetrics()
    return fm.horizontalAdvance(text) if hasattr(fm, "horizontalAdvance") else fm.width(text)  # Qt < 5.11


def _retain_when_hidden(widget: Any) -> None:
    """Hiding ``widget`` keeps its place: nothing else moves when it comes and goes."""
    policy = widget.sizePolicy()
    policy.setRetainSizeWhenHidden(True)
    widget.setSizePolicy(policy)


class QtEventLoop:
    """``anycost_client.backend_link.EventLoop`` on Qt: socket notifiers and single-shot timers."""

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
        self.label = ElidedLabel(spec.label)
        self.label.setSizePolicy(Q.SIZE_FIXED, Q.SIZE_FIXED)
        self.label.setFixedWidth(SLIDER_LABEL_WIDTH)
        self.slider = Q.QSlider(Q.HORIZONTAL)
        self.slider.setObjectName(f"slider_{name}")
        self.slider.setRange(int(round(spec.lo * self.scale)), int(round(spec.hi * self.scale)))
        self.slider.setValue(int(round(dialog.controller.sliders.get(name, spec.neutral) * self.scale)))
        self.value = Q.QLabel()
        self.value.setFixedWidth(_text_width(self.value, "+0.00") + 8)
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
    notifier and timer keep firing.

    Its size is fixed from the first frame by what it holds, not by the text that arrives later (status,
    latency, the backend's preview choice, notices): those have reserved room, so nothing moves under the
    pointer. It fits the screen it opens on (the sliders scroll), opens beside Krita's canvas rather than
    over it (``place``), and ``position`` is where the user left it, for the next time."""

    def __init__(self, controller: EditController, settings: Settings, parent: Any = None,
                 on_settings: Callable[[], None] | None = None):
        super().__init__(parent)
        self.controller = controller
        self.settings = settings
        self.setWindowTitle("Anycost Face Edit")
        self.setObjectName("anycost_face_edit_dialog")
        self.rows: dict[str, SliderRow] = {}
        self.thumbnail_updates = 0
        self.position: tuple[int, int] | None = None  # the frame's top-left when it closed
        self.placed_at: tuple[int, int] | None = None  # where ``place_on_screen`` put it
        self._build(on_settings)
        controller.on_change = self._changed
        self.refresh()
        self.fit_to_screen()

    # ------------------------------------------------------------------ layout
    def _build(self, on_settings: Callable[[], None] | None) -> None:
        c = self.controller
        outer = Q.QVBoxLayout(self)
        self.status_box, self.status = text_box(STATUS_LINES, "status")
        outer.addWidget(self.status_box)
        self.progress = Q.QProgressBar()
        self.progress.setObjectName("progress")
        self.progress.setRange(0, 100)
        self.progress.setTextVisible(True)
        outer.addWidget(self.progress)

        body = Q.QHBoxLayout()
        outer.addLayout(body, 1)
        left = Q.QVBoxLayout()
        body.addLayout(left)
        self.thumbnail = Q.QLabel()
        self.thumbnail.setObjectName("thumbnail")
        self.thumbnail.setFixedSize(THUMB_SIDE, THUMB_SIDE)
        self.thumbnail.setAlignment(Q.ALIGN_CENTER)
        left.addWidget(self.thumbnail)
        self.notice_box, self.notice = text_box(NOTICE_LINES, "notice")
        self.notice_box.setFixedWidth(THUMB_SIDE)
        left.addWidget(self.notice_box)
        left.addStretch(1)

        column = Q.QWidget()
        column.setFixedWidth(RIGHT_COLUMN_WIDTH)
        right = Q.QVBoxLayout(column)
        right.setContentsMargins(0, 0, 0, 0)
        body.addWidget(column)
        self.slider_box = Q.QGroupBox("Directions")
        box_layout = Q.QVBoxLayout(self.slider_box)
        # the sliders scroll: a model with many directions, or a small screen, never pushes Apply off it
        self.slider_scroll = Q.QScrollArea()
        self.slider_scroll.setObjectName("slider_scroll")
        self.slider_scroll.setWidgetResizable(True)
        self.slider_scroll.setFrameShape(Q.NO_FRAME)
        self.slider_scroll.setHorizontalScrollBarPolicy(Q.SCROLLBAR_OFF)
        grid_host = Q.QWidget()
        grid_host.setObjectName("slider_grid")
        rows_layout = Q.QVBoxLayout(grid_host)
        rows_layout.setContentsMargins(0, 0, 0, 0)
        self.grid = Q.QGridLayout()
        self.grid.setColumnStretch(1, 1)
        rows_layout.addLayout(self.grid)
        rows_layout.addStretch(1)  # rows stay at the top
        self.slider_scroll.setWidget(grid_host)
        self.row_height = max(Q.QSlider(Q.HORIZONTAL).sizeHint().height(), Q.QToolButton().sizeHint().height()) + \
            max(0, self.grid.verticalSpacing())
        self.slider_scroll.setMinimumHeight(MIN_SLIDER_ROWS * self.row_height)
        box_layout.addWidget(self.slider_scroll)
        right.addWidget(self.slider_box, 1)
        row = Q.QHBoxLayout()
        right.addLayout(row)
        # directions the model hides (unnamed ones such as sefa_3 mean nothing to an artist) on request
        self.show_hidden = Q.QCheckBox("Show unnamed directions")
        self.show_hidden.setObjectName("show_hidden")
        self.show_hidden.setToolTip("Directions the model file hides from the dialog (see `anycost directions set`)")
        self.show_hidden.toggled.connect(self._show_hidden_toggled)
        _retain_when_hidden(self.show_hidden)
        row.addWidget(self.show_hidden, 1)
        self.reset_all = Q.QPushButton("Reset all")
        self.reset_all.setObjectName("reset_all")
        self.reset_all.clicked.connect(lambda *_: c.reset_all())
        row.addWidget(self.reset_all)

        form = Q.QFormLayout()
        form.setLabelAlignment(Q.ALIGN_TOP_LEFT)  # beside the first line of a field with lines reserved
        right.addLayout(form)
        self.quality = Q.QComboBox()
        self.quality.setObjectName("quality")
        self.quality.setSizeAdjustPolicy(Q.COMBO_MIN_LENGTH)
        self.quality.setMinimumContentsLength(20)
        self.quality.currentIndexChanged.connect(self._quality_changed)
        form.addRow("Preview quality", self.quality)
        self.latency = reserved_label(2, "latency")
        self.latency.setText("–")
        self.latency.setToolTip("Slider moved → preview drawn on the canvas, with the backend's render time")
        form.addRow("Preview latency", self.latency)
        self.choice = reserved_label(3, "preview_choice")
        self.choice.setToolTip("The sub-generator the backend picked for Auto previews, and its cost on the "
                               "backend's machine")
        form.addRow("Auto preview", self.choice)

        buttons = Q.QDialogButtonBox()
        self.apply_button = buttons.addButton("Apply", Q.ROLE_ACCEPT)
        self.apply_button.setObjectName("apply")
        self.cancel_button = buttons.addButton("Cancel", Q.ROLE_REJECT)
        self.cancel_button.setObjectName("cancel")
        # "Cancel" becomes "Close" when the edit failed: room for both from the start
        self.cancel_button.setMinimumWidth(max(self.cancel_button.sizeHint().width(),
                                               _text_width(self.cancel_button, "Close") + 24))
        if on_settings is not None:
            settings_button = buttons.addButton("Settings…", Q.ROLE_RESET)
            settings_button.clicked.connect(lambda *_: on_settings())
        self.retry_button = buttons.addButton("Retry", Q.ROLE_ACTION)
        self.retry_button.setObjectName("retry")
        self.retry_button.setToolTip("Look for the backend again, or start it")
        self.retry_button.clicked.connect(lambda *_: c.retry())
        _retain_when_hidden(self.retry_button)  # Apply and Cancel stay where they are when it comes and goes
        self.apply_button.clicked.connect(lambda *_: self.apply())
        self.cancel_button.clicked.connect(lambda *_: self.reject())
        outer.addWidget(buttons)
        self._fill_quality()

    # ------------------------------------------------------------------ size and place on the screen
    def available_geometry(self, at: tuple[int, int] | None = None) -> Any:
        """The available area (without panels and docks) of the screen at ``at``, else of the screen Krita's
        window is on, else of the primary screen."""
        screen = None
        if at is not None:
            screen = Q.QGuiApplication.screenAt(Q.QPoint(*at))
        parent = self.parentWidget()
        if screen is None and parent is not None:
            screen = Q.QGuiApplication.screenAt(parent.frameGeometry().center())
        if screen is None:
            screen = Q.QGuiApplication.primaryScreen()
        return screen.availableGeometry()

    def fit_to_screen(self, available: Any = None) -> None:
        """Size the dialog for the screen: everything but the sliders at its natural height, the slider
        area ``PREFERRED_SLIDER_ROWS`` high where there is room, less (it scrolls) where there is not; never
        taller than the screen's available height."""
        avail = available if available is not None else self.available_geometry()
        self.layout().activate()
        limit = avail.height() - FRAME_ALLOWANCE
        base = self.minimumSizeHint().height()  # with the slider area at its smallest
        extra = max(0, (PREFERRED_SLIDER_ROWS - MIN_SLIDER_ROWS) * self.row_height)
        height = min(limit, base + extra)
        self.setMaximumHeight(max(limit, base))
        self.resize(self.sizeHint().width(), max(base, height))

    def place_on_screen(self, window: Any = None, avoid: Any = None, saved: tuple[int, int] | None = None,
                        available: Any = None) -> tuple[int, int]:
        """Move the dialog where ``place`` says (QRects in screen coordinates; ``window``: Krita's main
        window, ``avoid``: the selection, ``saved``: where the user left it last time)."""
        avail = available if available is not None else self.available_geometry(saved)
        if available is None and self.maximumHeight() > avail.height() - FRAME_ALLOWANCE:
            self.fit_to_screen(avail)  # another screen than the one the size was made for

        def rect(r: Any) -> Rect | None:
            return None if r is None else (r.x(), r.y(), r.width(), r.height())

        size = (self.width(), self.height() + FRAME_ALLOWANCE)
        x, y = place(size, rect(avail), rect(window), rect(avoid), saved)
        self.move(x, y)
        self.placed_at = (x, y)
        return x, y

    @property
    def moved_by_user(self) -> bool:
        """Closed somewhere else than where it was placed: a position to remember."""
        return self.position is not None and self.position != self.placed_at

    def done(self, result: int) -> None:  # accept, reject, Escape, the close button
        pos = self.pos()
        self.position = (pos.x(), pos.y())
        super().done(result)

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
        text = c.status_text()
        if self.status.text() != text:  # unchanged text keeps its selection and scroll position
            self.status.setText(text)
        frac = c.progress_fraction()
        if c.can_retry:
            self.progress.setRange(0, 100)  # given up: not busy
            self.progress.setValue(int(100 * (frac or 0.0)))
        elif c.phase in (Phase.CONNECTING, Phase.OPENING) and frac is None:
            self.progress.setRange(0, 0)  # busy
        else:
            self.progress.setRange(0, 100)
            self.progress.setValue(int(100 * (frac if frac is not None else (1.0 if c.phase != Phase.FAILED
                                                                               else 0.0))))
        self.latency.setText(c.latency_text())
        self.choice.setText(c.preview_choice_text() or "–")
        notice = c.display_notice()
        if self.notice.text() != notice:
            self.notice.setText(notice)
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
                        padding=self.padding.value(), refine_steps=self.refine.value(), quality=s.quality,
                        dialog_position=s.dialog_position)
