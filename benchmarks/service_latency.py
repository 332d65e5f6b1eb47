"""Latency of the editing service as a plugin sees it: a real backend process, real sockets.

Prints, for square regions of 256 and 1024 px:
  * the wire overhead of a preview: client round trip minus the render time the backend reports
    (signing, msgpack, ZeroMQ, the socket thread, the scheduler and the frame coming back), next to a
    bare local copy of the same bytes, and as a share of the render (target: ≤ 5 %);
  * preview latency p50/p95 during a slider storm (60 edits/s) against one bare preview render
    (target p95 ≤ 1.5 × render), with how many previews were rendered for how many edits;
  * sessions held at once: ping round trip and backend memory with the session limit reached.
Timings on a shared machine are noisy; nothing here asserts on time.

    python benchmarks/service_latency.py [--model FILE] [--directions FILE] [--sizes 256 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from anycost_client.client import Client
from anycost_client.connection import Connection

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO.parent / "shared" / "fixtures" / "official_format" / "generator.pt"


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def noise(n: int) -> bytes:
    return os.urandom(n * n * 4)


def start_backend(tmp: Path, args: argparse.Namespace) -> tuple[subprocess.Popen, Path]:
    conn = tmp / "conn.json"
    directions = args.directions
    if directions is None:
        from anycost.directions import save_directions_file, sefa_directions
        from anycost.io.checkpoint import load_generator

        directions = tmp / "dirs.safetensors"
        save_directions_file(directions, sefa_directions(load_generator(args.model), k=3))
    cmd = [sys.executable, "-m", "anycost", "serve", "--model", str(args.model), "--directions", str(directions),
           "--no-lpips", "--connection-file", str(conn), "--device", args.device, "--log-level", "warning",
           "--max-sessions", str(args.sessions), "--rate", "1000"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not conn.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"backend did not start: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.1)
    return proc, conn


def wire_overhead(client: Client, n: int, repeats: int) -> dict:
    session = client.open(noise(n), n, n, align=False)
    session.edit(sefa_0=0.1)  # warm-up: caches, the unedited reference
    rtt, render, nbytes = [], [], 0
    for i in range(repeats):
        t0 = time.perf_counter()
        p = session.edit(sefa_0=0.2 + 0.5 * (i % 2))
        rtt.append((time.perf_counter() - t0) * 1000)
        render.append(p.render_ms)
        nbytes = len(p.rgba)
    buf = bytearray(nbytes)
    src = os.urandom(nbytes)
    t0 = time.perf_counter()
    for _ in range(20):
        buf[:] = src
    copy_ms = (time.perf_counter() - t0) * 1000 / 20
    session.close()
    over = [r - m for r, m in zip(rtt, render, strict=True)]
    return {"rtt": statistics.median(rtt), "render": statistics.median(render), "overhead": statistics.median(over),
            "overhead_p95": pct(over, 0.95), "copy": copy_ms, "bytes": nbytes}


# A storm lasts at least this many preview renders, so its p95 is not just its last edit.
STORM_RENDERS = 40


def storm(conn_file: Path, n: int, seconds: float, rate: float) -> dict:
    info = json.loads(conn_file.read_text())
    arrivals: dict[int, float] = {}
    render_ms: list[float] = []

    def on_message(m) -> None:
        if m.type == "preview":
            arrivals[m.seq] = time.perf_counter()
            render_ms.append(m.get("render_ms"))

    conn = Connection(info["endpoint"], bytes.fromhex(info["key"]), on_message=on_message)
    st = conn.open_session(noise(n), n, n, align=False)
    while not st.ready:
        conn.sock.poll(100)
        conn.process_events()
    sent: dict[int, float] = {}
    t_start = time.perf_counter()
    i = 0
    while time.perf_counter() - t_start < seconds:
        conn.edit(st, {"sefa_0": (i % 40) / 20 - 1})
        sent[st.last_sent_seq] = time.perf_counter()
        i += 1
        deadline = t_start + i / rate
        while time.perf_counter() < deadline:
            conn.sock.poll(max(1, int((deadline - time.perf_counter()) * 1000)))
            conn.process_events()
    last = st.last_sent_seq
    end = time.perf_counter() + 30
    while last not in arrivals and time.perf_counter() < end:
        conn.sock.poll(50)
        conn.process_events()
    conn.close_session(st)
    conn.close()
    lat = [(arrivals[s] - sent[s]) * 1000 for s in arrivals if s in sent]
    settle = (arrivals[last] - sent[last]) * 1000 if last in arrivals else float("nan")
    return {"edits": i, "previews": len(arrivals), "p50": pct(lat, 0.5), "p95": pct(lat, 0.95),
            "render": statistics.median(render_ms), "last_answered": last in arrivals, "settle": settle}


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(FIXTURE))
    ap.add_argument("--directions", default=None, help="direction file (default: 3 SeFa directions of the model)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--storm-seconds", type=float, default=3.0)
    ap.add_argument("--sessions", type=int, default=16)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        proc, conn_file = start_backend(Path(tmp), args)
        try:
            client = Client.connect(conn_file, timeout=300)
            print(f"backend pid {proc.pid}, model {args.model}, device {args.device}")
            print("\n== wire overhead of one preview (median of", args.repeats, "edits) ==")
            print(f"{'region':>8} {'frame MB':>9} {'round trip':>11} {'render':>9} {'overhead':>9} {'p95':>8} "
                  f"{'local copy':>11} {'overhead/render':>16}")
            render_ms = {}
            for n in args.sizes:
                r = wire_overhead(client, n, args.repeats)
                render_ms[n] = r["render"]
                print(f"{n:>7}² {r['bytes'] / 1e6:>9.2f} {r['rtt']:>9.2f}ms {r['render']:>7.2f}ms "
                      f"{r['overhead']:>7.2f}ms {r['overhead_p95']:>6.2f}ms {r['copy']:>9.3f}ms "
                      f"{100 * r['overhead'] / r['render']:>15.1f}%")
            print("   target: overhead ≤ 5 % of a preview render")
            print(f"\n== slider storm: 60 edits/s for at least {args.storm_seconds:g} s and "
                  f"{STORM_RENDERS} preview renders ==")
            for n in args.sizes:
                seconds = max(args.storm_seconds, STORM_RENDERS * render_ms[n] / 1000)
                s = storm(conn_file, n, seconds, 60.0)
                print(f"{n:>7}²: {s['edits']} edits in {seconds:.1f} s → {s['previews']} previews rendered; "
                      f"latency p50 {s['p50']:.1f} ms, "
                      f"p95 {s['p95']:.1f} ms; one render {s['render']:.1f} ms → p95 = "
                      f"{s['p95'] / s['render']:.2f}× render; last edit answered: {s['last_answered']} "
                      f"after {s['settle']:.1f} ms ({s['settle'] / s['render']:.2f}× render)")
            print("   target: p95 ≤ 1.5 × one render. The last edit of a storm usually arrives while a preview")
            print("   is being rendered and waits for it (a render in flight is not interrupted): up to 2×.")
            print(f"\n== sessions held: {args.sessions} ==")
            base = rss_mb(proc.pid)
            # one client may hold 8 sessions: several clients, as several open documents would be
            clients = [Client.connect(conn_file, timeout=300) for _ in range((args.sessions + 7) // 8)]
            sessions = [clients[i // 8].open(noise(256), 256, 256, align=False) for i in range(args.sessions)]
            pings = []
            for _ in range(20):
                t0 = time.perf_counter()
                client.ping()
                pings.append((time.perf_counter() - t0) * 1000)
            held = client.ping()["sessions"]
            print(f"{held} sessions of 256² held; ping p50 {pct(pings, 0.5):.2f} ms, p95 {pct(pings, 0.95):.2f} ms; "
                  f"backend RSS {base:.0f} → {rss_mb(proc.pid):.0f} MB")
            for s in sessions:
                s.close()
            for c in [client, *clients]:
                c.close()
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
