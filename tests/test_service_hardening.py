"""The backend and its clients against local attackers: a real backend process, real sockets.

Each test plays one attack from the hardening review and checks the outcome: connection files planted
or deleted through a runtime folder others can write, stale files of other processes, two backends on
one connection file, and CURVE start-up with bad key material.
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

import pytest
import zmq
from model_support import tiny_generator
from service_support import REPO, Backend, make_directions

from anycost_client.client import Client
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
