"""The host-neutral state machine of one face edit: what the dialog shows and sends.

No GUI toolkit here. A host plugin supplies, besides the ``BackendLink`` (``backend_link.py``):

- a ``Canvas``: show a preview on the canvas, write the result, remove every trace of previews;
- a ``Region`` (``regions.Region``): the pixels to edit, already in RGBA8.

``EditController`` (one per dialog) holds the state the dialog shows: slider values, the preview
quality, the projection's progress, the preview latency. It sends edits (latest wins on the
backend), draws previews through the canvas, commits and writes the result on Apply, removes
previews on Cancel. When the backend is lost it says so and, once a backend answers again, replays
its state: it reopens the session with the region it kept and resends the sliders (or the commit),
so the dialog loses nothing.

Everything runs on the host's main thread; nothing here blocks.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from . import protocol as P
from .backend_link import BackendLink, LinkState
from .connection import SessionState
from .protocol import Message
from .regions import Region, paste_box

__all__ = [
    "AUTO",
    "PREVIEW_SOURCES",
    "Canvas",
    "EditController",
    "Phase",
    "PreviewFrame",
    "SliderSpec",
    "edit_layer_name",
    "last_preview_text",
    "preview_choice_text",
]

log = logging.getLogger("anycost.plugin")

AUTO = "auto"  # preview quality: the backend picks the sub-generator that fits its latency budget


class Phase(str, enum.Enum):
    CONNECTING = "connecting"  # waiting for the link
    OPENING = "opening"  # region sent: alignment and projection
    READY = "ready"  # sliders move, previews stream
    APPLYING = "applying"  # full render requested
    DONE = "done"  # result written
    CANCELLED = "cancelled"
    FAILED = "failed"  # this edit cannot go on; ``message`` says why


@dataclass(frozen=True)
class SliderSpec:
    name: str
    lo: float
    hi: float
    hidden: bool = False  # the model keeps it, but a dialog leaves it out (see EditController.show_hidden)

    @property
    def label(self) -> str:
        return self.name.replace("_", " ").capitalize()

    @property
    def neutral(self) -> float:
        return min(max(0.0, self.lo), self.hi)


@dataclass
class PreviewFrame:
    seq: int | None
    box: tuple[int, int, int, int] | None  # region coordinates; None: nothing differs from the region
    rgba: bytes  # RGBA8 pixels of the box
    previous_box: tuple[int, int, int, int] | None  # what the canvas showed before
    cost: str | None = None
    render_ms: float | None = None
    latency_ms: float | None = None  # edit sent → preview received


class Canvas(Protocol):
    """The host's side of an edit: everything that touches the document."""

    def show_preview(self, frame: PreviewFrame) -> None:
        """Draw ``frame`` (pixels of ``frame.box``, RGBA8, region coordinates) on the canvas; pixels of
        ``frame.previous_box`` outside the new box go back to the original."""

    def write_result(self, rgba: bytes, name: str) -> None:
        """Write the whole region's final pixels (RGBA8) as a new layer called ``name``, as one undo
        step, and remove the preview."""

    def discard(self) -> None:
        """Remove every trace of previews; the document is as it was before the dialog opened."""


def edit_layer_name(sliders: dict[str, float], base: str = "Anycost Face Edit") -> str:
    """The new layer's name: the edit, e.g. ``Anycost Face Edit (smile +0.60, age -0.30)``."""
    moved = [f"{k} {v:+.2f}" for k, v in sliders.items() if abs(v) >= 0.005]
    return f"{base} ({', '.join(moved)})" if moved else base


# How the backend chose the preview sub-generator (welcome/ready ``preview_source``), in words.
PREVIEW_SOURCES = {"search": "searched", "uniform": "uniform ratio", "table": "published table",
                   "published": "published table"}
_STAGES = {"align": "Finding the face", "encode": "Encoding the face", "refine": "Refining the projection"}


