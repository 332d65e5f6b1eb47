"""A blocking client for scripts, on top of the non-blocking ``Connection``.

    from anycost_client.client import Client

    client = Client.connect()                      # finds the running backend's connection file
    session = client.open(rgba, width, height, refine_steps=20)
    preview = session.edit(smile=0.5)              # Preview: box, rgba bytes of the box, seq, cost
    result = session.commit(smile=0.5)             # Result: the whole region, pasted back
    session.close(); client.close()
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import zmq

from . import protocol as P
from .connection import Connection, SessionState, Status
from .connection_file import find_connection_file, read_connection_file
from .protocol import Message

__all__ = ["GONE", "BackendError", "Client", "Preview", "Result", "Session", "Status", "load_curve_keys"]

GONE = "backend_gone"  # BackendError code: a watch (``Client.watch``) saw the backend go away


class BackendError(Exception):
    """The backend answered with an error (``code`` is one of protocol.E_*) or did not answer."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{message} [{code}]")
        self.code = code
        self.message = message


@dataclass
class Preview:
    seq: int | None
    box: tuple[int, int, int, int] | None  # x, y, w, h in region pixels; None: nothing differs
    rgba: bytes  # w × h × 4 bytes of the box, in the session's channel order
    cost: str
    render_ms: float


@dataclass
class Result:
    rgba: bytes  # the whole region, pasted back
    width: int
    height: int
    box: tuple[int, int, int, int] | None
    cost: str
    render_ms: float


def load_curve_keys(secret_file: str | os.PathLike) -> dict:
    """A client's CURVE key pair from a certificate file made by ``anycost serve --gen-curve-keys``
    (the ``.key_secret`` file), as the ``curve=`` argument of ``Client.connect`` wants it."""
    import zmq.auth

    public, secret = zmq.auth.load_certificate(os.fspath(secret_file))
    if not secret:
        raise ValueError(f"{secret_file} holds no secret key; pass the '.key_secret' file")
    return {"public": public, "secret": secret}


def _box(msg: Message):
    b = msg.get("box")
    return tuple(b) if b else None


