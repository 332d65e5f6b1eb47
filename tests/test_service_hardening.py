"""The backend and its clients against local attackers: a real backend process, real sockets.

Each test plays one attack from the hardening review and checks the outcome: connection files planted
or deleted through a runtime folder others can write, stale files of other processes, memory held for
peers without the key, rate-limit answers without request ids, lost last edits, two backends on one
connection file, reply hijacking through a reused routing id, and CURVE start-up with bad key material.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import msgpack
import pytest
import zmq
from model_support import tiny_generator
from service_support import REPO, Backend, make_directions, noise_rgba, raw_socket, recv
from zmq.utils.monitor import recv_monitor_message

from anycost_client import protocol as P
from anycost_client.client import Client
from anycost_client.connection import Connection
from anycost_client.connection_file import ConnectionFileError, find_connection_file, read_connection_file

RATE = 50  # messages per second per client the test backend allows (burst: twice that)
NOBODY = 65534
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _foreign(path: Path) -> None:
    """Give ``path`` to another user where we can (as root), as an attacker's file would be."""
    if IS_ROOT:
        os.chown(path, NOBODY, NOBODY)


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ANYCOST_CONNECTION_FILE"}
    env.update({"XDG_DATA_HOME": str(tmp / "data"), "XDG_CONFIG_HOME": str(tmp / "config"),
                "ANYCOST_BACKGROUND_SEARCH": "0", **extra})
    return env


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A backend started in a session whose $XDG_RUNTIME_DIR is world-writable (mode 1777, like /tmp),
    where another user has already made ``anycost/`` with mode 0777."""
    from anycost.io.modelfile import save_model

    tmp = tmp_path_factory.mktemp("hardening")
    model = save_model(tmp / "tiny.safetensors", generator=tiny_generator(32), info={"name": "tiny", "face": False})
    dirs = make_directions(model, tmp / "dirs.safetensors")
    shared = tmp / "run"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    trap = shared / "anycost"
    trap.mkdir()
    os.chmod(trap, 0o777)
    _foreign(trap)
    env = _env(tmp, XDG_RUNTIME_DIR=str(shared), XDG_CACHE_HOME=str(tmp / "cache"))
    b = Backend(tmp, model, dirs, "--rate", str(RATE), "--max-frame-bytes", "2000000", "--session-timeout", "20",
                conn=False, env=env)
    yield SimpleNamespace(tmp=tmp, model=model, dirs=dirs, backend=b, shared=shared, trap=trap, env=env)
    assert b.stop() == 0
    assert not b.conn.exists(), "removed on clean shutdown"


# ---------------------------------------------------------------------- 1. runtime folder
def test_backend_never_writes_into_a_runtime_folder_others_can_write(world):
    b = world.backend
    assert b.conn.parent == world.tmp / "cache" / "anycost" / "runtime", "fell back to a private folder"
    assert stat.S_IMODE(b.conn.parent.stat().st_mode) == 0o700 and stat.S_IMODE(b.conn.stat().st_mode) == 0o600
    assert list(world.trap.iterdir()) == [], "nothing written where another user could replace or delete it"
    fallback = b.events("runtime_dir_fallback")
    assert fallback and "XDG_RUNTIME_DIR is not private" in fallback[0]["reason"], "and it says so"


def test_a_connection_file_planted_by_another_user_is_never_used(world, monkeypatch, tmp_path):
    """The attack: another user's backend (here a bare socket that records what reaches it) and a connection
    file naming a live pid (1), dropped into the shared ``anycost/`` folder."""
    ctx = zmq.Context.instance()
    attacker = ctx.socket(zmq.ROUTER)
    attacker.setsockopt(zmq.LINGER, 0)
    port = attacker.bind_to_random_port("tcp://127.0.0.1")
    planted = world.trap / "backend-1.json"
    planted.write_text(json.dumps({"endpoint": f"tcp://127.0.0.1:{port}", "key": "00" * 32, "pid": 1}))
    os.chmod(planted, 0o644)
    _foreign(planted)
    try:
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(world.shared))
        monkeypatch.delenv("ANYCOST_CONNECTION_FILE", raising=False)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))  # no backend of ours runs
        with pytest.raises(ConnectionFileError, match="no running backend"):
            find_connection_file()
        with pytest.raises(ConnectionFileError, match="refusing the connection file"):
            read_connection_file(planted)
        cli = subprocess.run([sys.executable, "-m", "anycost", "client", "ping"], capture_output=True, text=True,
                             timeout=120, cwd=REPO, env=_env(tmp_path, XDG_RUNTIME_DIR=str(world.shared),
                                                             XDG_CACHE_HOME=str(tmp_path / "empty-cache")))
        assert cli.returncode == 2 and "no running backend" in cli.stderr and "Traceback" not in cli.stderr
        assert not attacker.poll(500), "nothing reached the attacker's backend"

        monkeypatch.setenv("XDG_CACHE_HOME", str(world.tmp / "cache"))  # the user's own backend is found
        assert find_connection_file() == world.backend.conn
    finally:
        attacker.close(0)
        planted.unlink()


def test_connection_files_others_could_write_or_read_are_refused(tmp_path):
    info = {"endpoint": "tcp://127.0.0.1:1", "key": "00" * 32, "pid": os.getpid()}
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps(info))
    os.chmod(ok, 0o600)
    assert read_connection_file(ok)["endpoint"] == "tcp://127.0.0.1:1"
    os.chmod(ok, 0o644)
    with pytest.raises(ConnectionFileError, match=r"mode is 0644.*chmod 600"):
        read_connection_file(ok)
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    inside = open_dir / "c.json"
    inside.write_text(json.dumps(info))
    os.chmod(inside, 0o600)
    with pytest.raises(ConnectionFileError, match="writable by other users"):
        read_connection_file(inside)
    if IS_ROOT:
        theirs = tmp_path / "theirs.json"
        theirs.write_text(json.dumps(info))
        os.chmod(theirs, 0o600)
        _foreign(theirs)
        with pytest.raises(ConnectionFileError, match="belongs to another user"):
            read_connection_file(theirs)


# ---------------------------------------------------------------------- 7. stale files
def test_stale_files_of_other_processes_are_passed_over(world, monkeypatch, tmp_path):
    """Newer files whose pid is now an unrelated process (or another process with a reused pid) are
    skipped; the live backend's older file is chosen and connects at once."""
    runtime = tmp_path / "runtime"
    folder = runtime / "anycost"
    folder.mkdir(parents=True, mode=0o700)
    os.chmod(runtime, 0o700)
    real = json.loads(world.backend.conn.read_text())
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        files = {
            "backend-live.json": real,
            "backend-unrelated.json": {**real, "endpoint": "tcp://127.0.0.1:9", "pid": sleeper.pid,
                                       "process": None},
            "backend-reused.json": {**real, "endpoint": "tcp://127.0.0.1:9", "process": "another-boot:1"},
        }
        for i, (name, info) in enumerate(files.items()):
            p = folder / name
            p.write_text(json.dumps(info))
            os.chmod(p, 0o600)
            os.utime(p, (time.time() - 100 + 10 * i, time.time() - 100 + 10 * i))  # the live one is the oldest
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
        monkeypatch.delenv("ANYCOST_CONNECTION_FILE", raising=False)
        assert find_connection_file() == folder / "backend-live.json"
        with Client.connect(connect_timeout=30) as c:
            assert c.ping()["sessions"] >= 0
    finally:
        sleeper.kill()
        sleeper.wait()


