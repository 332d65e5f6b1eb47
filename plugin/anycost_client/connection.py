"""The non-blocking core of the client: one DEALER socket, heartbeats, reconnects, session state.

Made to be driven by a host's event loop (Qt in Krita, GLib in GIMP):

    conn = Connection(endpoint, key, on_message=handle, on_status=show)
    notifier = QSocketNotifier(conn.fd, QSocketNotifier.Read)   # re-create when on_status says the
    notifier.activated.connect(conn.process_events)             # socket changed (conn.fd differs)
    timer.timeout.connect(conn.tick)                             # every ~250 ms: heartbeats, reconnects

The FD is edge-triggered: it signals "something changed", so ``process_events`` drains every
waiting message, and ``send`` calls it too (a send can consume the edge). Stale previews (see
``SessionState``) are dropped before ``on_message`` sees them.
"""

from __future__ import annotations

import enum
import itertools
import os
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import zmq

from . import protocol as P
from .protocol import Message, ProtocolError, ReplayGuard, decode, encode

# Requests sent again when the backend answers 'rate_limited'. Not edits: the backend coalesces those
# (latest wins) instead of refusing them, and a stale edit sent again would only be superseded.
RETRIED = frozenset({"hello", "ping", "open", "commit", "check", "cancel", "close"})
MAX_UNANSWERED = 256


