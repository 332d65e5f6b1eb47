"""The backend and its clients under the attacks of the hardening review, with their outcomes.

Starts a real backend (the shipped demo model unless --model) with its default limits and plays each
attack against it; prints one line per attack (defended or not, and the figures), then the count.
The first attack is the pre-authentication memory attack: a peer without the key sends 3 messages of
4 × 400 MB frames; the backend's peak and resident memory (VmHWM, VmRSS) are printed before and after.

Runs against any source tree, so the same script measures the code before a change:

    python benchmarks/service_attacks.py [--model FILE] [--frame-mb 400] [--messages 3]
    PYTHONPATH=OLD/backend:OLD/plugin python benchmarks/service_attacks.py

Needs Linux (/proc) and about 2 GB of free memory for the attacker's frame (shared by all its sends)
plus what the backend under test takes. Nothing here asserts; a shared machine makes times noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import zmq
from zmq.utils.monitor import recv_monitor_message

import anycost
from anycost_client.client import Client
from anycost_client.connection import Connection

HANDSHAKE = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH
             | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
RESULTS: list[tuple[str, bool, str]] = []


def report(name: str, defended: bool, detail: str) -> None:
    RESULTS.append((name, defended, detail))
    print(f"[{len(RESULTS):2d}] {'defended' if defended else 'NOT DEFENDED'}  {name}: {detail}", flush=True)


def mem_mb(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmHWM:", "VmRSS:")):
            out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out


def private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


class Backend:
    def __init__(self, tmp: Path, model: str | None, *extra: str, conn: Path | None = None, env=None):
        self.conn = conn or tmp / "conn.json"
        self.log = tmp / f"backend-{time.monotonic_ns()}.log"
        cmd = [sys.executable, "-m", "anycost", "serve", "--no-lpips", "--connection-file", str(self.conn),
               *(["--model", model] if model else []), *extra]
        self._log = open(self.log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**(env or os.environ), "ANYCOST_BACKGROUND_SEARCH": "0"})
        deadline = time.monotonic() + 300
        while '"listening"' not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the backend did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)
        self.info = json.loads(self.conn.read_text())
        self.key = bytes.fromhex(self.info["key"])

    def events(self, name: str) -> int:
        return self.log.read_text().count(f'"event":"{name}"')

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def stranger(endpoint: str, routing_id: bytes | None = None) -> tuple[zmq.Socket, zmq.Socket]:
    """A DEALER without the key, with a monitor of its handshake attached before it connects."""
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    if routing_id is not None:
        s.setsockopt(zmq.ROUTING_ID, routing_id)
    mon = s.get_monitor_socket(HANDSHAKE)
    s.connect(endpoint)
    return s, mon


def handshake(mon: zmq.Socket, timeout: float = 30.0) -> str:
    if not mon.poll(int(timeout * 1000)):
        return "no handshake"
    return "succeeded" if recv_monitor_message(mon)["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED else "refused"


# ---------------------------------------------------------------------------------------- attacks
def preauth_memory(b: Backend, frame_mb: int, messages: int) -> None:
    base = mem_mb(b.proc.pid)
    rejected = b.events("rejected")
    frame = bytearray(frame_mb * 1_000_000)
    s, mon = stranger(b.info["endpoint"])
    sent, t0 = 0, time.monotonic()
    for i in range(messages):
        header = msgpack.packb({"t": "ping", "v": 1, "id": i, "ts": time.time(), "nonce": os.urandom(12)})
        try:
            s.send_multipart([b"", header, frame, frame, frame, frame], zmq.NOBLOCK, copy=False)
            sent += 1
        except zmq.Again:
            pass  # no connection to queue for: the handshake was refused
    outcome = handshake(mon)
    deadline = time.monotonic() + 120
    while outcome == "succeeded" and b.events("rejected") < rejected + sent and time.monotonic() < deadline:
        time.sleep(0.2)
    answers = 0
    while s.poll(1000):
        s.recv_multipart()
        answers += 1
    took = time.monotonic() - t0
    s.disable_monitor()
    mon.close(0)
    s.close(0)
    del frame
    time.sleep(3)
    after = mem_mb(b.proc.pid)
    grown = after["VmHWM"] - base["VmHWM"]
    report(f"pre-auth memory: {messages} × 4 × {frame_mb} MB frames, no key", grown < 100 and outcome != "succeeded",
           f"handshake {outcome}, {sent}/{messages} messages queued, {answers} answers, backend peak "
           f"{base['VmHWM']:.0f} → {after['VmHWM']:.0f} MB (+{grown:.0f}), resident {base['VmRSS']:.0f} → "
           f"{after['VmRSS']:.0f} MB 3 s later ({took:.1f} s)")


def routing_takeover(b: Backend) -> None:
    with Client.connect(b.conn, timeout=30) as victim:
        victim.ping()
        thief, mon = stranger(b.info["endpoint"], routing_id=victim.conn.routing_id)
        outcome = handshake(mon)
        try:
            victim.ping(timeout=5)
            kept = True
        except Exception:
            kept = False
        stolen = thief.poll(1000)
        thief.disable_monitor()
        mon.close(0)
        thief.close(0)
    report("routing id reused by a peer without the key", kept and not stolen,
           f"handshake {outcome}; the client {'kept' if kept else 'lost'} its reply; "
           f"the thief {'got' if stolen else 'got no'} reply")


def ping_flood(b: Backend, n: int) -> None:
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "anycost", "client", "--connection-file", str(b.conn), "ping", "-n",
                          str(n)], capture_output=True, text=True, timeout=600)
    pongs = out.stdout.count("pong from backend")
    tb = "Traceback" in out.stderr
    report(f"'anycost client ping -n {n}'", out.returncode == 0 and pongs == n and not tb,
           f"exit {out.returncode}, {pongs} pongs, {'a traceback' if tb else 'no traceback'}, "
           f"{time.monotonic() - t0:.1f} s")


def edit_storm(b: Backend, n: int) -> None:
    got: list = []
    conn = Connection(b.info["endpoint"], b.key, on_message=got.append)
    try:
        state = conn.open_session(os.urandom(128 * 128 * 4), 128, 128, align=False)
        deadline = time.monotonic() + 120
        while not state.ready and time.monotonic() < deadline:
            conn.sock.poll(100)
            conn.process_events()
        t0 = time.monotonic()
        for i in range(n):
            while True:
                try:
                    conn.edit(state, {next(iter(state.directions)): (i % 200) / 100 - 1})
                    break
                except zmq.Again:
                    conn.sock.poll(10, zmq.POLLOUT)
        sent_s = time.monotonic() - t0
        last = state.last_sent_seq
        deadline = time.monotonic() + 60
        while not any(m.type == "preview" and m.seq == last for m in got) and time.monotonic() < deadline:
            conn.sock.poll(100)
            conn.process_events()
            conn.tick()
        errors = [m for m in got if m.type == "error"]
        no_id = sum(1 for m in errors if m.request_id is None)
        answered = any(m.type == "preview" and m.seq == last for m in got)
        previews = sum(1 for m in got if m.type == "preview")
        conn.close_session(state)
    finally:
        conn.close()
    report(f"{n}-edit storm", answered and not errors,
           f"sent in {sent_s:.1f} s, {previews} previews, last edit {'previewed' if answered else 'never previewed'}, "
           f"{len(errors)} errors ({no_id} without a request id)")


def curve_public_key(tmp: Path, model: str | None) -> None:
    keys = tmp / "keys"
    out = subprocess.run([sys.executable, "-m", "anycost", "serve", "--gen-curve-keys", str(keys)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    allowed = private_dir(tmp / "allowed")
    (allowed / "a.key").write_bytes((keys / "server.key").read_bytes())
    t0 = time.monotonic()
    try:
        out = subprocess.run([sys.executable, "-m", "anycost", "serve", *(["--model", model] if model else []),
                              "--bind", "tcp://0.0.0.0:*", "--curve-server-key", str(keys / "server.key"),
                              "--allowed-clients", str(allowed), "--connection-file", str(tmp / "curve.json")],
                             capture_output=True, text=True, timeout=60)
        took = time.monotonic() - t0
        last = (out.stderr.strip().splitlines() or [""])[-1]
        report("'anycost serve --curve-server-key PUBLIC.key'", out.returncode == 2 and took < 5,
               f"exit {out.returncode} after {took:.2f} s: {last[:110]}")
    except subprocess.TimeoutExpired:
        report("'anycost serve --curve-server-key PUBLIC.key'", False, "still running after 60 s (killed)")


def second_backend(b: Backend, tmp: Path, model: str | None) -> None:
    before = b.conn.read_bytes()
    log = tmp / "second.log"
    with open(log, "w") as f:
        p = subprocess.Popen([sys.executable, "-m", "anycost", "serve", "--no-lpips", "--connection-file", str(b.conn),
                              *(["--model", model] if model else [])], stdout=f, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while p.poll() is None and b.conn.exists() and b.conn.read_bytes() == before and time.monotonic() < deadline:
            time.sleep(0.2)
        overwritten = not b.conn.exists() or b.conn.read_bytes() != before
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            p.wait(30)
    gone = not b.conn.exists()
    if not gone and b.conn.read_bytes() != before:
        b.conn.write_bytes(before)  # put the first backend's file back for the attacks that follow
    last = (log.read_text().strip().splitlines() or [""])[-1]
    report("a second backend on the same --connection-file", not overwritten and not gone,
           f"{'overwrote the file' if overwritten else 'left the file alone'}, "
           f"{'and removed it on stopping' if gone else 'the file is still there'}; second exited "
           f"{p.returncode}: {last[:100]}")


def planted_file(b: Backend, tmp: Path) -> None:
    import anycost_client.connection_file as cf

    shared = tmp / "shared-run"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    trap = shared / "anycost"
    trap.mkdir()
    os.chmod(trap, 0o777)
    attacker = zmq.Context.instance().socket(zmq.ROUTER)
    attacker.setsockopt(zmq.LINGER, 0)
    port = attacker.bind_to_random_port("tcp://127.0.0.1")
    planted = trap / "backend-1.json"
    planted.write_text(json.dumps({"endpoint": f"tcp://127.0.0.1:{port}", "key": "00" * 32, "pid": 1}))
    os.chmod(planted, 0o666)
    if os.geteuid() == 0:
        os.chown(trap, 65534, 65534)
        os.chown(planted, 65534, 65534)
    saved = {k: os.environ.get(k) for k in ("XDG_RUNTIME_DIR", "XDG_CACHE_HOME", "ANYCOST_CONNECTION_FILE")}
    os.environ.update(XDG_RUNTIME_DIR=str(shared), XDG_CACHE_HOME=str(tmp / "victim-cache"))
    os.environ.pop("ANYCOST_CONNECTION_FILE", None)
    try:
        try:
            chosen = str(cf.find_connection_file())
        except cf.ConnectionFileError as e:
            chosen = f"none ({str(e)[:60]}…)"
        reached = False
        if chosen == str(planted):
            try:
                Client.connect(connect_timeout=2).close()
            except Exception:
                pass
            reached = attacker.poll(1000)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        attacker.close(0)
    report("another user's connection file in a world-writable runtime folder", chosen != str(planted),
           f"the client chose {chosen if chosen != str(planted) else 'the planted file'}"
           f"{', and its hello reached the attacker' if reached else ''}")


def stale_file(b: Backend, tmp: Path) -> None:
    import anycost_client.connection_file as cf

    folder = private_dir(private_dir(tmp / "runtime") / "anycost")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        live, stale = folder / "backend-live.json", folder / "backend-stale.json"
        live.write_text(json.dumps(b.info))
        stale.write_text(json.dumps({**b.info, "endpoint": "tcp://127.0.0.1:9", "pid": sleeper.pid, "process": None}))
        for p, age in ((live, 60), (stale, 0)):
            os.chmod(p, 0o600)
            os.utime(p, (time.time() - age, time.time() - age))
        saved = os.environ.get("XDG_RUNTIME_DIR")
        os.environ["XDG_RUNTIME_DIR"] = str(tmp / "runtime")
        try:
            chosen = cf.find_connection_file()
        finally:
            if saved is None:
                os.environ.pop("XDG_RUNTIME_DIR")
            else:
                os.environ["XDG_RUNTIME_DIR"] = saved
    finally:
        sleeper.kill()
        sleeper.wait()
    report("a newer stale file naming an unrelated live process", chosen == live, f"the client chose {chosen.name}")


def hostile_model(tmp: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from anycost.models.generator import Generator

    torch.manual_seed(0)
    G = Generator(resolution=16, style_dim=32, n_mlp=2, channel_multiplier=1, channel_max=32)
    cfg = {**G.config.to_dict(), "style_dim": 60000}
    path = tmp / "hostile.safetensors"
    save_file({f"generator.{k}": v.contiguous() for k, v in G.state_dict().items()}, str(path),
              metadata={"anycost.format": "anycost-model", "anycost.format_version": "1",
                        "anycost.components": json.dumps({"generator": cfg}), "anycost.info": "{}"})
    code = ("import sys\nfrom anycost.errors import ModelFileError\nfrom anycost.io.modelfile import read_model\n"
            "try:\n    read_model(sys.argv[1]).generator()\nexcept ModelFileError as e:\n    print('refused:', e)\n")

    def cap() -> None:  # a loader that believes the file fails here instead of taking the machine's memory
        resource.setrlimit(resource.RLIMIT_DATA, (2 << 30, 2 << 30))

    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, preexec_fn=cap)
    out, err = p.communicate(timeout=300)
    took = time.monotonic() - t0
    refused = out.startswith("refused:") and "\n" not in out.strip()
    what = out.strip() if refused else (err.strip().splitlines() or ["?"])[-1]
    report(f"a {path.stat().st_size // 1000} KB model file declaring style_dim=60000", refused,
           f"{took:.1f} s: {what[:130]}")


def killed_write(tmp: Path) -> None:
    folder = private_dir(tmp / "outputs")
    writer = ("import sys, time\nfrom anycost.fsutil import atomic_write\n"
              "def w(t):\n    open(t, 'wb').write(bytes(28_000_000)); print('writing', flush=True); time.sleep(60)\n"
              "atomic_write(sys.argv[1], w)\n")
    p = subprocess.Popen([sys.executable, "-c", writer, str(folder / "face.png")], stdout=subprocess.PIPE, text=True)
    p.stdout.readline()
    p.kill()
    p.wait()
    p.stdout.close()
    left = [x.name for x in folder.iterdir()]
    subprocess.run([sys.executable, "-c", "import sys; from anycost.fsutil import atomic_write; "
                    "atomic_write(sys.argv[1], lambda t: open(t, 'wb').write(b'ok'))", str(folder / "next.png")],
                   check=True, timeout=120)
    after = sorted(x.name for x in folder.iterdir() if x.name != "next.png")
    report("kill -9 during an output write, then the next run in that folder", not after,
           f"left {left}; after the next run: {after or 'nothing'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model for the backend (default: the shipped demo model)")
    ap.add_argument("--frame-mb", type=int, default=400)
    ap.add_argument("--messages", type=int, default=3)
    ap.add_argument("--pings", type=int, default=3000)
    ap.add_argument("--edits", type=int, default=10_000)
    args = ap.parse_args()
    print(f"source: {Path(anycost.__file__).parent}, pyzmq {zmq.__version__}, libzmq {zmq.zmq_version()}",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="anycost-attacks-") as d:
        tmp = private_dir(Path(d))
        b = Backend(tmp, args.model)
        try:
            print(f"backend pid {b.proc.pid}: {mem_mb(b.proc.pid)['VmRSS']:.0f} MB resident after start-up",
                  flush=True)
            preauth_memory(b, args.frame_mb, args.messages)
            routing_takeover(b)
            ping_flood(b, args.pings)
            edit_storm(b, args.edits)
            second_backend(b, tmp, args.model)
            planted_file(b, tmp)
            stale_file(b, tmp)
        finally:
            b.stop()
        curve_public_key(tmp, args.model)
        hostile_model(tmp)
        killed_write(tmp)
    defended = sum(ok for _, ok, _ in RESULTS)
    print(f"attacks: {len(RESULTS)}, defended: {defended}, not defended: {len(RESULTS) - defended}")


if __name__ == "__main__":
    main()
