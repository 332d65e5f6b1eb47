"""The interactive dialog: sliders, preview quality, live previews, projection progress, Apply/Cancel.

All decisions live in ``anycost_client.backend_link`` (``BackendLink`` finds or starts the backend and
keeps the connection) and ``anycost_client.edit_controller`` (``EditController`` holds the edit); this
module draws their state with GTK and forwards what the user does. GLib's main loop drives the
connection: a watch on the socket's file descriptor and a 250 ms timer. Previews are shown in the
dialog, so the image is touched only by Apply (one undo step); Cancel, Escape or closing the window
leaves no trace.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gi

gi.require_version("GimpUi", "3.0")
gi.require_version("Gtk", "3.0")
gi.require_version("GdkPixbuf", "2.0")
gi.require_version("Gdk", "3.0")
gi.require_version("Pango", "1.0")
from face_edit_canvas import LayerRegion, add_result_layer  # noqa: E402
from face_edit_session import CLIENT_NAME, HOST  # noqa: E402
from face_edit_ui import (  # noqa: E402
    cost_label,
    dialog_sliders,
    fit_size,
    gimp_session,
    sliders_text,
)
from gi.repository import Gdk, GdkPixbuf, GimpUi, GLib, Gtk, Pango  # noqa: E402

from anycost_client.backend_link import BackendLink, LinkSettings, LinkState  # noqa: E402
from anycost_client.edit_controller import AUTO, EditController, Phase  # noqa: E402
from anycost_client.oneshot import model_matches, model_mismatch, served_model, start_args  # noqa: E402

PREVIEW_SIZE = 360
TICK_MS = 250
RESPONSE_RESET = 1
RESPONSE_REPROJECT = 2
RESPONSE_RETRY = 3
SLIDER_ROW_PX = 38  # one slider row (scale, label, value) in GTK's default theme
OTHER_ROWS_PX = 560  # everything else in the dialog's height: status, progress, options, notice, buttons


def slider_area_height(rows: int = 13) -> int:
    """Height of the scrolling slider area: ``rows`` rows where the screen has room, fewer (never under four)
    where it has not. Fixed before the sliders arrive, so the dialog does not grow when they do."""
    work = None
    display = Gdk.Display.get_default()
    if display is not None:
        monitor = display.get_primary_monitor() or (display.get_monitor(0) if display.get_n_monitors() else None)
        work = monitor.get_workarea() if monitor is not None else None
    room = (work.height - OTHER_ROWS_PX) if work is not None else rows * SLIDER_ROW_PX
    return max(4 * SLIDER_ROW_PX, min(rows * SLIDER_ROW_PX, room))


def reserved_label(lines: int, chars: int, selectable: bool = False) -> Gtk.Label:
    """A wrapped label whose size is fixed from the first frame: text arriving later (a status, a timing, a
    notice) neither widens the dialog nor pushes the sliders under the pointer. Longer text is cut at
    ``lines`` lines; ``set_label_text`` puts the whole of it in the tooltip."""
    label = Gtk.Label(xalign=0.0, yalign=0.0, wrap=True, width_chars=chars, max_width_chars=chars,
                      selectable=selectable)
    label.set_lines(lines)
    label.set_ellipsize(Pango.EllipsizeMode.END)
    line_height = label.create_pango_layout("Xg").get_pixel_size()[1]
    label.set_size_request(-1, lines * line_height)
    return label


def set_label_text(label: Gtk.Label, text: str, markup: str | None = None) -> None:
    # Pango limits an ellipsized label's lines per paragraph, so each line break would start another
    # ``lines`` lines; a line separator (U+2028) breaks the line within one paragraph, and the cut holds.
    if markup is None:
        label.set_text(text.replace("\n", "\u2028"))
    else:
        label.set_markup(markup.replace("\n", "\u2028"))
    label.set_tooltip_text(text or None)


class GLibEventLoop:
    """``anycost_client.backend_link.EventLoop`` on GLib."""

    def watch(self, fd: int, callback: Callable[[], None]) -> Any:
        def ready(*_):
            callback()
            return GLib.SOURCE_CONTINUE

        return GLib.unix_fd_add_full(GLib.PRIORITY_DEFAULT, fd, GLib.IOCondition.IN, ready)

    def unwatch(self, token: Any) -> None:
        GLib.source_remove(token)

    def call_later(self, seconds: float, callback: Callable[[], None]) -> None:
        def once():
            callback()
            return GLib.SOURCE_REMOVE

        GLib.timeout_add(max(0, int(seconds * 1000)), once)


class DialogCanvas:
    """``anycost_client.edit_controller.Canvas`` for GIMP: previews live in the dialog (the image is never
    touched before Apply), the result becomes a new layer."""

    def __init__(self, region: LayerRegion):
        self.region = region
        self.layer = None

    def show_preview(self, frame) -> None:
        pass  # the dialog redraws from ``EditController.preview_rgba``

    def write_result(self, rgba: bytes, name: str) -> None:
        self.layer = add_result_layer(self.region, bytes(rgba), name)

    def discard(self) -> None:
        pass  # nothing was drawn on the image


class FaceEditDialog:
    def __init__(self, config, region: LayerRegion, link: BackendLink):
        self.config, self.region, self.link = config, region, link
        self.model = (config.get_property("model") or "").strip()  # empty: whatever the backend serves
        self.model_error = ""
        self.canvas = DialogCanvas(region)
        self.adjustments: dict[str, Gtk.Adjustment] = {}
        self._loop = GLib.MainLoop()
        self._build()
        self.controller = self._new_controller(int(config.get_property("refine-steps")), self._initial_sliders())

    def _initial_sliders(self) -> dict[str, float]:
        """The last applied values when they were applied in this GIMP session, else none (all at zero)."""
        from face_edit_options import OptionsError, parse_sliders

        try:
            stored = parse_sliders(self.config.get_property("sliders") or "")
        except OptionsError:
            return {}
        return dialog_sliders(stored, self.config.get_property("gimp-session") or "", gimp_session())

    def _new_controller(self, refine_steps: int, sliders: dict[str, float]) -> EditController:
        controller = EditController(self.link, self.region, self.canvas, refine_steps=refine_steps,
                                    on_change=self._changed)
        self._wanted = dict(sliders)  # applied once the backend names its directions
        return controller

    # ------------------------------------------------------------------ widgets
    def _build(self) -> None:
        d = self.dialog = GimpUi.Dialog(title="Anycost Face Edit", role="anycost-face-edit", modal=True)
        d.add_button("_Reset", RESPONSE_RESET)
        # shown only when the backend link gave up; the edit stays open meanwhile
        self.retry_button = d.add_button("_Retry", RESPONSE_RETRY)
        self.retry_button.set_no_show_all(True)
        d.add_button("_Cancel", Gtk.ResponseType.CANCEL)
        d.add_button("_Apply", Gtk.ResponseType.OK)
        d.set_default_response(Gtk.ResponseType.OK)
        d.connect("response", self._on_response)

        box = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=12, border_width=12)
        d.get_content_area().pack_start(box, True, True, 0)

        r = self.region
        self.preview_size = fit_size(r.width, r.height, PREVIEW_SIZE)
        self.preview = Gtk.Image()
        self.preview.set_size_request(*self.preview_size)
        frame = Gtk.Frame()
        frame.add(self.preview)
        left = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=6)
        left.pack_start(frame, False, False, 0)
        self.show_original = Gtk.CheckButton(label="Show _original", use_underline=True)
        self.show_original.connect("toggled", lambda *_: self._draw_preview())
        left.pack_start(self.show_original, False, False, 0)
        box.pack_start(left, False, False, 0)

        right = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=8)
        right.set_size_request(320, -1)
        box.pack_start(right, True, True, 0)
        self.status = reserved_label(4, 44, selectable=True)
        right.pack_start(self.status, False, False, 0)
        self.progress = Gtk.ProgressBar()
        right.pack_start(self.progress, False, False, 0)
        self.sliders_grid = Gtk.Grid(column_spacing=8, row_spacing=4)
        # the sliders scroll in an area of fixed height: the dialog keeps its size when they arrive, and
        # fits a small screen whatever the number of directions
        scroller = Gtk.ScrolledWindow(hscrollbar_policy=Gtk.PolicyType.NEVER,
                                      vscrollbar_policy=Gtk.PolicyType.AUTOMATIC)
        scroller.set_min_content_height(slider_area_height())
        scroller.add(self.sliders_grid)
        right.pack_start(scroller, True, True, 0)
        # directions the model hides (unnamed ones such as sefa_3 mean nothing to an artist) on request
        self.show_hidden = Gtk.CheckButton(label="Show unnamed directions", use_underline=False)
        self.show_hidden.connect("toggled", self._on_show_hidden)
        right.pack_start(self.show_hidden, False, False, 0)

        form = Gtk.Grid(column_spacing=6, row_spacing=6)
        right.pack_start(form, False, False, 0)
        form.attach(Gtk.Label(label="Preview quality", xalign=0.0), 0, 0, 1, 1)
        self.quality = Gtk.ComboBoxText(hexpand=True)
        self.quality.connect("changed", self._on_quality)
        form.attach(self.quality, 1, 0, 2, 1)
        # Two timings that measure different things, each saying which: the newest preview as shown here
        # (slider moved → picture drawn), and what Fast is on this backend, timed once when it was chosen.
        form.attach(Gtk.Label(label="Last preview", xalign=0.0, yalign=0.0), 0, 1, 1, 1)
        self.latency = reserved_label(2, 36, selectable=True)
        self.latency.set_text("–")
        form.attach(self.latency, 1, 1, 2, 1)
        form.attach(Gtk.Label(label="Fast previews", xalign=0.0, yalign=0.0), 0, 2, 1, 1)
        self.choice = reserved_label(3, 36, selectable=True)
        self.choice.set_text("–")
        form.attach(self.choice, 1, 2, 2, 1)
        form.attach(Gtk.Label(label="Likeness (refinement steps)", xalign=0.0), 0, 3, 1, 1)
        self.steps = Gtk.SpinButton.new_with_range(0, 1000, 10)
        self.steps.set_value(self.config.get_property("refine-steps"))
        form.attach(self.steps, 1, 3, 1, 1)
        reproject = Gtk.Button(label="Re-_project", use_underline=True)
        reproject.connect("clicked", lambda *_: self._on_response(d, RESPONSE_REPROJECT))
        form.attach(reproject, 2, 3, 1, 1)
        self.notice = reserved_label(4, 44)
        right.pack_start(self.notice, False, False, 0)
        self._quality_items: list[str] = []

    def _draw_preview(self) -> None:
        r = self.region
        data = r.rgba if self.show_original.get_active() else bytes(self.controller.preview_rgba)
        pixbuf = GdkPixbuf.Pixbuf.new_from_bytes(GLib.Bytes.new(data), GdkPixbuf.Colorspace.RGB, True, 8,
                                                 r.width, r.height, r.width * 4)
        if (r.width, r.height) != self.preview_size:
            pixbuf = pixbuf.scale_simple(*self.preview_size, GdkPixbuf.InterpType.BILINEAR)
        self.preview.set_from_pixbuf(pixbuf)

    def _rebuild_sliders(self) -> None:
        c = self.controller
        if list(self.adjustments) == list(c.specs):
            return
        for child in self.sliders_grid.get_children():
            self.sliders_grid.remove(child)
        self.adjustments.clear()
        first = None
        for row, (name, spec) in enumerate(c.specs.items()):
            adj = Gtk.Adjustment(value=c.sliders.get(name, spec.neutral), lower=spec.lo, upper=spec.hi,
                                 step_increment=0.01, page_increment=0.1)
            adj.connect("value-changed", self._on_slider, name)
            scale = Gtk.Scale(orientation=Gtk.Orientation.HORIZONTAL, adjustment=adj, digits=2, hexpand=True)
            scale.set_value_pos(Gtk.PositionType.RIGHT)
            label = Gtk.Label(label=spec.label, xalign=0.0)
            self.sliders_grid.attach(label, 0, row, 1, 1)
            self.sliders_grid.attach(scale, 1, row, 1, 1)
            self.adjustments[name] = adj
            first = first or scale
        self.sliders_grid.show_all()
        if first is not None:
            first.grab_focus()  # the arrow keys move the first slider right away

    def _fill_quality(self) -> None:
        items = [AUTO, *self.controller.levels, "full"]
        if items == self._quality_items:
            return
        self._quality_items = items
        self.quality.remove_all()
        for key in items:
            self.quality.append(key, cost_label("preview" if key == AUTO else key))
        self.quality.set_active_id(self.controller.quality if self.controller.quality in items else AUTO)

    # ------------------------------------------------------------------ controller → widgets
    def _changed(self, what: str) -> None:
        if what == "done":
            self._finish(applied=True)
            return
        if what == "sliders" and self._wanted:
            wanted, self._wanted = self._wanted, {}
            for name, value in wanted.items():
                if name in self.controller.specs:
                    self.controller.set_slider(name, value)
        if what in ("preview", "progress"):
            self._draw_preview()
        self._refresh()

    def _check_model(self) -> None:
        """A running backend serving another model than the ``model`` argument asks for: say so and stop
        (a backend this dialog started was started with that model)."""
        if not self.model or self.model_error or self.link.state != LinkState.CONNECTED or self.link.owns_backend:
            return
        served = served_model(self.link.welcome)
        if not model_matches(self.model, served):
            info = self.link.connection_file.name if self.link.connection_file else None
            self.model_error = model_mismatch(self.model, served) + (f" (connection file {info})" if info else "")
            if not self.controller.finished:
                self.controller.cancel()

    def _refresh(self) -> None:
        c = self.controller
        self._check_model()
        if self.model_error:
            set_label_text(self.status, self.model_error,
                           f'<span foreground="#c01c28">{GLib.markup_escape_text(self.model_error)}</span>')
            self.dialog.set_response_sensitive(Gtk.ResponseType.OK, False)
            self.dialog.set_response_sensitive(RESPONSE_RESET, False)
            self.sliders_grid.set_sensitive(False)
            self.progress.set_fraction(0.0)
            return
        self._rebuild_sliders()
        for name, adj in self.adjustments.items():
            value = c.sliders.get(name, 0.0)
            if abs(adj.get_value() - value) > 1e-9:
                adj.handler_block_by_func(self._on_slider)
                adj.set_value(value)
                adj.handler_unblock_by_func(self._on_slider)
        self._fill_quality()
        text = c.status_text()
        gave_up = c.phase == Phase.FAILED or c.can_retry
        self.retry_button.set_visible(c.can_retry)
        if gave_up:
            set_label_text(self.status, text, f'<span foreground="#c01c28">{GLib.markup_escape_text(text)}</span>')
        else:
            set_label_text(self.status, text)
        frac = c.progress_fraction()
        if frac is None and c.phase in (Phase.CONNECTING, Phase.OPENING, Phase.APPLYING) and not gave_up:
            self.progress.pulse()
        else:
            self.progress.set_fraction(frac if frac is not None else (0.0 if gave_up else 1.0))
        set_label_text(self.latency, c.latency_text())
        set_label_text(self.choice, c.preview_choice_text() or "–")
        ready = c.phase == Phase.READY and self.link.state == LinkState.CONNECTED
        # Apply needs a moved slider, as a script's call does; else Filters > Repeat would store no edit
        edited = c.has_edit
        set_label_text(self.notice, c.display_notice() or ("" if edited or not ready
                                                          else "Move a slider to apply an edit."))
        hidden = c.hidden_sliders
        self.show_hidden.set_label(f"Show unnamed directions ({len(hidden)})")
        # kept in the layout (invisible and inert) when there is nothing to show, so nothing below it moves
        self.show_hidden.set_opacity(1.0 if hidden else 0.0)
        self.show_hidden.set_sensitive(bool(hidden))
        self.dialog.set_response_sensitive(Gtk.ResponseType.OK, ready and edited)
        self.dialog.set_response_sensitive(RESPONSE_RESET, ready)
        self.sliders_grid.set_sensitive(c.phase in (Phase.CONNECTING, Phase.OPENING, Phase.READY))

    # ------------------------------------------------------------------ user actions
    def _on_slider(self, adj: Gtk.Adjustment, name: str) -> None:
        if name in self.controller.specs:
            self.controller.set_slider(name, round(adj.get_value(), 4))

    def _on_quality(self, combo: Gtk.ComboBoxText) -> None:
        key = combo.get_active_id()
        if key and key != self.controller.quality:
            self.controller.set_quality(key)

    def _on_response(self, _dialog, response) -> None:
        c = self.controller
        if response == RESPONSE_RESET:
            c.reset_all()
        elif response == RESPONSE_RETRY:
            c.retry()
            self._refresh()
        elif response == RESPONSE_REPROJECT:
            if c.phase in (Phase.APPLYING, Phase.DONE) or self.model_error:
                return
            sliders, quality = dict(c.sliders), c.quality
            c.cancel()
            self.controller = self._new_controller(int(self.steps.get_value()), sliders)
            self.controller.quality = quality
            self.controller.start()
            self._refresh()
        elif response == Gtk.ResponseType.OK:
            if c.phase == Phase.READY and c.has_edit:
                # no face found, or a face beyond the model: ask before writing a layer
                if c.confirm_apply and not self.confirm(c.apply_question()):
                    return
                c.apply()
                self._refresh()
        else:  # Cancel, Escape, the window's close button
            if not c.finished:
                c.cancel()
            self._finish(applied=False)

    def confirm(self, question: str) -> bool:
        """Ask before applying; "Apply anyway" is not the default, so a reflexive Enter writes nothing."""
        box = Gtk.MessageDialog(transient_for=self.dialog, modal=True, message_type=Gtk.MessageType.QUESTION,
                                buttons=Gtk.ButtonsType.NONE, text="Apply the edit?", title="Apply the edit?")
        box.format_secondary_text(question)
        box.add_button("_Don't apply", Gtk.ResponseType.NO)
        box.add_button("_Apply anyway", Gtk.ResponseType.YES)
        box.set_default_response(Gtk.ResponseType.NO)
        answer = box.run()
        box.destroy()
        return answer == Gtk.ResponseType.YES

    def _on_show_hidden(self, button) -> None:
        self.controller.set_show_hidden(button.get_active())
        self._refresh()

    def _finish(self, applied: bool) -> None:
        if applied:
            self.config.set_property("sliders", sliders_text(self.controller.sliders))
            self.config.set_property("refine-steps", int(self.steps.get_value()))
            self.config.set_property("gimp-session", gimp_session())
        self.dialog.hide()
        self._loop.quit()

    def _tick(self) -> bool:
        self.link.tick()
        if self.controller.phase in (Phase.CONNECTING, Phase.OPENING, Phase.APPLYING):
            self._refresh()  # keeps the busy bar moving
        return GLib.SOURCE_CONTINUE

    def run(self):
        """Show the dialog until Apply or Cancel; returns the new layer, or None."""
        self.dialog.show_all()
        self._draw_preview()
        self._refresh()
        timer = GLib.timeout_add(TICK_MS, self._tick)
        GLib.idle_add(lambda: self.controller.start() and False)
        try:
            self._loop.run()
            self._let_close_reach_backend()
        finally:
            GLib.source_remove(timer)
            self.link.shutdown()
            self.dialog.destroy()
        return self.canvas.layer

    def _let_close_reach_backend(self, timeout: float = 1.0) -> None:
        """The session's close was sent on Apply/Cancel; wait (briefly) for its answer before the socket
        closes, or the backend keeps the session until it times out."""
        closed = []

        class Listener:
            def link_changed(self, _link) -> None:
                pass

            def backend_message(self, msg) -> None:
                if msg.type == "done" and msg.get("what") == "close":
                    closed.append(msg)

        if self.link.state != LinkState.CONNECTED:
            return
        listener = Listener()
        self.link.add_listener(listener)
        context, deadline = GLib.MainContext.default(), GLib.get_monotonic_time() + int(timeout * 1e6)
        while not closed and GLib.get_monotonic_time() < deadline:
            if not context.iteration(False):
                GLib.usleep(5000)
        self.link.remove_listener(listener)


def run_dialog(config, region: LayerRegion):
    """Show the dialog; the new layer after Apply, None after Cancel."""
    GimpUi.init("plug-in-anycost-face-edit")
    model = (config.get_property("model") or "").strip()
    link = BackendLink(GLibEventLoop(), LinkSettings(host=HOST, client_name=CLIENT_NAME, keep_backend=True,
                                                     backend_args=start_args(model)))
    return FaceEditDialog(config, region, link).run()
