"""The backend service end to end: a real backend process, real sockets, the real client library."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import zmq
from service_support import REPO, Backend, make_directions, noise_rgba, raw_socket, recv, request

from anycost_client import protocol as P
from anycost_client.client import BackendError, Client
from anycost_client.connection import Connection

TIMEOUT = 3.0  # session timeout of the test backend, seconds
RATE = 100  # messages per second per client the test backend allows (burst: twice that)


@pytest.fixture(scope="module")
def backend(tmp_path_factory, official_fixture):
    tmp = tmp_path_factory.mktemp("service")
    dirs = make_directions(official_fixture / "generator.pt", tmp / "dirs.safetensors")
    b = Backend(tmp, official_fixture / "generator.pt", dirs, "--session-timeout", str(TIMEOUT),
                "--max-frame-bytes", "2000000", "--max-region-pixels", "200000", "--max-sessions", "4",
                "--rate", str(RATE))
    yield b
    assert b.stop() == 0, "clean shutdown on SIGTERM"
    assert not b.conn.exists(), "the connection file is removed on clean shutdown"


@pytest.fixture(scope="module")
def slow_backend(tmp_path_factory):
    """A backend whose previews take tens of milliseconds on any CPU (a 512 px generator, previewed whole):
    a slider storm at the allowed rate outruns it."""
    import torch

    from anycost.io.modelfile import save_model
    from anycost.models.generator import Generator

    tmp = tmp_path_factory.mktemp("slow-service")
    torch.manual_seed(0)
    model = save_model(tmp / "slow.safetensors", generator=Generator(resolution=512, channel_multiplier=1).eval(),
                       info={"name": "slow", "face": False, "channel_configs": "uniform"})
    dirs = make_directions(model, tmp / "dirs.safetensors")
    b = Backend(tmp, model, dirs, "--max-region-pixels", "200000", "--rate", str(RATE), "--preview-budget-ms", "1e5",
                "--no-background-search")
    yield b
    b.stop()


@pytest.fixture
def client(backend):
    c = Client.connect(backend.conn, timeout=60)
    yield c
    c.close()


def _sessions(client: Client) -> int:
    return client.ping()["sessions"]


def test_connection_file_is_private(backend):
    assert backend.conn.stat().st_mode & 0o777 == 0o600
    assert backend.info["endpoint"].startswith("tcp://127.0.0.1:")
    assert len(bytes.fromhex(backend.info["key"])) == 32
    assert backend.info["protocol_version"] == P.PROTOCOL_VERSION


def test_full_flow(client):
    w = client.welcome
    assert set(w["directions"]) == {"sefa_0", "sefa_1", "sefa_2"}
    assert w["directions"]["sefa_0"]["range"] == [-1.0, 1.0]
    assert w["session_timeout"] == TIMEOUT and w["limits"]["max_region_pixels"] == 200000
    assert w["models"][0]["resolution"] == 64 and "preview" in w["costs"]
    assert "64:1" in w["costs"]["levels"] and "32:0.5" in w["costs"]["levels"]

    width, height = 96, 80
    rgba = noise_rgba(width, height)
    stages = []
    progress_frames = []

    def progress(m: P.Message) -> None:
        stages.append(m.get("stage"))
        if m.frames:
            x, y, bw, bh = m.get("box")
            assert (m.frames[0].width, m.frames[0].height) == (bw, bh)
            assert 0 <= x and x + bw <= width and 0 <= y and y + bh <= height
            progress_frames.append(m)

    session = client.open(rgba, width, height, refine_steps=3, align=False, progress=progress, blend="replace")
    assert stages[0] == "align" and "encode" in stages and stages.count("refine") == 3
    assert progress_frames, "refinement shows something on the canvas"
    assert session.ready.get("method") == "center-crop" and session.notice
    assert set(session.directions) == {"sefa_0", "sefa_1", "sefa_2"}
    assert _sessions(client) == 1

    p0 = session.edit(sefa_0=0.8)
    p1 = session.edit(sefa_0=-0.8)
    assert (p0.seq, p1.seq) == (0, 1)
    cheap = session.edit(quality="32:0.5")
    assert cheap.cost == "32:0.5" and cheap.seq == 2
    x, y, bw, bh = p1.box
    assert 0 <= x and x + bw <= width and 0 <= y and y + bh <= height
    assert len(p1.rgba) == bw * bh * 4 and p1.render_ms > 0 and p1.cost
    assert p0.rgba != p1.rgba, "different sliders give different previews"

    r = session.commit(sefa_1=0.5)
    assert (r.width, r.height) == (width, height) and len(r.rgba) == width * height * 4
    out = np.frombuffer(r.rgba, np.uint8).reshape(height, width, 4)
    src = np.frombuffer(rgba, np.uint8).reshape(height, width, 4)
    bx, by, bw, bh = r.box
    outside = np.ones((height, width), bool)
    outside[by: by + bh, bx: bx + bw] = False
    assert np.array_equal(out[outside], src[outside]), "pixels outside the box are the region's own"
    assert not np.array_equal(out, src)

    session.close()
    assert _sessions(client) == 0

    # The default blend adds only the edit to the original: refinement leaves the canvas alone, and
    # sliders at zero give back the region's own pixels.
    progress_frames.clear()
    with client.open(rgba, width, height, refine_steps=2, align=False, progress=progress) as delta:
        assert not progress_frames
        r0 = delta.commit()
        assert bytes(r0.rgba) == bytes(rgba)
        assert delta.commit(sefa_0=1.0).rgba != rgba
    with pytest.raises(BackendError, match="blend"):
        client.open(rgba, width, height, align=False, blend="overlay")
    assert _sessions(client) == 0
    with pytest.raises(BackendError) as e:
        session.state.closed = False
        client.conn.edit(session.state, {"sefa_0": 0.1})
        client._wait(lambda m: m.type == "error", 10, what="error")  # noqa: SLF001
        raise BackendError(P.E_NO_SESSION, "closed")
    assert e.value.code == P.E_NO_SESSION


def test_bgra_and_mask(client):
    w, h = 64, 64
    rgba = noise_rgba(w, h, seed=3)
    mask = np.zeros((h, w), np.uint8)
    mask[:, w // 2:] = 255
    bgra = np.frombuffer(rgba, np.uint8).reshape(h, w, 4)[..., [2, 1, 0, 3]].copy()
    with client.open(bgra.tobytes(), w, h, mask=mask.tobytes(), channel_order="BGRA", align=False) as s:
        r = s.commit(sefa_0=1.0)
    out = np.frombuffer(r.rgba, np.uint8).reshape(h, w, 4)
    assert np.array_equal(out[:, : w // 2 - 2], bgra[:, : w // 2 - 2]), "unselected pixels stay, in BGRA"
    assert not np.array_equal(out[:, w // 2:], bgra[:, w // 2:])


@pytest.mark.parametrize("drafts", [True, False], ids=["drafts", "client-without-drafts"])
def test_slider_storm_latest_wins(slow_backend, drafts):
    """A 2 s slider storm faster than the renderer: edits are coalesced, previews never queue up, the canvas
    keeps updating (with drafts, for a client that takes them), and the last preview shown is the full
    preview of the last edit, soon after the storm."""
    shown: list[P.Message] = []
    backend = slow_backend
    conn = Connection(backend.endpoint, backend.key, on_message=shown.append)
    state = None
    try:
        w = h = 440  # the largest region the test backend accepts
        state = conn.open_session(noise_rgba(w, h, 1), w, h, align=False, refine_steps=0, drafts=drafts)
        deadline = time.monotonic() + 60
        while not state.ready and time.monotonic() < deadline:
            conn.sock.poll(100)
            conn.process_events()
        assert state.ready
        # One preview first: its render time sets the pace, at least 4 edits per render (and 60/s),
        # so the storm outruns the renderer on any machine; but no faster than the backend's rate limit
        # lets 2 s of edits through (burst 2·RATE + 2 s · RATE), or it would answer with rate errors.
        shown.clear()
        conn.edit(state, {"sefa_0": 0.5})
        deadline = time.monotonic() + 30
        while not any(m.type == "preview" for m in shown) and time.monotonic() < deadline:
            conn.sock.poll(100)
            conn.process_events()
        first_ms = next(m.get("render_ms") for m in shown if m.type == "preview")
        rate = min(max(60.0, 4000.0 / max(first_ms, 1.0)), 1.5 * RATE)
        total = int(2 * rate)
        shown.clear()
        dropped_before = state.dropped_previews
        edits = 0
        t0 = time.monotonic()
        while edits < total:  # for 2 s, paced by the clock
            conn.edit(state, {"sefa_0": (edits % 40) / 20 - 1})
            edits += 1
            conn.process_events()
            time.sleep(max(0.0, t0 + edits / rate - time.monotonic()))
        last = state.last_sent_seq
        storm_end = time.monotonic()
        storm_s = storm_end - t0
        deadline = storm_end + 30
        while time.monotonic() < deadline:
            previews = [m for m in shown if m.type == "preview"]
            if previews and previews[-1].seq == last and not previews[-1].get("draft"):
                break
            conn.sock.poll(5)
            conn.process_events()
        settle_s = time.monotonic() - storm_end
        previews = [m for m in shown if m.type == "preview"]
        assert not [m for m in shown if m.type == "error"]
        assert previews[-1].seq == last and not previews[-1].get("draft"), \
            "the last preview shown is the full preview of the last edit"
        full = [m for m in previews if not m.get("draft")]
        shown_drafts = [m for m in previews if m.get("draft")]
        seqs = [m.seq for m in full]
        assert seqs == sorted(set(seqs)), "no stale preview reaches the UI"
        order = [(m.seq, not m.get("draft")) for m in previews]
        assert order == sorted(set(order)), "a draft is followed by newer previews only, or by its own full one"
        # the storm outruns the renderer, so full previews in flight are abandoned and drafts keep the
        # canvas moving: rendered at a lower output resolution than the full previews
        if drafts:
            assert shown_drafts, f"no draft in a storm of {edits} edits; {len(full)} full previews"
            assert int(shown_drafts[0].get("cost").split(":")[0]) < int(full[-1].get("cost").split(":")[0])
        else:  # an older client: full previews, some finished during the storm instead of drafts
            assert not shown_drafts and len(full) >= 3, f"{len(full)} full previews for {edits} edits"
        rendered = len(previews) + state.dropped_previews - dropped_before
        ms = sorted(m.get("render_ms") for m in full)
        p50 = ms[len(ms) // 2]
        what = (f"{rendered} previews ({len(shown_drafts)} drafts) for {edits} edits in {storm_s:.2f} s "
                f"(full render ms p50 {p50})")
        # coalesced: fewer renders than edits, and no more render time than the storm's time holds
        busy_ms = sum(m.get("render_ms") for m in previews) + (state.dropped_previews - dropped_before) * p50
        assert rendered < edits and busy_ms <= 1.25 * storm_s * 1000 + 5 * p50, what
        # no backlog: the last edit is answered within a few renders of the storm's end, not after a queue
        assert settle_s < 0.5 + 4 * p50 / 1000, f"{what}; last preview {settle_s:.2f} s after the storm"
    finally:
        if state is not None:  # a failed storm must not leave its session to the tests after it
            conn.close_session(state)
        conn.close()


def test_abuse_is_answered_and_backend_lives_on(backend, client):
    key, ep = backend.key, backend.endpoint
    # without the key a peer does not get past the handshake: nothing it sends is answered
    stranger = raw_socket(ep)
    stranger.send_multipart(P.encode(P.Message("ping", request_id=1), b"x" * 32))
    assert not stranger.poll(1500)
    stranger.close()
    # past the handshake, a wrong signature is refused (the reply is signed with the real key, which this
    # peer cannot check) and names the request
    bad = raw_socket(ep, key)
    bad.send_multipart(P.encode(P.Message("ping", request_id=1), b"x" * 32))
    err = recv(bad, None)
    assert err.get("code") == P.E_BAD_SIGNATURE and err.request_id == 1
    # unsigned
    bad.send_multipart(P.encode(P.Message("ping", request_id=2), None))
    assert recv(bad, None).get("code") == P.E_BAD_SIGNATURE
    # garbage frames
    bad.send_multipart([b"\x00garbage"])
    assert recv(bad, None).get("code") == P.E_BAD_MESSAGE
    bad.send_multipart([b"sig", b"\xc1\xc1not msgpack"])
    assert recv(bad, None).get("code") == P.E_BAD_SIGNATURE
    bad.close()

    s = raw_socket(ep, key)
    # replay: the same signed bytes twice
    parts = P.encode(P.Message("ping", request_id=5), key)
    s.send_multipart(parts)
    assert recv(s, key).type == "pong"
    s.send_multipart(parts)
    assert recv(s, key).get("code") == P.E_REPLAY
    # unknown type (signed properly, so only the type is wrong)
    header = {"t": "format_disk", "v": 1, "id": 6, "ts": time.time(), "nonce": os.urandom(12)}
    import msgpack

    raw = msgpack.packb(header, use_bin_type=True)
    s.send_multipart([P.sign(key, raw), raw])
    err = recv(s, key)
    assert err.get("code") == P.E_UNKNOWN_TYPE and err.request_id == 6
    # a server-only type from a client
    s.send_multipart(P.encode(P.Message("pong", request_id=7), key))
    assert recv(s, key).get("code") == P.E_UNKNOWN_TYPE
    # wrong protocol version: in a hello, and on any other message
    hello = P.Message("hello", {"versions": [99]}, request_id=8, version=99)
    err = request(s, key, hello)
    assert err.get("code") == P.E_VERSION and err.get("fatal") and err.request_id == 8
    assert request(s, key, P.Message("ping", request_id=9, version=99)).get("code") == P.E_VERSION
    # version negotiation picks the highest common version
    assert request(s, key, P.Message("hello", {"versions": [1, 7]}, request_id=10)).version == 1
    # oversize frame (declared honestly) and an oversize region
    big = P.Frame(b"\0" * (800 * 800 * 4), 800, 800)
    err = request(s, key, P.Message("open", {"options": {}}, [big], request_id=11))
    assert err.get("code") == P.E_TOO_LARGE
    region = P.Frame(b"\0" * (500 * 500 * 4), 500, 500)
    err = request(s, key, P.Message("open", {"options": {}}, [region], request_id=12))
    assert err.get("code") == P.E_TOO_LARGE and "pixels" in err.get("message")
    # a frame whose length does not match its descriptor
    lying = P.encode(P.Message("open", {"options": {}}, [P.Frame(b"\0" * 64 * 64 * 4, 64, 64)], request_id=13), key)
    lying[2] = b"\0" * 100
    s.send_multipart(lying)
    assert recv(s, key).get("code") == P.E_BAD_MESSAGE
    # bad input inside a valid message
    err = request(s, key, P.Message("open", {"options": {"channel_order": "CMYK"}},
                                    [P.Frame(noise_rgba(64, 64), 64, 64)], request_id=14))
    assert err.get("code") == P.E_INPUT
    err = request(s, key, P.Message("open", {"options": {}}, [P.Frame(noise_rgba(8, 8), 8, 8)], request_id=15))
    assert err.get("code") == P.E_INPUT and err.get("fatal"), "a region too small to edit is refused"
    err = request(s, key, P.Message("edit", {"sliders": {"x": 1}}, session_id="nope", seq=0, request_id=16))
    assert err.get("code") == P.E_NO_SESSION
    # a raw TCP peer speaking no ZMTP at all
    import socket as pysocket

    host, port = ep.removeprefix("tcp://").rsplit(":", 1)
    with pysocket.create_connection((host, int(port)), timeout=5) as raw_tcp:
        raw_tcp.sendall(os.urandom(4096))
    # flooding: rate limited, the flooder only
    for i in range(400):
        s.send_multipart(P.encode(P.Message("ping", request_id=100 + i), key))
    codes = []
    while s.poll(1000):
        codes.append(P.decode(s.recv_multipart(), key).get("code"))
    assert P.E_RATE in codes
    s.close()

    # meanwhile a well-behaved client is served as usual
    assert client.ping()["sessions"] == 0
    with client.open(noise_rgba(64, 64), 64, 64, align=False) as session:
        with pytest.raises(BackendError) as e:
            session.edit(nonexistent=0.5)
        assert e.value.code == P.E_INPUT and "sefa_0" in e.value.message
        with pytest.raises(BackendError) as e:
            session.edit(sefa_0=5.0)
        assert e.value.code == P.E_INPUT
        assert session.edit(sefa_0=0.5).box
    # max sessions
    sessions = [client.open(noise_rgba(64, 64), 64, 64, align=False) for _ in range(4)]
    with pytest.raises(BackendError) as e:
        client.open(noise_rgba(64, 64), 64, 64, align=False)
    assert e.value.code == P.E_BUSY
    for x in sessions:
        x.close()
    assert backend.proc.poll() is None


CLIENT_SCRIPT = r"""
import sys, time
from anycost_client.client import Client
c = Client.connect(sys.argv[1])
s = c.open(bytes(range(256)) * (96 * 96 * 4 // 256), 96, 96, align=False)
print("ready", s.sid, flush=True)
i = 0
while True:
    s.edit_nowait(sefa_0=(i % 10) / 10)
    i += 1
    time.sleep(0.01)
"""


def test_sliders_and_costs_are_checked_by_the_backend_and_refused_as_bad_input(backend, client):
    """One check of sliders, ranges and costs (``Editor.check_sliders``, ``Editor.cost``), answered over a
    real socket as 'bad_input' with a message that names the slider and its range, or what a cost may be:
    to a 'check' before any region is sent, and to an edit or commit of an open session, whose state a
    refusal leaves as it was. The backend lives on."""
    assert "check" in client.welcome["capabilities"]
    key = backend.key
    s = raw_socket(backend.endpoint, key)
    ok = request(s, key, P.Message("check", {"sliders": {"sefa_0": 0.5, "sefa_2": -1}, "cost": "32:0.5"},
                                   request_id=1))
    assert (ok.type, ok.get("what"), ok.request_id) == ("done", "check", 1)
    refusals = [
        ({"sliders": {"smile": 0.5}}, "unknown slider 'smile'; valid sliders: sefa_0, sefa_1, sefa_2"),
        ({"sliders": {"x" * 5000: 0.5}}, f"unknown slider '{'x' * 40}'; valid"),
        ({"sliders": {"sefa_0": 5.0}}, "slider 'sefa_0' must be in [-1, 1], got 5"),
        ({"sliders": {"sefa_1": -1.01}}, "slider 'sefa_1' must be in [-1, 1], got -1.01"),
        ({"sliders": {"sefa_0": float("nan")}}, "slider 'sefa_0' must be a finite number in [-1, 1], got nan"),
        ({"sliders": {"sefa_0": "0.5"}}, "slider 'sefa_0' must be a finite number in [-1, 1], got '0.5'"),
        ({"sliders": {"sefa_0": True}}, "slider 'sefa_0' must be a finite number in [-1, 1], got True"),
        ({"sliders": [0.5]}, "sliders must be a map of name → number"),
        ({"cost": "300:0.5"}, "cost resolution 300 is not one of [8, 16, 32, 64]"),
        ({"cost": "64:2"}, "channel ratio must be in (0, 1], got 2.0"),
        ({"cost": "fast"}, "cost must be 'full', 'preview', RES, RATIO or RES:RATIO (e.g. 256:0.5), got 'fast'"),
        ({"cost": 64}, "a cost must be 'full', 'preview' or RES:RATIO (e.g. 256:0.5), got 64"),
    ]
    for rid, (fields, message) in enumerate(refusals, start=10):
        err = request(s, key, P.Message("check", fields, request_id=rid))
        assert (err.type, err.get("code"), err.get("fatal"), err.request_id) == ("error", P.E_INPUT, False, rid), err
        assert message in err.get("message"), (fields, err.get("message"))
    s.close()

    with client.open(noise_rgba(64, 64), 64, 64, align=False) as session:
        session.edit(sefa_0=0.5)
        for call, kwargs, message in [
            (session.commit, {"sefa_2": 2.0}, "slider 'sefa_2' must be in [-1, 1], got 2"),
            (session.commit, {"cost": "16:0"}, "channel ratio must be in (0, 1], got 0.0"),
            (session.edit, {"quality": "300:0.5"}, "cost resolution 300 is not one of [8, 16, 32, 64]"),
            (session.edit, {"glasses": 0.5}, "unknown slider 'glasses'; valid sliders: sefa_0, sefa_1, sefa_2"),
        ]:
            with pytest.raises(BackendError) as e:
                call(**kwargs)
            assert e.value.code == P.E_INPUT and message in e.value.message, (kwargs, e.value)
        result = session.commit(cost="32:0.5")  # the session's sliders are still the last ones taken
        assert result.cost == "32:0.5" and result.box is not None
    assert client.ping()["sessions"] == 0


def test_killed_client_is_collected(backend, client):
    proc = subprocess.Popen([sys.executable, "-c", CLIENT_SCRIPT, str(backend.conn)], stdout=subprocess.PIPE,
                            text=True, cwd=REPO)
    try:
        line = proc.stdout.readline()
        assert line.startswith("ready"), line
        sid = line.split()[1]
        assert _sessions(client) == 1
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        # others are served while the dead client's session waits out its timeout
        with client.open(noise_rgba(64, 64), 64, 64, align=False) as s:
            assert s.edit(sefa_1=0.3).box
        deadline = time.monotonic() + TIMEOUT + 5
        while _sessions(client) and time.monotonic() < deadline:
            time.sleep(0.25)
        assert _sessions(client) == 0
        assert any(e.get("event") == "session_collected" and e.get("sid") == sid for e in backend.events())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_cli_client_commands(backend, tmp_path):
    from PIL import Image

    src = tmp_path / "in.png"
    Image.fromarray(np.frombuffer(noise_rgba(72, 72, 5), np.uint8).reshape(72, 72, 4), "RGBA").save(src)
    base = [sys.executable, "-m", "anycost", "client", "--connection-file", str(backend.conn)]
    out = subprocess.run([*base, "ping"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "pong" in out.stdout, out.stderr
    dst = tmp_path / "out.png"
    out = subprocess.run([*base, "edit", str(src), "-o", str(dst), "--no-align", "--set", "sefa_0=0.7"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    a, b = np.asarray(Image.open(src)), np.asarray(Image.open(dst))
    assert a.shape == b.shape and not np.array_equal(a, b)
    out = subprocess.run([*base, "edit", str(src), "-o", str(dst), "--set", "nope=1"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2 and "unknown slider" in out.stderr


def test_refuses_public_bind_without_curve(tmp_path, official_fixture):
    out = subprocess.run([sys.executable, "-m", "anycost", "serve", "--model", str(official_fixture / "generator.pt"),
                          "--bind", "tcp://0.0.0.0:0", "--connection-file", str(tmp_path / "c.json")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "CURVE" in out.stderr
    assert not (tmp_path / "c.json").exists()


def test_fd_is_edge_triggered_and_process_events_drains(backend):
    got: list[P.Message] = []
    conn = Connection(backend.endpoint, backend.key, on_message=got.append)
    try:
        assert isinstance(conn.fd, int)
        for _ in range(5):
            conn.ping()
        deadline = time.monotonic() + 10
        while sum(m.type == "pong" for m in got) < 5 and time.monotonic() < deadline:
            zmq.select([conn.fd], [], [], 0.2)
            conn.process_events()
        assert sum(m.type == "pong" for m in got) == 5 and conn.status.value == "connected"
    finally:
        conn.close()


def _pump(conn: Connection, got: list, until, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not until() and time.monotonic() < deadline:
        conn.sock.poll(100)
        conn.process_events()
    assert until(), f"timed out; got {[m.type for m in got]}"


def test_refinement_is_cancellable_and_interleaves_previews(backend):
    got: list[P.Message] = []
    conn = Connection(backend.endpoint, backend.key, on_message=got.append)
    types = lambda: [m.type for m in got]  # noqa: E731
    try:
        # a commit during a long refinement stops it, then renders the result
        st = conn.open_session(noise_rgba(64, 64), 64, 64, align=False, refine_steps=500)
        _pump(conn, got, lambda: any(m.get("stage") == "refine" for m in got))
        conn.edit(st, {"sefa_0": 0.5})
        _pump(conn, got, lambda: "preview" in types())
        assert "ready" not in types(), "a preview is served between refinement steps"
        conn.commit(st, {"sefa_0": 0.5})
        _pump(conn, got, lambda: "done" in types())
        t = types()
        assert t.index("ready") < t.index("result") < t.index("done")
        last_refine = max(m.get("step") for m in got if m.get("stage") == "refine")
        assert last_refine < 500
        conn.close_session(st)

        # a cancel stops refinement and acknowledges; the session is ready to edit
        got.clear()
        st = conn.open_session(noise_rgba(64, 64), 64, 64, align=False, refine_steps=500)
        _pump(conn, got, lambda: any(m.get("stage") == "refine" for m in got))
        conn.cancel(st, "refine")
        _pump(conn, got, lambda: "ready" in types() and "done" in types())
        assert max(m.get("step") for m in got if m.get("stage") == "refine") < 500
        conn.edit(st, {"sefa_2": -0.5})
        _pump(conn, got, lambda: "preview" in types())
        conn.close_session(st)
    finally:
        conn.close()


def test_session_state_drops_stale_previews():
    from anycost_client.connection import SessionState

    def preview(seq: int, draft: bool = False) -> P.Message:
        fields = {"cost": "32:1" if draft else "64:1", "render_ms": 1.0}
        return P.Message("preview", {**fields, "draft": True} if draft else fields, seq=seq)

    st = SessionState(open_request=1)
    for _ in range(5):
        st.next_seq()  # edits 0..4 sent
    assert st.accept(preview(2)), "during a drag the newest preview that arrived is shown"
    assert not st.accept(preview(1)), "never back in time"
    assert not st.accept(preview(2))
    assert st.accept(preview(3, draft=True)), "a draft of a newer edit is shown"
    assert st.accept(preview(4))
    assert not st.accept(preview(4, draft=True)), "a draft never replaces the full preview of its edit"
    st.next_seq()
    assert st.accept(preview(5, draft=True)) and st.accept(preview(5)), "the full preview follows its draft"
    assert not st.accept(preview(5)) and not st.accept(preview(5, draft=True))
    strict = SessionState(open_request=2, strict=True)
    for _ in range(5):
        strict.next_seq()
    assert not strict.accept(preview(3)) and strict.accept(preview(4))
    assert strict.dropped_previews == 1


def test_long_refinement_outlives_the_session_timeout(client):
    """The client pings while it waits, so a refinement longer than the timeout is not collected."""
    t0 = time.monotonic()
    session = client.open(noise_rgba(64, 64), 64, 64, align=False, refine_steps=10_000, time_budget=TIMEOUT + 1.5)
    assert time.monotonic() - t0 > TIMEOUT
    assert session.edit(sefa_0=0.2).box
    session.close()