# ---------------------------------------------------------------------- 6. one backend per file
def test_a_second_backend_refuses_a_connection_file_held_by_a_live_one(world):
    b = world.backend
    before = b.conn.read_bytes()
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "anycost", "serve", "--model", str(world.model), "--no-lpips",
                          "--connection-file", str(b.conn)], capture_output=True,
                         text=True, timeout=120, cwd=REPO, env=world.env)
    assert out.returncode == 2, out.stderr
    assert f"belongs to a running backend (pid {b.proc.pid})" in out.stderr
    assert '"loading"' not in out.stderr, "refused before the model loads"
    assert time.monotonic() - t0 < 120
    assert b.conn.read_bytes() == before, "the running backend's file is untouched"
    with Client.connect(b.conn) as c:
        assert c.ping()["sessions"] >= 0


def test_stopping_never_removes_a_file_the_backend_does_not_own(world, tmp_path):
    conn = tmp_path / "c.json"
    c = Backend(tmp_path, world.model, world.dirs, conn=conn, env=world.env)
    try:
        theirs = dict(c.info, pid=1, endpoint="tcp://127.0.0.1:9")
        tmp = tmp_path / "replacement"
        tmp.write_text(json.dumps(theirs))
        os.chmod(tmp, 0o600)
        os.replace(tmp, conn)  # meanwhile the path was taken over by another writer
    finally:
        assert c.stop() == 0
    assert json.loads(conn.read_text())["endpoint"] == "tcp://127.0.0.1:9", "someone else's file stays"
    assert not (tmp_path / ".c.json.lock").exists(), "the lock goes with the backend"