class EditController:
    """One edit of one region; drive it from the dialog, read its attributes to draw the dialog.

    ``on_change(what)`` is called with ``"status"``, ``"sliders"``, ``"quality"``, ``"progress"``,
    ``"preview"``, ``"done"``, ``"cancelled"`` or ``"failed"``.
    """

    def __init__(self, link: BackendLink, region: Region, canvas: Canvas, *, quality: str = AUTO,
                 refine_steps: int = 0, align: bool = True, on_change: Callable[[str], None] | None = None,
                 min_edit_interval: float = 0.02):
        self.link = link
        self.region = region
        self.canvas = canvas
        self.quality = quality
        self.refine_steps = refine_steps
        self.align = align
        self.on_change = on_change
        self.min_edit_interval = min_edit_interval
        self.phase = Phase.CONNECTING
        self.message = "Connecting to the backend…"
        self.error: str | None = None  # last non-fatal error, for the status line
        self.notice: str | None = None  # alignment fallback sentence from the backend
        self.face_notices: list[str] = []  # the ready's notices: no face found, a face beyond the model
        self.confirm_apply = False  # the backend advises asking before Apply writes a layer
        self.sliders: dict[str, float] = {}  # every direction's value, hidden ones included
        self.all_specs: dict[str, SliderSpec] = {}  # every direction the backend announced, in its order
        self.show_hidden = False  # whether ``specs`` includes the hidden directions
        self.levels: list[str] = []
        self.progress: dict[str, Any] = {}
        self.latency_ms: float | None = None  # slider moved → preview drawn on the canvas
        self.render_ms: float | None = None  # of that preview, on the backend
        self.draw_ms: float | None = None  # of that preview, on the canvas
        self.preview_choice: dict[str, Any] = {}  # the backend's preview sub-generator (welcome's "costs")
        self.preview_cost: str | None = None
        self.previews_shown = 0
        self.sessions_opened = 0
        self.preview_rgba = bytearray(region.rgba)  # the region with the newest preview on top (thumbnail)
        self.result_name: str | None = None
        self._state: SessionState | None = None
        self._sent_at: dict[int, float] = {}
        self._shown_box: tuple[int, int, int, int] | None = None
        self._last_edit_at = 0.0
        self._flush_scheduled = False
        self._dirty = False  # sliders or quality changed since the last edit sent
        self._commit_rid: Any = None
        self._open_epoch = -1  # link.reconnects when the session was opened: a later welcome means a replay
        link.add_listener(self)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.link.ensure()
        self._directions_from(self.link.welcome.get("directions"))
        self._levels_from(self.link.welcome)
        if self.link.connected:
            self._open()
        else:
            self.link_changed(self.link)

    @property
    def finished(self) -> bool:
        return self.phase in (Phase.DONE, Phase.CANCELLED, Phase.FAILED)

    @property
    def model_notices(self) -> list[str]:
        """What the backend says the user should know about its model (welcome ``models[0].notices``),
        e.g. that a plain StyleGAN2's previews are approximate."""
        models = self.link.welcome.get("models") or [{}]
        notes = models[0].get("notices") if isinstance(models[0], dict) else None
        return [str(n) for n in notes] if isinstance(notes, list) else []

    @property
    def has_edit(self) -> bool:
        """Whether any slider is off zero: an unedited projection is not an edit, so Apply waits for one."""
        return any(v != 0 for v in self.sliders.values())

    def apply_question(self) -> str:
        """What a dialog asks before applying when ``confirm_apply`` is set."""
        why = "\n\n".join(self.face_notices) or "The backend advises checking this edit before applying it."
        return f"{why}\n\nApply the edit anyway?"

    def display_notice(self) -> str:
        """The dialog's notice line: what is known about this face (alignment, whether it is beyond the
        model), then about the model."""
        face = self.face_notices or [self.notice or ""]
        return "\n".join(n for n in [*face, *self.model_notices] if n)

    def _emit(self, what: str) -> None:
        if self.on_change is not None:
            self.on_change(what)

    def _status(self, message: str, phase: Phase | None = None) -> None:
        if phase is not None:
            self.phase = phase
        self.message = message
        self._emit("status")

    def _fail(self, message: str) -> None:
        log.error("edit failed: %s", message)
        self._close_session()
        self._discard_canvas()
        self.link.remove_listener(self)
        self._status(message, Phase.FAILED)
        self._emit("failed")

    # ------------------------------------------------------------------ sliders and quality
    @property
    def specs(self) -> dict[str, SliderSpec]:
        """The sliders a dialog shows: the backend's directions less the hidden ones (unless ``show_hidden``)."""
        return {n: s for n, s in self.all_specs.items() if self.show_hidden or not s.hidden}

    @property
    def hidden_sliders(self) -> list[str]:
        """Directions the model marks hidden; ``set_slider`` still takes them by name."""
        return [n for n, s in self.all_specs.items() if s.hidden]

    def set_show_hidden(self, show: bool) -> None:
        if bool(show) != self.show_hidden:
            self.show_hidden = bool(show)
            self._emit("sliders")

    def _directions_from(self, directions: Any) -> None:
        if not isinstance(directions, dict) or not directions:
            return
        specs = {}
        for name, d in directions.items():
            lo, hi = (d or {}).get("range", (-1.0, 1.0))
            specs[str(name)] = SliderSpec(str(name), float(lo), float(hi), (d or {}).get("hidden") is True)
        if specs != self.all_specs:
            self.all_specs = specs
            self.sliders = {n: min(max(self.sliders.get(n, s.neutral), s.lo), s.hi) for n, s in specs.items()}
            self._emit("sliders")

    def _levels_from(self, welcome: dict) -> None:
        costs = welcome.get("costs") or {}
        self.levels = [str(x) for x in costs.get("levels") or []]
        self.preview_choice = dict(costs) if isinstance(costs, dict) else {}
        if self.quality not in (AUTO, "full") and self.levels and self.quality not in self.levels:
            # a fixed cost remembered from another backend or model: every preview would be refused
            log.info("preview quality %r is not offered by this backend; using auto", self.quality)
            self.quality = AUTO
            self._emit("quality")

    def set_slider(self, name: str, value: float) -> None:
        spec = self.all_specs.get(name)
        if spec is None:
            raise KeyError(f"unknown slider {name!r}")
        value = min(max(float(value), spec.lo), spec.hi)
        if self.sliders.get(name) == value:
            return
        self.sliders[name] = value
        self._changed()

    def reset_slider(self, name: str) -> None:
        self.set_slider(name, self.all_specs[name].neutral)
        self._emit("sliders")

    def reset_all(self) -> None:
        changed = False
        for name, spec in self.all_specs.items():
            if self.sliders.get(name) != spec.neutral:
                self.sliders[name] = spec.neutral
                changed = True
        if changed:
            self._changed()
        self._emit("sliders")

    def set_quality(self, quality: str) -> None:
        if quality != AUTO and self.levels and quality not in self.levels and quality != "full":
            raise ValueError(f"unknown preview quality {quality!r}; choose auto or one of {self.levels}")
        if quality != self.quality:
            self.quality = quality
            self._changed()

    @property
    def wire_quality(self) -> str:
        return "preview" if self.quality == AUTO else self.quality

    def _changed(self) -> None:
        self._dirty = True
        if self.phase == Phase.READY:
            self._send_edit_soon()

    def _send_edit_soon(self) -> None:
        """Latest wins on the backend too, but a fast drag need not send hundreds of messages a second."""
        wait = self._last_edit_at + self.min_edit_interval - time.monotonic()
        if wait <= 0:
            self._send_edit()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self.link.call_later(wait, self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._dirty and self.phase == Phase.READY:
            self._send_edit()

    def _send_edit(self) -> None:
        state = self._state
        if state is None or state.sid is None:
            return
        rid = self.link.send(lambda c: c.edit(state, dict(self.sliders), self.wire_quality))
        if rid is None:
            return  # no connection: the replay after reconnecting sends the state
        self._dirty = False
        self._last_edit_at = time.monotonic()
        self._sent_at[state.last_sent_seq] = self._last_edit_at
        if len(self._sent_at) > 256:
            for seq in sorted(self._sent_at)[:-128]:
                del self._sent_at[seq]

    # ------------------------------------------------------------------ session
    def _open(self) -> None:
        self.progress = {}
        r = self.region
        options: dict[str, Any] = {"channel_order": "RGBA", "align": self.align, "refine_steps": self.refine_steps}
        state = self.link.send(lambda c: c.open_session(r.rgba, r.width, r.height, mask=r.mask, **options))
        if state is None:
            return  # the link is down; opening again once it is back
        self._state = state
        self._open_epoch = self.link.reconnects
        self._sent_at.clear()
        self.sessions_opened += 1
        self._status("Sending the region…" if self.sessions_opened == 1 else "Sending the region again…",
                     Phase.OPENING)

    def _close_session(self) -> None:
        state, self._state = self._state, None
        if state is not None and state.sid is not None and not state.closed:
            self.link.send(lambda c: c.close_session(state))

    def _ours(self, msg: Message) -> bool:
        st = self._state
        if st is None:
            return False
        if msg.request_id is not None and msg.request_id == st.open_request:
            return True
        return st.sid is not None and msg.session_id == st.sid

    # ------------------------------------------------------------------ link events
    def link_changed(self, link: BackendLink) -> None:
        if self.finished:
            return
        if link.state == LinkState.FAILED:
            # the link gave up (for now: it keeps looking, and ``retry`` tries again): the edit keeps its
            # region, sliders and previews in every phase, so that Retry can carry on where it stopped.
            # The status line says why, once: it is not an error of this edit as well
            self.error = None
            self._status(link.message)
            return
        if link.state == LinkState.CONNECTED:
            self._levels_from(link.welcome)
            self._directions_from(link.welcome.get("directions"))
            if self.phase == Phase.CONNECTING:
                self._open()  # the first connection; after a loss ``_replay`` resends the state
            elif self.phase in (Phase.READY, Phase.APPLYING):
                self._status("Ready" if self.phase == Phase.READY else "Rendering the result…")
            return
        # connecting, starting, reconnecting: say so; the state stays for the replay
        self._status(link.message)

    def backend_message(self, msg: Message) -> None:
        if self.finished:
            return
        if msg.type == "welcome":
            if self.link.reconnects != self._open_epoch:
                self._replay()
            return
        if not self._ours(msg):
            return
        handler = getattr(self, f"_on_{msg.type}", None)
        if handler is not None:
            handler(msg)

    def _replay(self) -> None:
        """A backend answers again after a loss: resend what it may have lost. A session it no longer
        knows is answered ``no_such_session`` and reopened."""
        log.info("replaying the edit state after a reconnect (phase %s)", self.phase.value)
        st = self._state
        if st is None:
            if self.phase in (Phase.OPENING, Phase.READY, Phase.APPLYING):
                self._open_again()
        elif st.sid is None:
            self._open()  # not even the open's first answer came: send it again
        elif self.phase == Phase.OPENING:
            # still projecting on a backend that lived through the silence? A request on the session
            # answers: ``done``, or ``no_such_session`` and it is reopened
            self.link.send(lambda c: c.cancel(st, "edit"))
        elif self.phase == Phase.READY:
            self._send_edit()
        elif self.phase == Phase.APPLYING:
            self._send_commit()

    def _on_progress(self, msg: Message) -> None:
        stage = msg.get("stage")
        self.progress = {"stage": stage, "step": msg.get("step"), "steps": msg.get("steps"), "psnr": msg.get("psnr")}
        if msg.get("notice"):
            self.notice = msg.get("notice")
        box = msg.get("box")
        if box and msg.frames:
            self.preview_rgba = bytearray(self.region.rgba)
            paste_box(self.preview_rgba, self.region.width, tuple(box), msg.frames[0].packed())
        label = _STAGES.get(str(stage), "Working")
        steps = msg.get("steps")
        if stage == "refine" and steps:
            label += f" ({msg.get('step') or 0}/{steps})"
        self.message = label + "…"
        self._emit("progress")

    def _on_ready(self, msg: Message) -> None:
        self._directions_from(msg.get("directions"))
        self.notice = msg.get("notice") or self.notice
        notes = msg.get("notices")
        self.face_notices = [str(n) for n in notes] if isinstance(notes, list) else []
        self.confirm_apply = bool(msg.get("confirm_apply"))
        self.preview_cost = msg.get("cost")
        choice = msg.get("preview_choice")
        if isinstance(choice, dict):  # the backend chooses again per session (a search may have finished)
            self.preview_choice = {**self.preview_choice, **choice}
        self.progress = {**self.progress, "stage": "ready"}
        was_applying = self.phase == Phase.APPLYING
        if was_applying:  # reopened while applying: commit again
            self._send_commit()
            return
        self._status("Ready", Phase.READY)
        if any(v != self.all_specs[n].neutral for n, v in self.sliders.items() if n in self.all_specs) or \
                self.quality != AUTO or self._dirty:
            self._send_edit()

    def _on_preview(self, msg: Message) -> None:
        if self.phase != Phase.READY:
            return
        now = time.monotonic()
        sent = self._sent_at.get(msg.seq) if msg.seq is not None else None
        box = tuple(msg.get("box")) if msg.get("box") else None
        rgba = msg.frames[0].packed() if msg.frames else b""
        frame = PreviewFrame(msg.seq, box, rgba, self._shown_box, msg.get("cost"), msg.get("render_ms"),
                             None if sent is None else 1000.0 * (now - sent))
        try:
            self.canvas.show_preview(frame)
        except Exception as e:
            log.exception("showing the preview failed")
            self._fail(f"could not draw the preview: {e}")
            return
        drawn = time.monotonic()
        self.draw_ms = 1000.0 * (drawn - now)
        if sent is not None:  # what the user waits for: the round trip and the drawing
            frame.latency_ms = 1000.0 * (drawn - sent)
        self.preview_rgba = bytearray(self.region.rgba)
        if box is not None:
            paste_box(self.preview_rgba, self.region.width, box, rgba)
        self._shown_box = box
        self.previews_shown += 1
        self.latency_ms, self.render_ms, self.preview_cost = frame.latency_ms, frame.render_ms, frame.cost
        self.error = None
        self._emit("preview")

    def _on_error(self, msg: Message) -> None:
        code, text = str(msg.get("code")), str(msg.get("message"))
        st = self._state
        if code == P.E_NO_SESSION and self.phase in (Phase.OPENING, Phase.READY, Phase.APPLYING):
            log.info("the backend lost the session; reopening it")
            if st is not None:
                st.closed = True
            self._state = None
            self._open_again()
            return
        if st is not None and msg.request_id == st.open_request:
            self._fail(text)  # the region itself was refused (too small, too large, busy backend…)
            return
        if code == P.E_CANCELLED:
            return  # a superseded commit or edit
        if self.phase == Phase.APPLYING and msg.request_id == self._commit_rid:
            self.error = text
            self._status(f"Applying failed: {text}", Phase.READY)
            return
        if code == P.E_RATE:
            self._dirty = True  # the next edit carries the state anyway
            return
        self.error = text
        self._status(f"Backend: {text}")

    def _open_again(self) -> None:
        applying = self.phase == Phase.APPLYING
        self._open()
        if applying:
            self.phase = Phase.APPLYING  # ``_on_ready`` commits once the session is back
            self._status("The backend lost the session; sending the region again before applying…")

    def _on_result(self, msg: Message) -> None:
        if self.phase != Phase.APPLYING or msg.request_id != self._commit_rid or not msg.frames:
            return
        f = msg.frames[0]
        if (f.width, f.height) != (self.region.width, self.region.height):
            self._fail(f"the backend returned {f.width}×{f.height} pixels for a "
                       f"{self.region.width}×{self.region.height} region; nothing was written")
            return
        name = edit_layer_name(self.sliders)
        try:
            self.canvas.write_result(f.packed(), name)
        except Exception as e:
            log.exception("writing the result failed")
            self._fail(f"could not write the result: {e}")
            return
        self.result_name = name
        self.render_ms = msg.get("render_ms")
        self._close_session()
        self.link.remove_listener(self)
        self._status(f"Applied: {name}", Phase.DONE)
        self._emit("done")

    # ------------------------------------------------------------------ apply / cancel
    def apply(self) -> None:
        """Render at full cost; the canvas gets the result when it arrives (``on_change('done')``)."""
        if self.phase != Phase.READY:
            raise RuntimeError(f"cannot apply while {self.phase.value}")
        self.phase = Phase.APPLYING
        self._send_commit()
        self._status("Rendering the result…")

    def _send_commit(self) -> None:
        state = self._state
        if state is None or state.sid is None:
            return
        rid = self.link.send(lambda c: c.commit(state, dict(self.sliders), cost="full"))
        if rid is not None:
            self._commit_rid = rid

    def cancel(self) -> None:
        """Stop everything and remove every preview; the document is as it was."""
        if self.finished:
            return
        st = self._state
        if st is not None and st.sid is not None:
            self.link.send(lambda c: c.cancel(st, "all"))
        self._close_session()
        self._discard_canvas()
        self.link.remove_listener(self)
        self._status("Cancelled", Phase.CANCELLED)
        self._emit("cancelled")

    def _discard_canvas(self) -> None:
        try:
            self.canvas.discard()
        except Exception:
            log.exception("removing the preview failed")

    @property
    def can_retry(self) -> bool:
        """The backend link gave up while this edit is still open (a Retry button's state), whatever the
        edit was doing: connecting, sending the region (again), ready, applying."""
        return not self.finished and self.link.state == LinkState.FAILED

    def retry(self) -> None:
        """Try to reach a backend again (starting the configured one); the edit replays once connected."""
        if self.can_retry:
            self.error = None
            self.link.retry()
            self._emit("status")

    # ------------------------------------------------------------------ for the dialog
    def status_line(self) -> str:
        parts = [self.message]
        if self.link.state in (LinkState.RECONNECTING, LinkState.STARTING, LinkState.FAILED) and \
                self.link.message not in parts:
            parts.append(self.link.message)
        return " — ".join(parts)

    def status_text(self) -> str:
        """The status line and, below it, the last error unless the line already says it: what a
        dialog's status label shows."""
        line = self.status_line()
        return f"{line}\n{self.error}" if self.error and self.error not in line else line

    def latency_text(self) -> str:
        """The newest preview: slider moved → drawn, with the backend's render and the canvas's drawing."""
        return last_preview_text(self.latency_ms, self.render_ms, self.draw_ms, self.preview_cost)

    def preview_choice_text(self) -> str:
        """What Auto previews are on this backend (``preview_choice_text`` of the module); refreshed on every
        (re)connect and every session the backend opens. Empty before the first welcome."""
        return preview_choice_text(self.preview_choice)

    def progress_fraction(self) -> float | None:
        p = self.progress
        if p.get("stage") == "ready":
            return 1.0
        if p.get("stage") == "refine" and p.get("steps"):
            return min(1.0, (p.get("step") or 0) / p["steps"])
        return None


def _num(value: Any) -> float | None:
    """A JSON number as a float; None for anything else (booleans included)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def preview_choice_text(choice: dict) -> str:
    """What Auto previews are (the backend's ``preview*`` fields): the sub-generator, its cost, the budget it
    was chosen for and how, and the render time the backend measured when it chose it, e.g.
    ``128:flexible · 3.2 GFLOP, chosen for the 80 ms budget (searched); 40 ms when the backend timed it,
    37 ms predicted``. That time was taken once, under whatever load the machine had then; the previews now
    shown are timed by ``last_preview_text``, so the two may differ without contradicting each other."""
    if not choice.get("preview"):
        return ""
    text = str(choice["preview"])
    flops = _num(choice.get("preview_flops"))
    if flops is not None and flops > 0:
        text += f" · {flops / 1e9:.1f} GFLOP" if flops >= 1e8 else f" · {flops / 1e6:.0f} MFLOP"
    budget = _num(choice.get("preview_budget_ms"))
    source = choice.get("preview_source")
    how = PREVIEW_SOURCES.get(str(source), str(source)) if source else ""
    if budget is not None:
        text += f", chosen for the {budget:g} ms budget" + (f" ({how})" if how else "")
    elif how:
        text += f" ({how})"
    measured, predicted = _num(choice.get("preview_ms")), _num(choice.get("preview_predicted_ms"))
    if measured is not None:
        text += f"; {measured:.0f} ms when the backend timed it"
        if predicted is not None:
            text += f", {predicted:.0f} ms predicted"
        if budget is not None and choice.get("preview_fits") is False:
            text += " (nothing cheaper met the budget then)"
    elif predicted is not None:
        text += f"; {predicted:.0f} ms predicted"
    return text


def last_preview_text(latency_ms: float | None, render_ms: float | None, draw_ms: float | None,
                      cost: str | None) -> str:
    """The newest preview shown: from the slider's move to the picture, with the backend's render and the
    host's drawing, and the cost it was rendered at, e.g. ``18 ms from slider to picture (render 15 ms,
    drawing 1 ms) at 128:flexible``; '–' before the first."""
    latency, render, draw = _num(latency_ms), _num(render_ms), _num(draw_ms)
    if latency is None:
        return "–"
    parts = [f"render {render:.0f} ms"] if render is not None else []
    if draw is not None:
        parts.append(f"drawing {draw:.0f} ms")
    detail = f" ({', '.join(parts)})" if parts else ""
    return f"{latency:.0f} ms from slider to picture{detail}" + (f" at {cost}" if cost else "")
