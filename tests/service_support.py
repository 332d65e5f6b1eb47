"""Helpers for the service tests: a real backend process and raw-socket tools (no tests here)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import zmq

from anycost_client import protocol as P

REPO = Path(__file__).resolve().parents[1]


def make_directions(model: Path, path: Path) -> Path:
    from anycost.directions import save_directions_file, sefa_directions
    from anycost.io.checkpoint import load_generator

    if not path.exists():
        save_directions_file(path, sefa_directions(load_generator(model), k=3))
    return path


class Backend:
    """``python -m anycost serve`` in a subprocess, with its connection file in a tmp dir.

    ``directions``: a direction file to serve besides the model's own (None: the model's only).
    ``conn=False``: no ``--connection-file`` (the backend picks its runtime folder; ``conn`` is then
    where its 'listening' log line says it wrote the file). ``env``: the environment (default: ours)."""

    def __init__(self, tmp: Path, model: Path, directions: Path | None, *extra: str,
                 conn: Path | None | bool = None, env: dict[str, str] | None = None):
        self.conn: Path | None = None if conn is False else (conn or tmp / "conn.json")  # type: ignore[assignment]
        self.log = tmp / f"backend-{time.monotonic_ns()}.log"
        where = [] if self.conn is None else ["--connection-file", str(self.conn)]
        cmd = [sys.executable, "-m", "anycost", "serve", "--model", str(model),
               *(["--directions", str(directions)] if directions is not None else []),
               "--no-lpips", *where, *extra]
        env = {**(os.environ if env is None else env), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        self._log = open(self.log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        self.info = self._wait_ready()

    def _wait_ready(self, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"backend exited early:\n{self.log.read_text()}")
            listening = self.events("listening")
            if listening and self.conn is None:
                self.conn = Path(listening[0]["connection_file"])
            if listening and self.conn.exists():
                return json.loads(self.conn.read_text())
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"backend did not start:\n{self.log.read_text()}")

    @property
    def endpoint(self) -> str:
        return self.info["endpoint"]

    @property
    def key(self) -> bytes:
        return bytes.fromhex(self.info["key"])

    def events(self, name: str | None = None) -> list[dict]:
        """The backend's JSON log lines so far (only those of event ``name`` when given)."""
        out = []
        for line in self.log.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if name is None or (isinstance(event, dict) and event.get("event") == name):
                out.append(event)
        return out

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


def raw_socket(endpoint: str, key: bytes | None = None, routing_id: bytes | None = None) -> zmq.Socket:
    """A bare DEALER. With ``key`` it proves the key in the handshake (as clients do), so its messages
    reach the backend; without, the backend refuses the connection before any message."""
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    if key is not None:
        s.setsockopt(zmq.PLAIN_USERNAME, P.PLAIN_USERNAME.encode())
        s.setsockopt(zmq.PLAIN_PASSWORD, P.plain_password(key).encode())
    if routing_id is not None:
        s.setsockopt(zmq.ROUTING_ID, routing_id)
    s.connect(endpoint)
    return s


def recv(sock: zmq.Socket, key: bytes | None, timeout: float = 10.0) -> P.Message:
    """The next message; ``key=None`` reads without checking the signature (a peer with the wrong key)."""
    if not sock.poll(int(timeout * 1000)):
        raise TimeoutError("no reply from the backend")
    return P.decode(sock.recv_multipart(), key, expect=P.SERVER_TYPES)


def request(sock: zmq.Socket, key: bytes, msg: P.Message, timeout: float = 10.0) -> P.Message:
    sock.send_multipart(P.encode(msg, key))
    return recv(sock, key, timeout)


def noise_rgba(w: int, h: int, seed: int = 0) -> bytes:
    import numpy as np

    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    a[..., 3] = 255
    return a.tobytes()
