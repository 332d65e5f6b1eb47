"""The connection a host process keeps to its backend, whatever the GUI toolkit.

``BackendLink`` (one per host process) finds the running backend through its connection file, or
starts the configured backend command, keeps the connection alive (heartbeats), restarts a backend
it started if that one dies, and finds a new one if an external backend comes back elsewhere.

The host supplies an ``EventLoop``: watch a file descriptor and call a function later (Qt:
``QSocketNotifier`` and ``QTimer``; GTK: ``GLib.io_add_watch`` and ``GLib.timeout_add``), and calls
``tick()`` every ~250 ms. Whatever follows the link (a dialog's ``EditController``) is a
``LinkListener``. Everything runs on the host's main thread; nothing here blocks.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .backend_launcher import BackendLauncher, LaunchError, configured_command, parse_command
from .connection import Connection, Status
from .connection_file import (
    ConnectionFileError,
    find_connection_file,
    is_loopback_endpoint,
    process_state,
    read_connection_file,
)
from .protocol import Message

__all__ = ["BackendLink", "EventLoop", "LinkListener", "LinkSettings", "LinkState"]

log = logging.getLogger("anycost.plugin")


class EventLoop(Protocol):
    """The host's event loop, as the link and its listeners use it."""

    def watch(self, fd: int, callback: Callable[[], None]) -> Any:
        """Call ``callback`` when ``fd`` becomes readable; returns a token for ``unwatch``."""

    def unwatch(self, token: Any) -> None: ...

    def call_later(self, seconds: float, callback: Callable[[], None]) -> None: ...


class LinkListener(Protocol):
    """What follows a link (``BackendLink.add_listener``): told of every state change and every message."""

    def link_changed(self, link: BackendLink) -> None: ...

    def backend_message(self, msg: Message) -> None: ...


class LinkState(str, enum.Enum):
    IDLE = "idle"
    STARTING = "starting"  # launched the backend command, waiting for it to listen
    CONNECTING = "connecting"  # connection file found, waiting for the welcome
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"  # the backend went silent; retrying, restarting or looking for another
    FAILED = "failed"  # nothing to connect to; ``message`` says what to do


@dataclass
class LinkSettings:
    backend_command: str | list[str] | None = None  # None: $ANYCOST_BACKEND_COMMAND or plugin.json
    backend_args: list[str] = field(default_factory=list)  # extra options for a started backend
    connection_file: str | None = None  # a specific backend (e.g. a shared workstation); else find one
    endpoint: str | None = None  # overrides the connection file's address
    host: str = "plugin"  # names the files of a backend this host starts
    client_name: str = "anycost-plugin"
    start_timeout: float = 180.0
    connect_timeout: float = 10.0
    ping_interval: float = 1.5  # heartbeat when otherwise quiet
    pong_timeout: float = 4.5  # silence after which the backend counts as lost or, if it still runs, hung
    rediscover_every: float = 2.0  # while reconnecting: look for a backend elsewhere this often
    max_restarts: int = 3  # restarts of a started backend that keeps dying, within ``restart_window``
    restart_window: float = 600.0  # seconds a restart counts against ``max_restarts``; older ones expire
    keep_backend: bool = False  # a backend started here outlives this process (one-shot plug-ins, e.g. GIMP's)