class Client:
    def __init__(self, conn: Connection, *, timeout: float = 120.0):
        self.conn = conn
        self.timeout = timeout
        self._inbox: deque[Message] = deque(maxlen=4096)
        conn.on_message = self._inbox.append
        self._watch: Callable[[], str | None] | None = None
        self._watch_every = 0.5
        self._watch_due = 0.0

    @classmethod
    def connect(cls, connection_file: str | os.PathLike | None = None, *, endpoint: str | None = None,
                key: bytes | str | None = None, curve: dict | None = None, timeout: float = 120.0,
                connect_timeout: float = 10.0, **kw) -> Client:
        """Connect to a backend: an explicit ``endpoint`` + ``key``, a connection file, or the newest one
        of a running backend. Waits for its welcome (``BackendError`` if none comes).

        ``endpoint`` with a connection file overrides its address (a backend on another machine);
        ``curve`` = ``load_curve_keys(FILE)`` for a backend that requires CURVE (the server's public key
        comes from the connection file)."""
        if connection_file is not None or key is None:
            info = read_connection_file(connection_file or find_connection_file())
            endpoint, key = endpoint or info["endpoint"], info["key_bytes"]
            if curve is not None and info.get("curve_server_key"):
                curve = {"server_key": info["curve_server_key"], **curve}
            kw.setdefault("plain", info.get("auth") == "plain")  # older backends: no handshake proof
        if isinstance(key, str):
            key = bytes.fromhex(key)
        if endpoint is None:
            raise ValueError("a key without a connection file needs an endpoint too")
        client = cls(Connection(endpoint, key, curve=curve, **kw), timeout=timeout)
        try:
            client._wait(lambda m: m.type in ("welcome", "error") and m.request_id == client.conn._hello_id,
                         connect_timeout, what="the backend's welcome", resend=client.conn.hello)
        except BaseException:
            client.close()
            raise
        if client.conn.welcome is None:
            err = client._take(lambda m: m.type == "error")
            client.close()
            raise BackendError(err.get("code") if err else P.E_VERSION, err.get("message") if err else "no welcome")
        return client

    @property
    def welcome(self) -> dict:
        return dict(self.conn.welcome.fields) if self.conn.welcome else {}

    @property
    def status(self) -> Status:
        return self.conn.status

    def close(self) -> None:
        self.conn.close()

    def watch(self, check: Callable[[], str | None] | None, every: float = 0.5) -> None:
        """While a call waits for an answer, run ``check`` every ``every`` seconds: it returns why the
        backend can no longer answer (say, its process is gone), or None. A reason ends the wait at once
        with ``BackendError(GONE, reason)`` instead of at the call's timeout. None stops watching."""
        self._watch, self._watch_every, self._watch_due = check, every, 0.0

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ waiting
    def _take(self, pred: Callable[[Message], bool]) -> Message | None:
        for i, m in enumerate(self._inbox):
            if pred(m):
                del self._inbox[i]
                return m
        return None

    def _wait(self, pred: Callable[[Message], bool], timeout: float | None, *, what: str,
              resend: Callable[[], Any] | None = None) -> Message:
        """The first message matching ``pred``; heartbeats and reconnects run meanwhile. ``resend`` is
        called after a reconnect (the request may have died with the old socket)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        gen = self.conn.generation
        while True:
            m = self._take(pred)
            if m is not None:
                return m
            now = time.monotonic()
            if self._watch is not None and now >= self._watch_due:
                self._watch_due = now + self._watch_every
                why = self._watch()
                if why:
                    raise BackendError(GONE, why)
            if now >= deadline:
                raise BackendError("timeout", f"no answer from the backend ({what}) within "
                                              f"{self.timeout if timeout is None else timeout:g} s")
            sock = self.conn.sock
            if sock is None:
                raise BackendError("closed", "the connection is closed")
            if not (cast(int, sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN):
                due = self.conn.next_resend(now)  # a request refused 'rate_limited' goes out again then
                wait = min(0.25, deadline - now, 0.25 if due is None else due)
                sock.poll(int(wait * 1000) + 1, zmq.POLLIN)
            self.conn.process_events()
            self.conn.tick()
            if self.conn.generation != gen:
                gen = self.conn.generation
                if resend is not None:
                    resend()

    def ping(self, timeout: float = 5.0) -> dict:
        rid = self.conn.ping()
        m = self._wait(lambda m: m.request_id == rid and m.type in ("pong", "error"), timeout, what="pong")
        _raise_if_error(m)
        return dict(m.fields)

    def check(self, sliders: dict[str, float], cost: str | None = None, timeout: float = 10.0) -> None:
        """Ask whether the backend would commit these slider values at this cost, before sending a region
        (backends whose welcome lists the ``check`` capability). A refusal is ``BackendError`` with code
        ``bad_input`` and a message naming the slider and its range, or what a cost may be."""
        fields: dict[str, Any] = {"sliders": dict(sliders)}
        if cost:
            fields["cost"] = cost
        rid = self.conn.send(Message("check", fields))
        m = self._wait(lambda m: m.request_id == rid and m.type in ("done", "error"), timeout, what="check")
        _raise_if_error(m)

    # ------------------------------------------------------------------ sessions
    def open(self, rgba: bytes | memoryview, width: int, height: int, *, mask: bytes | None = None,
             channel_order: str = "RGBA", stride: int = 0, progress: Callable[[Message], None] | None = None,
             timeout: float | None = None, **options) -> Session:
        """Send a region and wait until the session is ready (after alignment, encoding and any
        ``refine_steps``). ``progress`` sees each progress message (stage, step, psnr, box + frame)."""
        session = Session(self, bytes(rgba), width, height, mask, dict(options, channel_order=channel_order),
                          stride)
        session._open(progress, timeout)
        return session


class Session:
    def __init__(self, client: Client, rgba: bytes, width: int, height: int, mask: bytes | None, options: dict,
                 stride: int):
        self.client = client
        self._args = (rgba, width, height, mask, options, stride)
        self.width, self.height = width, height
        self.state: SessionState | None = None
        self.ready: Message | None = None
        self.progress_messages = 0
        self.reopened = 0
        self._sliders: dict[str, float] = {}

    @property
    def sid(self) -> str | None:
        return self.state.sid if self.state else None

    def _live(self) -> SessionState:
        if self.state is None:
            raise BackendError("closed", "the session was never opened")
        return self.state

    @property
    def directions(self) -> dict:
        return dict(self.ready.get("directions") or {}) if self.ready else {}

    @property
    def notice(self) -> str | None:
        return self.ready.get("notice") if self.ready else None

    @property
    def notices(self) -> list:
        """Everything the backend says about this face: no face found, a face beyond the model."""
        return list(self.ready.get("notices") or []) if self.ready else []

    @property
    def confirm_apply(self) -> bool:
        """The backend advises asking the user before applying (no face found, or a face beyond the model)."""
        return bool(self.ready.get("confirm_apply")) if self.ready else False

    def _open(self, progress, timeout) -> None:
        rgba, w, h, mask, options, stride = self._args
        conn = self.client.conn

        def send() -> None:
            self.state = conn.open_session(rgba, w, h, mask=mask, stride=stride, **options)

        send()
        while True:
            # a reconnect resends the open under a new request id: match whichever is current
            m = self.client._wait(lambda m: m.request_id == self._live().open_request
                                  and m.type in ("progress", "ready", "error"), timeout, what="open", resend=send)
            if m.type == "progress":
                self.progress_messages += 1
                if progress is not None:
                    progress(m)
                continue
            _raise_if_error(m)
            self.ready = m
            return

    def _reopen(self) -> None:
        """The backend lost the session (it restarted): send the region again."""
        self.reopened += 1
        self._open(None, None)

    def _request(self, send: Callable[[], Any], pred: Callable[[Message, Any], bool], what: str,
                 timeout: float | None) -> Message:
        current = {"rid": None}

        def resend() -> None:
            current["rid"] = send()

        for attempt in range(2):
            resend()
            m = self.client._wait(lambda m: pred(m, current["rid"]), timeout, what=what, resend=resend)
            if m.type == "error" and m.get("code") == P.E_NO_SESSION and attempt == 0:
                self._reopen()
                continue
            return m
        raise AssertionError("unreachable")

    def edit(self, *, quality: str | None = None, timeout: float | None = None, **sliders: float) -> Preview:
        """Move sliders (merged with the earlier ones) and wait for the preview of exactly this edit."""
        values = {**self._sliders, **sliders}
        conn = self.client.conn
        m = self._request(lambda: conn.edit(self._live(), values, quality),
                          lambda m, rid: m.request_id == rid and m.type in ("preview", "error"), "preview", timeout)
        _raise_if_error(m)
        self._sliders = values
        f = m.frames[0] if m.frames else None
        return Preview(m.seq, _box(m), bytes(f.packed()) if f else b"", m.get("cost"), m.get("render_ms"))

    def edit_nowait(self, quality: str | None = None, **sliders: float) -> int:
        """Send an edit without waiting (a slider storm); returns its seq. Read answers with ``latest_preview``."""
        self._sliders = {**self._sliders, **sliders}
        state = self._live()
        self.client.conn.edit(state, self._sliders, quality)
        return state.last_sent_seq

    def latest_preview(self, timeout: float = 0.0) -> Preview | None:
        """The newest preview that arrived (older ones are discarded), waiting up to ``timeout``."""
        sid = self.sid
        try:
            m = self.client._wait(lambda m: m.type == "preview" and m.session_id == sid, timeout, what="preview")
        except BackendError:
            return None
        while True:
            newer = self.client._take(lambda x: x.type == "preview" and x.session_id == sid)
            if newer is None:
                break
            m = newer
        f = m.frames[0] if m.frames else None
        return Preview(m.seq, _box(m), bytes(f.packed()) if f else b"", m.get("cost"), m.get("render_ms"))

    def commit(self, *, timeout: float | None = None, cost: str | None = None, **sliders: float) -> Result:
        """Render at full cost (or ``cost``) with the sliders and wait for the pasted-back region."""
        values = {**self._sliders, **sliders}
        conn = self.client.conn
        opts = {"cost": cost} if cost else {}
        m = self._request(lambda: conn.commit(self._live(), values, **opts),
                          lambda m, rid: m.request_id == rid and m.type in ("result", "error"), "result", timeout)
        _raise_if_error(m)
        self._sliders = values
        rid = m.request_id
        self.client._wait(lambda d: d.request_id == rid and d.type == "done", timeout, what="done")
        f = m.frames[0]
        return Result(bytes(f.packed()), f.width, f.height, _box(m), m.get("cost"), m.get("render_ms"))

    def cancel(self, target: str = "all", timeout: float | None = 10.0) -> None:
        rid = self.client.conn.cancel(self._live(), target)
        m = self.client._wait(lambda m: m.request_id == rid and m.type in ("done", "error"), timeout, what="cancel")
        _raise_if_error(m)

    def close(self, timeout: float | None = 10.0) -> None:
        if self.state is None or self.state.closed:
            return
        rid = self.client.conn.close_session(self.state)
        try:
            self.client._wait(lambda m: m.request_id == rid and m.type in ("done", "error"), timeout, what="close")
        except BackendError:
            pass  # the backend collects it anyway

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _raise_if_error(m: Message) -> None:
    if m.type == "error":
        raise BackendError(str(m.get("code")), str(m.get("message")))
