"""Session state and the fair, latest-wins scheduler the render worker takes its work from.

Each session holds at most one pending edit and one pending commit: a newer edit replaces the
pending one (so a slider storm never builds a queue) and abandons the preview being rendered for an
older one (between layers: its answer would be stale on arrival) — unless the render in flight is in
its last fifth or last 5 ms (abandoning it would save too little to notice), or it is a *draft*.
While a slider moves faster than previews render, every preview in flight is abandoned, so the canvas
would show nothing until the hand stops; instead, once previews have been abandoned for
``min_preview_interval`` (or one full preview render, if longer) since the last one shown, the newest
edit renders as a draft: at a lower output resolution (``Editor.draft_cost``), a quarter of the work, and
never abandoned. When a draft answers the edit that is still the newest, the full preview of that
same edit follows at once. So a drag keeps updating the canvas, and its last edit waits at most for
a draft in flight, not for a full render. A commit drops the pending edit, and a newer edit or commit
cancels a pending commit. A commit itself is never interrupted mid-render.
Long work (refinement, full renders) watches a cancel event. The socket thread submits; the render
worker ``take``s one unit of work at a time, visiting sessions round-robin so one session's
refinement cannot starve another's previews.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from anycost_client.protocol import Frame

# While a slider is dragged faster than previews render, the canvas gets a draft at least this often
# (seconds), or once a full preview render's time, if longer. Shorter shows more of a fast drag; each
# draft costs a fraction of a render, and a drag's last edit waits for it when it lands in one.
MIN_PREVIEW_INTERVAL = 0.05
DRAFT_EVERY_RENDERS = 1.0
# A render in flight with less than this left finishes: abandoning it would save the newer edit less
# than a fifth of a render, or less than a person notices, and throw the rest away.
NEARLY_DONE_SHARE = 0.2
NEARLY_DONE_S = 0.005


@dataclass
class OpenRequest:
    request_id: Any
    frame: Frame
    mask: Frame | None
    options: dict


@dataclass
class EditRequest:
    request_id: Any
    seq: int
    sliders: dict[str, float]
    quality: str
    received: float = field(default_factory=time.monotonic)
    cancel: threading.Event = field(default_factory=threading.Event)  # set when a newer edit supersedes it
    started: float | None = None  # when the worker took it
    draft: bool = False  # set when the worker takes it: render a draft (see the module's text)


@dataclass
class CommitRequest:
    request_id: Any
    seq: int | None
    sliders: dict[str, float]
    cost: str = "full"
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass
class Session:
    sid: str
    peer: bytes
    open_request: OpenRequest
    channel_order: str = "RGBA"
    created: float = field(default_factory=time.monotonic)
    last_seen: float = field(default_factory=time.monotonic)
    edit: Any = None  # anycost.editing.session.EditSession once encoded
    opening: Iterator[None] | None = None  # the open/refine job, advanced one step per unit
    refine_cancel: threading.Event = field(default_factory=threading.Event)
    sliders: dict[str, float] = field(default_factory=dict)  # merged slider state the client asked for
    pending_edit: EditRequest | None = None
    running_edit: EditRequest | None = None  # the preview being rendered
    pending_commit: CommitRequest | None = None
    running_commit: CommitRequest | None = None
    closed: bool = False
    ready: bool = False
    previews_rendered: int = 0
    last_preview_at: float = 0.0  # monotonic time the last preview was sent
    last_render_s: float = 0.0  # how long the last full (not draft) preview took
    previews_abandoned: int = 0  # renders stopped between layers for a newer edit
    abandoned_since_shown: int = 0  # of those, since the last preview was sent
    drafts: int = 0  # draft previews sent
    edits_received: int = 0


@dataclass
class Unit:
    kind: str  # 'open' (one step of the open job), 'preview', 'commit', 'task' (session is None then)
    session: Session
    request: Any = None


@dataclass
class Task:
    """Work that must run in the render thread (where torch runs, see ``worker.keep_torch_in_render_thread``)
    for another thread, which waits on ``future``."""
    fn: Callable[[], Any]
    future: Future = field(default_factory=Future)


class Scheduler:
    """Thread-safe: the socket thread calls the submit methods, the worker calls ``take``."""

    def __init__(self, min_preview_interval: float = MIN_PREVIEW_INTERVAL) -> None:
        self.min_preview_interval = min_preview_interval
        self._cond = threading.Condition()
        self.sessions: dict[str, Session] = {}
        self._order: deque[str] = deque()
        self._counter = itertools.count(1)
        self._tasks: deque[Task] = deque()

    # ------------------------------------------------------------------ socket thread
    def new_sid(self) -> str:
        return f"s{next(self._counter)}-{secrets.token_hex(6)}"

    def add(self, session: Session) -> None:
        with self._cond:
            self.sessions[session.sid] = session
            self._order.append(session.sid)
            self._cond.notify_all()

    def get(self, sid: str | None, peer: bytes) -> Session | None:
        with self._cond:
            s = self.sessions.get(sid) if sid else None
            return s if s is not None and s.peer == peer and not s.closed else None

    def count(self, peer: bytes | None = None) -> int:
        with self._cond:
            return sum(1 for s in self.sessions.values() if peer is None or s.peer == peer)

    def touch_peer(self, peer: bytes, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._cond:
            for s in self.sessions.values():
                if s.peer == peer:
                    s.last_seen = now

    def submit_task(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn`` in the render thread before the next unit of session work; its result or error
        comes back through the future."""
        task = Task(fn)
        with self._cond:
            self._tasks.append(task)
            self._cond.notify_all()
        return task.future

    def submit_edit(self, s: Session, req: EditRequest) -> CommitRequest | None:
        """Latest wins. Returns a pending commit this edit superseded (the caller tells the client)."""
        with self._cond:
            s.pending_edit = req
            s.edits_received += 1
            if s.running_edit is not None and not self._protected(s):
                s.running_edit.cancel.set()  # the preview in flight answers an older edit: abandon it
            superseded = self._cancel_commit(s)
            self._cond.notify_all()
            return superseded

    def submit_commit(self, s: Session, req: CommitRequest) -> CommitRequest | None:
        with self._cond:
            s.pending_edit = None  # a commit supersedes pending previews
            superseded = self._cancel_commit(s)
            s.pending_commit = req
            s.refine_cancel.set()  # the user wants the result now: stop refining where it is
            self._cond.notify_all()
            return superseded

    def cancel(self, s: Session, target: str) -> CommitRequest | None:
        with self._cond:
            superseded = None
            if target in ("all", "refine"):
                s.refine_cancel.set()
            if target in ("all", "commit"):
                superseded = self._cancel_commit(s)
            if target in ("all", "edit"):
                s.pending_edit = None
            self._cond.notify_all()
            return superseded

    def _protected(self, s: Session, now: float | None = None) -> bool:
        """Whether the preview in flight must finish anyway: it is a draft (short, and what a drag shows),
        or it is nearly done (renders take about as long as the last full one did)."""
        now = time.monotonic() if now is None else now
        req = s.running_edit
        if req is None or req.draft:
            return True
        if req.started is not None and s.last_render_s > 0:
            left = s.last_render_s - (now - req.started)
            if left <= max(NEARLY_DONE_SHARE * s.last_render_s, NEARLY_DONE_S):
                return True
        return False

    def draft_due(self, s: Session, now: float | None = None) -> bool:
        """Whether the next preview renders as a draft: previews are being abandoned, and none has been
        shown for ``min_preview_interval`` or a full preview render's time, whichever is longer."""
        now = time.monotonic() if now is None else now
        if s.abandoned_since_shown == 0:
            return False
        return now - s.last_preview_at >= max(self.min_preview_interval, DRAFT_EVERY_RENDERS * s.last_render_s)

    def _cancel_commit(self, s: Session) -> CommitRequest | None:
        old = s.pending_commit or s.running_commit
        if old is not None:
            old.cancel.set()
        s.pending_commit = None
        return old

    def remove(self, sid: str) -> Session | None:
        with self._cond:
            s = self.sessions.pop(sid, None)
            if s is not None:
                s.closed = True
                s.refine_cancel.set()
                self._cancel_commit(s)
                s.pending_edit = None
                try:
                    self._order.remove(sid)
                except ValueError:
                    pass
            self._cond.notify_all()
            return s

    def expired(self, timeout: float, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        with self._cond:
            return [sid for sid, s in self.sessions.items() if now - s.last_seen > timeout]

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # ------------------------------------------------------------------ worker thread
    def _unit_of(self, s: Session) -> Unit | None:
        if s.closed:
            return None
        if s.opening is not None:
            # previews interleave with refinement steps once the encoder's latent exists;
            # a pending commit first lets the (cancelled) refinement wind down and send 'ready'
            if s.pending_edit is not None and s.edit is not None and s.pending_commit is None:
                return self._start_preview(s)
            return Unit("open", s)
        if s.pending_commit is not None:
            req, s.pending_commit = s.pending_commit, None
            s.running_commit = req
            return Unit("commit", s, req)
        if s.pending_edit is not None and s.edit is not None:
            return self._start_preview(s)
        return None

    def _start_preview(self, s: Session) -> Unit:
        req, s.pending_edit = s.pending_edit, None
        now = time.monotonic()
        req.draft = req.draft or self.draft_due(s, now)
        s.running_edit, req.started = req, now
        return Unit("preview", s, req)

    def take(self, timeout: float | None = None, stop: threading.Event | None = None) -> Unit | None:
        """The next unit of work, visiting sessions round-robin; None after ``timeout`` or on stop."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if stop is not None and stop.is_set():
                    return None
                if self._tasks:
                    return Unit("task", None, self._tasks.popleft())  # type: ignore[arg-type]
                for _ in range(len(self._order)):
                    sid = self._order[0]
                    self._order.rotate(-1)
                    s = self.sessions.get(sid)
                    unit = self._unit_of(s) if s is not None else None
                    if unit is not None:
                        return unit
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left)

    def finish_preview(self, s: Session, req: EditRequest, *, drafted: bool = False) -> None:
        """``drafted``: a draft of ``req`` was sent. If no newer edit or commit is waiting, its full
        preview is due next: the hand has rested on that edit."""
        with self._cond:
            if s.running_edit is req:
                s.running_edit = None
            if drafted and s.pending_edit is None and s.pending_commit is None and not s.closed:
                s.pending_edit = EditRequest(req.request_id, req.seq, req.sliders, req.quality)
                self._cond.notify_all()

    def finish_commit(self, s: Session, req: CommitRequest) -> None:
        with self._cond:
            if s.running_commit is req:
                s.running_commit = None