class Status(str, enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    DISCONNECTED = "disconnected"


@dataclass
class SessionState:
    """What the client knows about one session: its id once the backend names it, and the newest edit sent.

    Previews are shown in order and never go back in time: one older than a preview already shown is
    dropped. The full preview that follows a draft of the same edit (``draft: true``, see docs/protocol.md)
    replaces it. With ``strict`` a preview is also dropped when a newer edit has been sent since its own —
    but then a continuous drag (an edit every frame, each newer than any preview in flight) shows nothing
    until the slider rests, so the default shows the newest preview that arrived.
    """

    open_request: Any
    sid: str | None = None
    last_sent_seq: int = -1
    last_shown_seq: int = -1
    last_shown_draft: bool = False  # the preview shown for last_shown_seq was a draft
    ready: bool = False
    closed: bool = False
    directions: dict = field(default_factory=dict)
    dropped_previews: int = 0
    strict: bool = False

    def next_seq(self) -> int:
        self.last_sent_seq += 1
        return self.last_sent_seq

    def accept(self, msg: Message) -> bool:
        """False for a stale preview."""
        if msg.type == "preview" and msg.seq is not None:
            draft = bool(msg.get("draft"))
            upgrade = msg.seq == self.last_shown_seq and self.last_shown_draft and not draft
            if (msg.seq <= self.last_shown_seq and not upgrade) or (self.strict and msg.seq < self.last_sent_seq):
                self.dropped_previews += 1
                return False
            self.last_shown_seq, self.last_shown_draft = msg.seq, draft
        if msg.type == "ready":
            self.ready = True
            self.directions = msg.get("directions") or {}
        return True


class Connection:
    """``plain``: prove the key in the ZeroMQ handshake (what backends since protocol hardening require;
    False only for an older backend whose connection file has no ``auth`` entry). Requests answered
    ``rate_limited`` are sent again after a back-off (``retry``: first and longest delay, seconds), and the
    refusal reaches ``on_message`` only when the retries are used up."""

    def __init__(self, endpoint: str, key: bytes | None, *, on_message: Callable[[Message], None] | None = None,
                 on_status: Callable[[Status], None] | None = None, curve: dict | None = None,
                 ping_interval: float = 2.0, pong_timeout: float = 6.0, backoff: tuple[float, float] = (0.25, 8.0),
                 context: zmq.Context | None = None, client_name: str = "anycost-client",
                 limits: P.Limits | None = None, plain: bool = True, retry: tuple[float, float] = (0.05, 2.0),
                 max_retries: int = 8):
        self.endpoint = endpoint
        self.key = key or b""
        self.on_message = on_message
        self.on_status = on_status
        self.curve = curve  # {"server_key": z85, "public": z85, "secret": z85}
        self.plain = plain and bool(self.key) and not curve
        self.retry = retry
        self.max_retries = max_retries
        self.retried = 0  # requests sent again after 'rate_limited'
        # request id → [message, attempts, resend at (monotonic) or None while waiting for an answer]
        self._unanswered: OrderedDict[Any, list] = OrderedDict()
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.backoff = backoff
        self.client_name = client_name
        self.limits = limits or P.Limits()
        self.ctx = context or zmq.Context.instance()
        self.routing_id = b"ac-" + os.urandom(13)  # kept across reconnects: sessions survive a new socket
        self.replay = ReplayGuard(self.limits)
        self._ids = itertools.count(1)
        self.sessions: dict[str, SessionState] = {}
        self._pending_open: dict[Any, SessionState] = {}
        self.status = Status.DISCONNECTED
        self.welcome: Message | None = None
        self.generation = 0  # +1 per socket; a blocking caller resends what a lost socket swallowed
        self.rejected = 0
        self.sock: zmq.Socket | None = None
        self._last_heard = 0.0
        self._last_ping = 0.0
        self._last_sent = 0.0
        self._retry_at = 0.0
        self._delay = backoff[0]
        self._hello_id: Any = None
        self._open_socket(Status.CONNECTING)

    # ------------------------------------------------------------------ socket
    @property
    def fd(self) -> int:
        assert self.sock is not None
        return cast(int, self.sock.getsockopt(zmq.FD))

    def _open_socket(self, status: Status) -> None:
        if self.sock is not None:
            self.sock.close(0)
        s = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.ROUTING_ID, self.routing_id)
        s.setsockopt(zmq.SNDHWM, 1000)
        if self.curve:
            s.setsockopt(zmq.CURVE_SERVERKEY, _z85(self.curve["server_key"]))
            s.setsockopt(zmq.CURVE_PUBLICKEY, _z85(self.curve["public"]))
            s.setsockopt(zmq.CURVE_SECRETKEY, _z85(self.curve["secret"]))
        elif self.plain:
            s.setsockopt(zmq.PLAIN_USERNAME, P.PLAIN_USERNAME.encode())
            s.setsockopt(zmq.PLAIN_PASSWORD, P.plain_password(self.key).encode())
        s.connect(self.endpoint)
        self.sock = s
        self.generation += 1
        now = time.monotonic()
        self._last_heard = now
        self._last_ping = 0.0
        self._set_status(status)
        self.hello()

    def _set_status(self, status: Status) -> None:
        if status != self.status:
            self.status = status
            if self.on_status is not None:
                self.on_status(status)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close(0)
            self.sock = None
        self._set_status(Status.DISCONNECTED)

    # ------------------------------------------------------------------ sending
    def new_id(self) -> int:
        return next(self._ids)

    def send(self, msg: Message, *, process: bool = True) -> Any:
        """Sign and send; returns the request id. Never blocks: a full queue raises zmq.Again."""
        if self.sock is None:
            raise ConnectionError("the connection is closed")
        if msg.request_id is None:
            msg.request_id = self.new_id()
        self.sock.send_multipart(encode(msg, self.key), flags=zmq.NOBLOCK, copy=False)
        self._last_sent = time.monotonic()
        if msg.type in RETRIED:
            self._remember(msg)
        if process:
            self.process_events()
        return msg.request_id

    def _remember(self, msg: Message) -> None:
        entry = self._unanswered.pop(msg.request_id, None)
        self._unanswered[msg.request_id] = [msg, entry[1] if entry else 0, None]
        while len(self._unanswered) > MAX_UNANSWERED:  # a backend that never answers: forget the oldest
            self._unanswered.popitem(last=False)

    def _retry_later(self, msg: Message) -> bool:
        """True when ``msg`` (an error) is a 'rate_limited' answer to a request that will be sent again."""
        if msg.type != "error" or msg.get("code") != P.E_RATE:
            return False
        entry = self._unanswered.get(msg.request_id)
        if entry is None or entry[1] >= self.max_retries:
            self._unanswered.pop(msg.request_id, None)
            return False
        delay = min(self.retry[0] * 2 ** entry[1], self.retry[1])
        entry[1] += 1
        entry[2] = time.monotonic() + delay * (0.5 + random.random())  # jittered: retries do not march together
        return True

    def next_resend(self, now: float | None = None) -> float | None:
        """Seconds until a request refused with 'rate_limited' is due again (None: none waits)."""
        due = [e[2] for e in self._unanswered.values() if e[2] is not None]
        if not due:
            return None
        return max(0.0, min(due) - (time.monotonic() if now is None else now))

    def _resend_due(self, now: float) -> None:
        for entry in list(self._unanswered.values()):
            if entry[2] is not None and now >= entry[2] and self.sock is not None:
                entry[2] = None
                try:
                    self.send(entry[0], process=False)
                except zmq.Again:
                    entry[2] = now + self.retry[0]
                    continue
                self.retried += 1

    def hello(self) -> Any:
        self._hello_id = self.send(Message("hello", {"versions": list(P.SUPPORTED_VERSIONS),
                                                     "client": self.client_name}), process=False)
        return self._hello_id

    def ping(self) -> Any:
        self._last_ping = time.monotonic()
        return self.send(Message("ping"), process=False)

    def open_session(self, rgba: bytes | memoryview, width: int, height: int, *, mask: bytes | None = None,
                     stride: int = 0, mask_stride: int = 0, model: str | None = None, strict: bool = False,
                     **options) -> SessionState:
        frames = [P.Frame(rgba, width, height, "RGBA8", stride)]
        if mask is not None:
            frames.append(P.Frame(mask, width, height, "A8", mask_stride))
        options.setdefault("drafts", True)  # this client shows drafts during drags (see SessionState)
        fields: dict[str, Any] = {"options": options}
        if model:
            fields["model"] = model
        state = SessionState(self.new_id(), strict=strict)
        self._pending_open[state.open_request] = state
        self.send(Message("open", fields, frames, request_id=state.open_request))
        return state

    def edit(self, state: SessionState, sliders: dict[str, float], quality: str | None = None) -> Any:
        fields: dict[str, Any] = {"sliders": sliders}
        if quality:
            fields["quality"] = quality
        return self.send(Message("edit", fields, session_id=state.sid, seq=state.next_seq()))

    def commit(self, state: SessionState, sliders: dict[str, float] | None = None, **options) -> Any:
        fields: dict[str, Any] = {"sliders": sliders or {}}
        if options:
            fields["options"] = options
        return self.send(Message("commit", fields, session_id=state.sid, seq=state.next_seq()))

    def cancel(self, state: SessionState, target: str = "all") -> Any:
        return self.send(Message("cancel", {"target": target}, session_id=state.sid))

    def close_session(self, state: SessionState) -> Any:
        state.closed = True
        self.sessions.pop(state.sid or "", None)
        return self.send(Message("close", session_id=state.sid))

    # ------------------------------------------------------------------ receiving
    def process_events(self) -> int:
        """Handle every waiting message; returns how many were delivered."""
        n = 0
        while self.sock is not None and cast(int, self.sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            try:
                parts = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            try:
                msg = decode(parts, self.key, limits=self.limits, replay=self.replay, expect=P.SERVER_TYPES)
            except ProtocolError:
                self.rejected += 1  # not from our backend (or mangled): ignore it
                continue
            if self._retry_later(msg):
                self._last_heard = time.monotonic()
                continue
            if msg.request_id is not None and self._unanswered:
                self._unanswered.pop(msg.request_id, None)
            if self._handle(msg):
                n += 1
                if self.on_message is not None:
                    self.on_message(msg)
        return n

    def _handle(self, msg: Message) -> bool:
        self._last_heard = time.monotonic()
        self._delay = self.backoff[0]
        if msg.type == "welcome":
            self.welcome = msg
        if msg.type in ("welcome", "pong"):
            self._set_status(Status.CONNECTED)
        state = self._pending_open.get(msg.request_id) if msg.request_id is not None else None
        if state is not None and msg.session_id and state.sid is None:
            state.sid = msg.session_id
            self.sessions[msg.session_id] = state
        if state is not None and msg.type in ("ready", "error"):
            self._pending_open.pop(msg.request_id, None)
        if state is None and msg.session_id:
            state = self.sessions.get(msg.session_id)
        if state is not None:
            return state.accept(msg)
        return True

    # ------------------------------------------------------------------ heartbeats
    def tick(self, now: float | None = None) -> None:
        """Call every few hundred ms: pings when idle, reconnects (with back-off) when the backend is silent."""
        now = time.monotonic() if now is None else now
        if self.sock is None:
            return
        self.process_events()
        if self._unanswered:
            self._resend_due(now)
        silent = now - self._last_heard
        if silent > self.pong_timeout:
            if now >= self._retry_at:
                self._retry_at = now + self._delay
                self._delay = min(self._delay * 2, self.backoff[1])
                self._open_socket(Status.RECONNECTING)
            return
        # the backend keeps a session alive on what the client sends, so ping whenever the client
        # itself has been quiet, even while the backend streams progress
        if now - self._last_sent >= self.ping_interval or (silent >= self.ping_interval
                                                             and now - self._last_ping >= self.ping_interval):
            try:
                self.ping()
            except zmq.Again:
                pass


def _z85(key: str | bytes) -> bytes:
    return key.encode() if isinstance(key, str) else key