class BackendLink:
    """The connection to the backend, shared by every dialog of a host process.

    Listeners (``add_listener``, each a ``LinkListener``) get ``link_changed(link)`` and
    ``backend_message(msg)`` calls.
    """

    def __init__(self, loop: EventLoop, settings: LinkSettings | None = None):
        self.loop = loop
        self.settings = settings or LinkSettings()
        self.state = LinkState.IDLE
        self.message = "Not connected"
        self.conn: Connection | None = None
        self.connection_file: Path | None = None
        self.launcher: BackendLauncher | None = None
        self.restarts = 0  # restarts of a backend started here, since the last ``ensure``
        self.restart_times: list[float] = []  # when they happened (monotonic), the last ``restart_window`` only
        self.backend_pid: int | None = None  # of a backend on this machine (the connection file's ``pid``)
        self.hung = False  # the backend's process lives but misses its heartbeats
        self.reconnects = 0  # welcomes after the first: listeners replay their state
        self._listeners: list[LinkListener] = []
        self._watch: Any = None
        self._watched: tuple[int, int] | None = None
        self._deadline = 0.0
        self._lost_at = 0.0
        self._next_discovery = 0.0
        self._had_welcome = False

    # ------------------------------------------------------------------ listeners
    def add_listener(self, listener: LinkListener) -> None:
        if listener not in self._listeners:
            self._listeners.append(listener)

    def remove_listener(self, listener: LinkListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def call_later(self, seconds: float, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the host's event loop in ``seconds`` (a listener pacing what it sends)."""
        self.loop.call_later(seconds, callback)

    def _set(self, state: LinkState, message: str) -> None:
        if (state, message) == (self.state, self.message):
            return
        self.state, self.message = state, message
        (log.warning if state in (LinkState.RECONNECTING, LinkState.FAILED) else log.info)(
            "backend link: %s: %s", state.value, message)
        for listener in list(self._listeners):
            listener.link_changed(self)

    @property
    def welcome(self) -> dict:
        return dict(self.conn.welcome.fields) if self.conn is not None and self.conn.welcome else {}

    @property
    def connected(self) -> bool:
        return self.state == LinkState.CONNECTED

    @property
    def owns_backend(self) -> bool:
        return self._own is not None

    @property
    def _own(self) -> BackendLauncher | None:
        """The launcher of a backend this link started, else None."""
        launcher = self.launcher
        return launcher if launcher is not None and launcher.proc is not None else None

    # ------------------------------------------------------------------ connecting
    def ensure(self) -> None:
        """Connect if not connected or trying (a failed link tries again)."""
        if self.state in (LinkState.IDLE, LinkState.FAILED):
            self.restarts = 0
            self.restart_times.clear()
            self.hung = False
            self._discover(first=True)
        if self.state == LinkState.FAILED:
            self._next_discovery = time.monotonic() + self.settings.rediscover_every

    def _find(self) -> Path | None:
        if self.settings.connection_file:
            return Path(self.settings.connection_file)
        try:
            return find_connection_file()
        except ConnectionFileError:
            return None

    def _command(self) -> list[str]:
        return configured_command(self.settings.backend_command)

    def _discover(self, first: bool = False) -> None:
        path = self._find()
        if path is not None:
            try:
                self._connect(path)
                return
            except ConnectionFileError as e:
                if self.settings.connection_file:
                    self._set(LinkState.FAILED, str(e))
                    return
        if self.launcher is not None and self.launcher.running():
            self._set(LinkState.STARTING, "Waiting for the backend to start…")
            return
        if not self._command():
            self._set(LinkState.FAILED, "No Anycost backend is running and no backend command is configured. "
                                        "Start one with 'anycost serve', or set the backend command in the "
                                        "plugin's settings.")
            return
        self._launch()

    def _launch(self) -> None:
        cmd = self._command()
        try:
            if self.launcher is None or self.launcher.command != parse_command(cmd):
                self.launcher = BackendLauncher(cmd, host=self.settings.host, extra_args=self.settings.backend_args,
                                                die_with_host=not self.settings.keep_backend)
            self.launcher.start()
        except LaunchError as e:
            self._set(LinkState.FAILED, str(e))
            return
        self._deadline = time.monotonic() + self.settings.start_timeout
        self._set(LinkState.STARTING, f"Starting the backend (pid {self.launcher.pid})…")

    def _connect(self, path: Path) -> None:
        info = read_connection_file(path)
        endpoint = self.settings.endpoint or info["endpoint"]
        key = info["key_bytes"]
        if self.conn is not None and (self.conn.endpoint, self.conn.key) == (endpoint, key):
            return  # the same backend (restarted on its old endpoint): the connection reconnects by itself
        self._drop_connection()
        self.connection_file = path
        pid = info.get("pid")
        self.backend_pid = pid if isinstance(pid, int) and is_loopback_endpoint(endpoint) else None
        self.conn = Connection(endpoint, key, on_message=self._on_message, on_status=self._on_status,
                               client_name=self.settings.client_name, ping_interval=self.settings.ping_interval,
                               pong_timeout=self.settings.pong_timeout, plain=info.get("auth") == "plain")
        self._deadline = time.monotonic() + self.settings.connect_timeout
        self._rewatch()
        if self.state != LinkState.RECONNECTING:
            self._set(LinkState.CONNECTING, f"Connecting to the backend at {endpoint}…")

    def _drop_connection(self) -> None:
        if self._watch is not None:
            self.loop.unwatch(self._watch)
            self._watch, self._watched = None, None
        if self.conn is not None:
            self.conn.on_status = None
            self.conn.close()
            self.conn = None

    def _rewatch(self) -> None:
        """(Re-)register the socket's FD: it changes whenever the connection makes a new socket."""
        conn = self.conn
        if conn is None or conn.sock is None:
            return
        ident = (id(conn), conn.generation)
        if ident == self._watched:
            return
        if self._watch is not None:
            self.loop.unwatch(self._watch)
        self._watch = self.loop.watch(conn.fd, self.process_events)
        self._watched = ident

    # ------------------------------------------------------------------ events
    def process_events(self) -> None:
        if self.conn is not None:
            self.conn.process_events()
            self._rewatch()

    def _on_status(self, status: Status) -> None:
        if status == Status.RECONNECTING and self.state == LinkState.CONNECTED:
            self._lost_at = time.monotonic()
            self._next_discovery = self._lost_at + self.settings.rediscover_every
            hung = self._hung_backend()
            if hung is not None:
                self.hung = True
                self._set(LinkState.FAILED, hung)
                return
            self._set(LinkState.RECONNECTING, "The backend stopped answering; reconnecting…")

    def _hung_backend(self) -> str | None:
        """The backend missed its heartbeats (nothing heard for ``pong_timeout``): when its process is
        alive on this machine it is hung (stopped, or stuck), not gone — say so, instead of reconnecting
        to it for ever. None when it is gone or elsewhere (the usual reconnect or restart follows)."""
        launcher = self._own
        state: str | None
        if launcher is not None:  # started here
            if not launcher.running():
                return None  # it died: ``tick`` restarts it
            pid = launcher.pid
            state = process_state(pid) or "?"  # it runs: Popen says so
        else:
            pid = self.backend_pid
            state = process_state(pid) if pid is not None else None
            if state is None:  # gone, or nothing known about it here: reconnect or find another
                return None
        if state in ("Z", "X"):  # exited, not yet reaped
            return None
        s = self.settings
        missed = max(1, round(s.pong_timeout / s.ping_interval))
        how = ", stopped" if state in ("T", "t") else ""
        fix = ("Retry stops it and starts a new one" if self.owns_backend else
               "Retry connects again; if it stays silent, restart it")
        return (f"The backend does not answer (pid {pid}{how}): {missed} heartbeats missed in {s.pong_timeout:g} s. "
                f"{fix}.")

    def _on_message(self, msg: Message) -> None:
        if msg.type == "welcome":
            again = self._had_welcome
            self._had_welcome = True
            if again:
                self.reconnects += 1
            self.hung = False
            self._set(LinkState.CONNECTED, self._describe())
        for listener in list(self._listeners):
            listener.backend_message(msg)

    def _describe(self) -> str:
        w = self.welcome
        models = w.get("models") or [{}]
        own = self._own
        owner = f", started by this plugin (pid {own.pid})" if own is not None and own.running() else ""
        return f"Connected to {w.get('server', 'the backend')}, model {models[0].get('name', '?')}{owner}"

    def tick(self) -> None:
        """Heartbeats, reconnects, waiting for a starting backend; call every ~250 ms."""
        now = time.monotonic()
        if self.conn is not None:
            self.conn.tick(now)
            self._rewatch()
        if self.state == LinkState.STARTING:
            self._tick_starting(now)
        elif self.state == LinkState.CONNECTING:
            if now > self._deadline:
                self._connect_timed_out()
        elif self.state == LinkState.RECONNECTING:
            self._tick_reconnecting(now)
        elif self.state == LinkState.FAILED:
            self._tick_failed(now)
        elif self.state == LinkState.CONNECTED and (own := self._own) is not None and not own.running():
            self._lost_at = now
            self._next_discovery = now
            self._set(LinkState.RECONNECTING, f"The backend stopped (exit code {own.exit_code()}); "
                                              "restarting it…")
            self._tick_reconnecting(now)

    def _tick_starting(self, now: float) -> None:
        assert self.launcher is not None
        try:
            path = self.launcher.ready_file()
        except LaunchError as e:
            self._set(LinkState.FAILED, str(e))
            return
        if path is not None:
            try:
                self._connect(path)
            except ConnectionFileError:
                return
            if self.conn is not None and self.conn.welcome is None and self.state == LinkState.STARTING:
                self._set(LinkState.CONNECTING, "The backend is up; connecting…")
        elif now > self._deadline:
            self.launcher.stop()
            self._set(LinkState.FAILED, f"The backend did not start within {self.settings.start_timeout:g} s; "
                                        f"see its log {self.launcher.log_file}")

    def _connect_timed_out(self) -> None:
        endpoint = self.conn.endpoint if self.conn else "?"
        own = self._own
        if own is not None and own.running():
            self._deadline = time.monotonic() + self.settings.connect_timeout
            return  # our own backend is busy starting up; keep waiting
        if not self.settings.connection_file and self._command() and not self.owns_backend:
            log.warning("backend at %s does not answer; starting our own", endpoint)
            self._drop_connection()
            self._launch()
            return
        pid = f" (pid {self.backend_pid})" if self.backend_pid is not None else ""
        self._set(LinkState.FAILED, f"The backend at {endpoint}{pid} does not answer. Restart it, or remove its "
                                    f"stale connection file {self.connection_file}.")

    def _tick_reconnecting(self, now: float) -> None:
        launcher = self._own
        if launcher is not None and not launcher.running():  # ours, and it died
            window = self.settings.restart_window
            self.restart_times = [t for t in self.restart_times if now - t < window]  # older ones expire
            code = launcher.exit_code()
            if len(self.restart_times) >= self.settings.max_restarts:
                self._drop_connection()
                recent = len(self.restart_times)
                how = (f"restarted {recent} time{'s' if recent != 1 else ''} in the last {_duration(window)}"
                       if recent else "not restarted")
                self._set(LinkState.FAILED, f"The backend keeps stopping (exit code {code}; {how}); see its "
                                            f"log {launcher.log_file}")
                return
            self.restarts += 1
            self.restart_times.append(now)
            try:
                launcher.start()
            except LaunchError as e:
                self._set(LinkState.FAILED, str(e))
                return
            self._set(LinkState.RECONNECTING, f"The backend stopped (exit code {code}); restarted it (pid "
                                              f"{launcher.pid}), waiting for it…")
            return
        own = self._own
        if own is not None:
            try:
                path = own.ready_file()
            except LaunchError:
                return
            if path is not None and now >= self._next_discovery:
                self._next_discovery = now + self.settings.rediscover_every
                self._connect(path)  # same endpoint and key unless the file changed
                self._handshake()
            return
        if now >= self._next_discovery:
            self._next_discovery = now + self.settings.rediscover_every
            if self.conn is not None and self.conn.status == Status.CONNECTED:
                self._handshake()  # pongs flow again, but from a backend that has not welcomed us
            path = self._find()
            if path is not None:
                try:
                    self._connect(path)  # a backend elsewhere (new endpoint or key): a fresh connection
                except ConnectionFileError:
                    pass
            elif self._command() and now - self._lost_at > self.settings.pong_timeout:
                self._launch()
                if self.state == LinkState.STARTING:
                    self._set(LinkState.RECONNECTING, "The backend is gone; started a new one…")

    def _tick_failed(self, now: float) -> None:
        """While a dialog is open, keep looking for a backend that came up meanwhile (started by hand,
        or by another host). Nothing is started from here: a command that keeps failing would only fail
        again; ``retry`` does that when the user asks."""
        if not self._listeners or now < self._next_discovery:
            return
        self._next_discovery = now + self.settings.rediscover_every
        path = self._find()
        if path is None or not path.exists():
            return
        if self.launcher is not None and not self.launcher.running():
            self.launcher = None  # ours is dead for good: the backend found now is not ours to restart
        try:
            self._connect(path)
        except ConnectionFileError:
            return
        self._handshake()

    def retry(self) -> None:
        """Try again now, from the start (restarting a backend this link starts); for a Retry button.
        A backend started here that still runs but does not answer (hung) is stopped first."""
        if self.state == LinkState.FAILED:
            self._drop_connection()
            launcher = self.launcher
            if launcher is not None and launcher.running():  # started here, still there, yet given up on
                log.warning("stopping the backend that does not answer (pid %s)", launcher.pid)
                launcher.stop(timeout=1.0)  # a stopped (SIGSTOP) process never handles SIGTERM: killed
            self.ensure()

    def _handshake(self) -> None:
        """Say hello on the current socket: ZeroMQ reconnects a socket to a backend restarted on the same
        endpoint by itself, so pongs may flow before any new welcome."""
        if self.conn is not None and self.conn.sock is not None:
            try:
                self.conn.hello()
            except Exception as e:
                log.warning("hello failed: %s", e)

    # ------------------------------------------------------------------ sending
    def send(self, fn: Callable[[Connection], Any]) -> Any:
        """Run ``fn(conn)`` (a send); None when there is no connection or its queue is full."""
        if self.conn is None or self.conn.sock is None:
            return None
        try:
            return fn(self.conn)
        except Exception as e:  # zmq.Again (queue full) or a socket being replaced: the replay resends
            log.warning("send failed: %s", e)
            return None

    def shutdown(self) -> None:
        """Close the connection and stop a backend this link started (host is closing), unless
        ``keep_backend`` says it is for the next plug-in process too."""
        self._drop_connection()
        if self.launcher is not None and not self.settings.keep_backend:
            self.launcher.stop(timeout=1.0 if self.hung else 10.0)  # a stopped process would only be waited for
        self._set(LinkState.IDLE, "Not connected")


def _duration(seconds: float) -> str:
    if seconds >= 120 and seconds % 60 == 0:
        return f"{seconds / 60:g} minutes"
    return f"{seconds:g} s"