# ---------------------------------------------------------------------- 2. pre-auth memory
def _peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


HANDSHAKE_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                    | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_DISCONNECTED)


def _stranger(endpoint: str, routing_id: bytes | None = None) -> tuple[zmq.Socket, zmq.Socket]:
    """A DEALER without the key, and a monitor of its handshakes attached before it connects."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if routing_id is not None:
        sock.setsockopt(zmq.ROUTING_ID, routing_id)
    mon = sock.get_monitor_socket(HANDSHAKE_EVENTS)
    sock.connect(endpoint)
    return sock, mon


def _handshake(sock: zmq.Socket, mon: zmq.Socket, timeout: float = 30.0) -> int:
    """The first handshake outcome of ``sock`` (a monitor event)."""
    try:
        if not mon.poll(int(timeout * 1000)):
            raise AssertionError("no handshake outcome")
        return recv_monitor_message(mon)["event"]
    finally:
        sock.disable_monitor()
        mon.close(0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the peak RSS from /proc")
def test_a_peer_without_the_key_cannot_make_the_backend_hold_its_frames(world):
    """3 messages of 60 frames × 3.9 MB (each frame under the frame limit) from a peer without the key."""
    b = world.backend
    before, rejected = _peak_rss_kb(b.proc.pid), len(b.events("rejected"))
    attacker, mon = _stranger(b.endpoint)
    frame = b"\0" * 3_900_000
    try:
        for i in range(3):
            try:  # once the backend has refused the handshake there is no peer to queue for
                attacker.send_multipart([b"", msgpack.packb({"t": "ping", "id": i}), *[frame] * 60], zmq.NOBLOCK,
                                        copy=False)
            except zmq.Again:
                pass
        event = _handshake(attacker, mon)
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:  # the peer got in: let the backend take its messages
            deadline = time.monotonic() + 60
            while len(b.events("rejected")) < rejected + 3 and time.monotonic() < deadline:
                time.sleep(0.2)
        grown_mb = (_peak_rss_kb(b.proc.pid) - before) / 1024
        assert grown_mb < 64, f"the backend's peak memory grew by {grown_mb:.0f} MB"
        assert event != zmq.EVENT_HANDSHAKE_SUCCEEDED, "a peer without the key does not get past the handshake"
        assert not attacker.poll(1000), "and gets no answer"
    finally:
        attacker.close(0)
    with Client.connect(b.conn) as c:
        assert c.ping()["sessions"] >= 0, "and it serves its clients"


def test_frame_count_and_sizes_are_bounded_before_the_signature(world):
    """A peer past the handshake (it has the key's handshake proof) but signing wrongly: the bounds are
    checked first, and each refusal names its request."""
    b = world.backend
    s = raw_socket(b.endpoint, b.key)
    try:
        def send(rid: int, frames: list[bytes], pad: int = 0) -> P.Message:
            header = {"t": "open", "v": 1, "id": rid, "ts": time.time(), "nonce": os.urandom(12), "pad": "x" * pad}
            s.send_multipart([b"\0" * 32, msgpack.packb(header), *frames])
            return recv(s, None, timeout=30)

        err = send(1, [b"\0" * 1000] * 6)
        assert (err.get("code"), err.request_id) == (P.E_TOO_LARGE, 1) and "6 frames" in err.get("message")
        err = send(2, [b"\0" * 1_900_000] * 3)
        assert (err.get("code"), err.request_id) == (P.E_TOO_LARGE, 2) and "a message of" in err.get("message")
        err = send(3, [], pad=100_000)
        assert err.get("code") == P.E_TOO_LARGE and "header of" in err.get("message")
        err = send(4, [b"\0" * 1000])
        assert (err.get("code"), err.request_id) == (P.E_BAD_SIGNATURE, 4)
    finally:
        s.close(0)


# ---------------------------------------------------------------------- 3. rate limiting
def test_rate_limited_answers_name_their_request(world):
    s = raw_socket(world.backend.endpoint, world.backend.key)
    try:
        sent = set(range(1000, 1000 + 4 * RATE))
        for rid in sorted(sent):
            s.send_multipart(P.encode(P.Message("ping", request_id=rid), world.backend.key))
        refused = []
        while s.poll(2000):
            m = P.decode(s.recv_multipart(), world.backend.key)
            if m.type == "error":
                assert m.get("code") == P.E_RATE
                refused.append(m.request_id)
        assert refused, "the flood was rate limited"
        assert set(refused) <= sent and len(set(refused)) == len(refused), "each refusal names its request"
    finally:
        s.close(0)


def test_cli_ping_backs_off_instead_of_failing(world):
    n = 5 * RATE  # three times the burst: most pings meet the rate limit
    out = subprocess.run([sys.executable, "-m", "anycost", "client", "--connection-file", str(world.backend.conn),
                          "ping", "-n", str(n)], capture_output=True, text=True, timeout=300, cwd=REPO,
                         env=world.env)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert out.stdout.count("pong from backend") == n


def test_the_last_edit_of_a_storm_is_never_lost(world):
    """10,000 edits as fast as the client can send them, far over the rate: the backend coalesces them
    instead of refusing them, and the last one is rendered."""
    got: list[P.Message] = []
    conn = Connection(world.backend.endpoint, world.backend.key, on_message=got.append)
    state = None
    try:
        state = conn.open_session(noise_rgba(64, 64), 64, 64, align=False)
        deadline = time.monotonic() + 60
        while not state.ready and time.monotonic() < deadline:
            conn.sock.poll(100)
            conn.process_events()
        assert state.ready
        for i in range(10_000):
            while True:
                try:
                    conn.edit(state, {"sefa_0": (i % 200) / 100 - 1})
                    break
                except zmq.Again:  # the send queue is full: let it drain
                    conn.sock.poll(10, zmq.POLLOUT)
        last = state.last_sent_seq
        deadline = time.monotonic() + 120
        while not any(m.type == "preview" and m.seq == last for m in got) and time.monotonic() < deadline:
            conn.sock.poll(100)
            conn.process_events()
            conn.tick()
        errors = [(m.get("code"), m.request_id) for m in got if m.type == "error"]
        assert not errors, errors[:5]
        assert any(m.type == "preview" and m.seq == last for m in got), "the last edit got its preview"
        assert len([m for m in got if m.type == "preview"]) < 1000, "and the storm never queued renders"
    finally:
        if state is not None:
            conn.close_session(state)
        conn.close()


# ---------------------------------------------------------------------- 8. routing identity
def test_a_peer_reusing_a_clients_routing_id_does_not_get_its_replies(world):
    with Client.connect(world.backend.conn, timeout=30) as victim:
        assert victim.ping()["sessions"] >= 0
        thief, mon = _stranger(world.backend.endpoint, routing_id=victim.conn.routing_id)
        try:
            event = _handshake(thief, mon)
            pongs = [victim.ping(timeout=10) for _ in range(3)]
            assert event != zmq.EVENT_HANDSHAKE_SUCCEEDED, "the thief is refused in the handshake"
            assert len(pongs) == 3, "the client keeps its replies"
            assert not thief.poll(500), "and the thief gets none"
        finally:
            thief.close(0)


# ---------------------------------------------------------------------- 4. CURVE start-up
def test_bad_curve_key_material_is_one_line_and_exit_2_before_the_model_loads(world, tmp_path):
    from anycost.service.auth import generate_curve_keys

    public, secret = generate_curve_keys(tmp_path / "keys", "server")
    alice, _ = generate_curve_keys(tmp_path / "keys", "alice")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    os.link(alice, allowed / "alice.key")
    empty = tmp_path / "empty"
    empty.mkdir()
    plain = tmp_path / "notes.txt"
    plain.write_text("hello\n")
    cases = {
        "public key as the server key": (public, allowed, "holds no secret key"),
        "missing server key": (tmp_path / "nope.key_secret", allowed, "does not exist"),
        "plain file as the server key": (plain, allowed, "not a ZeroMQ certificate"),
        "folder as the server key": (empty, allowed, "is not a file"),
        "plain file as the allowed clients": (secret, plain, "is not a folder"),
        "missing allowed clients": (secret, tmp_path / "nowhere", "does not exist"),
        "no keys in the allowed clients": (secret, empty, "holds no public"),
    }
    for name, (key, clients, words) in cases.items():
        conn = tmp_path / f"{len(name)}.json"
        t0 = time.monotonic()
        out = subprocess.run([sys.executable, "-m", "anycost", "serve", "--model", str(world.model), "--no-lpips",
                              "--bind", "tcp://0.0.0.0:*", "--curve-server-key", str(key), "--allowed-clients",
                              str(clients), "--connection-file", str(conn)],
                             capture_output=True, text=True, timeout=120, cwd=REPO, env=world.env)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2, f"{name}: {out.stderr[-1000:]}"
        assert len(lines) == 1 and lines[0].startswith("anycost: error:") and words in lines[0], f"{name}: {lines}"
        assert not conn.exists() and time.monotonic() - t0 < 120
