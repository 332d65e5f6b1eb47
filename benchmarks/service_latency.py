"""Latency of the editing service as a plugin sees it: a real backend process, real sockets, on
models of the size users run: the shipped demo model and a 1024 px config-f generator with random
weights (built here; nothing outside the repository is needed). ``--model FILE`` adds another.

Prints, per model, for square regions of 256 and 1024 px:
  * the backend's first commit (Apply) against warm ones, and the first preview of a session against a
    warm one (target: ≤ 1.2 × each: the service warms up before it says ready);
  * the wire overhead of a preview: client round trip minus the render time the backend reports
    (signing, msgpack, ZeroMQ, the socket thread, the scheduler and the frame coming back), next to a
    bare local copy of the same bytes, and as a share of the render (target: ≤ 5 %);
  * a slider storm (60 edits/s, cut into drags with pauses between): latency p50/p95 of what is shown
    against one full preview render (target p95 ≤ 1.5 ×), previews (and of them drafts) shown per
    second while dragging, and the full preview that answers each drag's last edit (target: median
    within 1.2 × one render: a full render in flight for an older edit is abandoned unless nearly done,
    and drafts keep a drag moving; the worst is shown). ``--no-drafts`` measures a client that does
    not take drafts (full previews only, as before drafts existed);
  * sessions held at once: ping round trip and backend memory with the session limit reached;
  * with ``--soak-minutes``, resident memory at start, during and after a storm of that length.
Each target is printed with met / NOT MET. Timings on a shared machine are noisy; nothing asserts.

    python benchmarks/service_latency.py [--models demo random1024] [--model FILE] [--sizes 256 1024]
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


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def build_models(tmp: Path, names: list[str], extra: str | None) -> list[tuple[str, str]]:
    """(label, model path) for each model to serve."""
    out = []
    for name in names:
        if name == "demo":
            from anycost.registry import resolve_model

            out.append(("anycost-demo (128 px)", str(resolve_model("anycost-demo"))))
        elif name == "random1024":
            import torch

            from anycost.io.modelfile import save_model
            from anycost.models.generator import Generator

            torch.manual_seed(0)
            path = tmp / "random1024.safetensors"
            save_model(path, generator=Generator(resolution=1024),
                       info={"name": "random1024", "face": False, "channel_configs": "uniform"})
            out.append(("random 1024 config-f", str(path)))
        else:
            raise SystemExit(f"unknown model {name!r}: demo or random1024")
    if extra:
        out.append((Path(extra).name, extra))
    return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def noise(n: int) -> bytes:
    return os.urandom(n * n * 4)


def start_backend(tmp: Path, args: argparse.Namespace, model: str) -> tuple[subprocess.Popen, Path]:
    conn = tmp / f"conn-{Path(model).stem}.json"
    directions = args.directions
    if directions is None:
        from anycost.directions import save_directions_file, sefa_directions
        from anycost.io.checkpoint import load_generator

        directions = tmp / f"dirs-{Path(model).stem}.safetensors"
        save_directions_file(directions, sefa_directions(load_generator(model), k=3))
    cmd = [sys.executable, "-m", "anycost", "serve", "--model", str(model), "--directions", str(directions),
           "--no-lpips", "--connection-file", str(conn), "--device", args.device, "--log-level", "warning",
           "--max-sessions", str(args.sessions), "--rate", "1000",
           # a background preview search would compete with what is measured here (first commit, storms)
           "--no-background-search"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not conn.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"backend did not start: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.1)
    return proc, conn


def commit_times(client: Client, n: int, k: int = 4) -> list[float]:
    """Client round trip (ms) of ``k`` commits (Apply: a full render pasted back), each in a session of its
    own; the first is the backend's first commit."""
    out = []
    for i in range(k):
        session = client.open(noise(n), n, n, align=False)
        t0 = time.perf_counter()
        session.commit(sefa_0=0.3 + 0.1 * i)
        out.append((time.perf_counter() - t0) * 1000)
        session.close()
    return out


def wire_overhead(client: Client, n: int, repeats: int) -> dict:
    session = client.open(noise(n), n, n, align=False)
    t0 = time.perf_counter()
    session.edit(sefa_0=0.1)  # the first preview of the session
    first = (time.perf_counter() - t0) * 1000
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
            "overhead_p95": pct(over, 0.95), "copy": copy_ms, "bytes": nbytes, "first": first}


# A storm lasts at least this many preview renders, so its p95 is not just its last edit.
STORM_RENDERS = 40
# The storm is cut into this many drags, each followed by a pause: each drag's last edit is one sample
# of how soon the hand's final position is shown (it depends on where in a render the drag stops).
DRAGS = 10


def storm(conn_file: Path, n: int, seconds: float, rate: float, drags: int = DRAGS, drafts: bool = True) -> dict:
    info = json.loads(conn_file.read_text())
    arrivals: dict[int, float] = {}  # full previews, by the seq they answer
    shown: list[tuple[int, float]] = []  # every preview shown (drafts too): (seq, arrival)
    render_ms: list[float] = []
    draft_ms: list[float] = []

    def on_message(m) -> None:
        if m.type == "preview":
            now = time.perf_counter()
            shown.append((m.seq, now))
            if m.get("draft"):
                draft_ms.append(m.get("render_ms"))
            else:
                arrivals[m.seq] = now
                render_ms.append(m.get("render_ms"))

    conn = Connection(info["endpoint"], bytes.fromhex(info["key"]), on_message=on_message)
    st = conn.open_session(noise(n), n, n, align=False, drafts=drafts)
    while not st.ready:
        conn.sock.poll(100)
        conn.process_events()
    sent: dict[int, float] = {}
    settles: list[float] = []
    shown_during = drafts_during = 0
    i = 0
    answered = True
    for _ in range(drags):
        t_start = time.perf_counter()
        first_seq = None
        k = 0
        while time.perf_counter() - t_start < seconds / drags:
            conn.edit(st, {"sefa_0": (i % 40) / 20 - 1})
            sent[st.last_sent_seq] = time.perf_counter()
            first_seq = first_seq or st.last_sent_seq
            i += 1
            k += 1
            deadline = t_start + k / rate  # paced by the clock, as a steady hand
            while time.perf_counter() < deadline:
                conn.sock.poll(max(1, int((deadline - time.perf_counter()) * 1000)))
                conn.process_events()
        last = st.last_sent_seq
        during = [q for q, _ in shown if first_seq <= q < last]
        shown_during += len(during)
        drafts_during += len(during) - sum(1 for q in arrivals if first_seq <= q < last)
        end = time.perf_counter() + 30
        while last not in arrivals and time.perf_counter() < end:
            conn.sock.poll(5)
            conn.process_events()
        if last in arrivals:
            settles.append((arrivals[last] - sent[last]) * 1000)
        else:
            answered = False
        pause = time.perf_counter() + 0.3  # the hand rests before the next drag
        while time.perf_counter() < pause:
            conn.sock.poll(20)
            conn.process_events()
    conn.close_session(st)
    conn.close()
    lat = [(at - sent[q]) * 1000 for q, at in shown if q in sent]
    return {"edits": i, "previews": len(shown), "drafts": len(draft_ms), "p50": pct(lat, 0.5),
            "p95": pct(lat, 0.95), "render": statistics.median(render_ms),
            "draft_render": statistics.median(draft_ms) if draft_ms else float("nan"), "last_answered": answered,
            "settle": statistics.median(settles) if settles else float("nan"),
            "settle_max": max(settles) if settles else float("nan"), "shown_per_s": shown_during / seconds,
            "drafts_per_s": drafts_during / seconds}


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def serve_and_measure(label: str, model: str, args: argparse.Namespace, tmp: Path) -> None:
    t_start = time.perf_counter()
    proc, conn_file = start_backend(tmp, args, model)
    try:
        client = Client.connect(conn_file, timeout=300)
        costs = client.welcome.get("costs", {})
        print(f"\n######## {label}: backend pid {proc.pid}, ready in {time.perf_counter() - t_start:.1f} s; preview "
              f"{costs.get('preview')} ({costs.get('preview_precision', 'fp32')}, {costs.get('preview_ms')} ms "
              f"measured, budget {costs.get('preview_budget_ms')} ms)")
        commits = commit_times(client, args.sizes[0])
        warm = statistics.median(commits[1:])
        print(f"== the backend's first commit (Apply, full render, {args.sizes[0]}²) against warm ones ==")
        print(f"first {commits[0]:.0f} ms, warm median {warm:.0f} ms ({', '.join(f'{c:.0f}' for c in commits[1:])})"
              f" → {commits[0] / warm:.2f}×")
        print(f"   target: first commit ≤ 1.2 × a warm one — {commits[0] / warm:.2f}× → "
              f"{verdict(commits[0] <= 1.2 * warm)}")
        print("== first preview of a session against a warm one; wire overhead (median of", args.repeats, "edits) ==")
        print(f"{'region':>8} {'first':>8} {'frame MB':>9} {'round trip':>11} {'render':>9} {'overhead':>9} {'p95':>8} "
              f"{'local copy':>11} {'overhead/render':>16}")
        render_ms, firsts, overs = {}, [], []
        for n in args.sizes:
            r = wire_overhead(client, n, args.repeats)
            render_ms[n] = r["render"]
            firsts.append(r["first"] / r["rtt"])
            overs.append(r["overhead"] / r["render"])
            print(f"{n:>7}² {r['first']:>6.1f}ms {r['bytes'] / 1e6:>9.2f} {r['rtt']:>9.2f}ms {r['render']:>7.2f}ms "
                  f"{r['overhead']:>7.2f}ms {r['overhead_p95']:>6.2f}ms {r['copy']:>9.3f}ms "
                  f"{100 * r['overhead'] / r['render']:>15.1f}%")
        print(f"   target: first preview ≤ 1.2 × a warm round trip — worst {max(firsts):.2f}× → "
              f"{verdict(max(firsts) <= 1.2)}")
        print(f"   target: overhead ≤ 5 % of a preview render — worst {100 * max(overs):.1f} % → "
              f"{verdict(max(overs) <= 0.05)}")
        print(f"== slider storm: 60 edits/s in {DRAGS} drags, at least {args.storm_seconds:g} s and "
              f"{STORM_RENDERS} preview renders in all ==")
        p95s, settles = [], []
        for n in args.sizes:
            seconds = max(args.storm_seconds, STORM_RENDERS * render_ms[n] / 1000)
            s = storm(conn_file, n, seconds, 60.0, drafts=not args.no_drafts)
            p95s.append(s["p95"] / s["render"])
            settles.append(s["settle"] / s["render"])
            print(f"{n:>7}²: {s['edits']} edits in {seconds:.1f} s → {s['previews']} previews ({s['drafts']} drafts, "
                  f"median {s['draft_render']:.1f} ms), {s['shown_per_s']:.1f}/s shown while dragging "
                  f"({s['drafts_per_s']:.1f}/s drafts); latency p50 {s['p50']:.1f} ms, p95 "
                  f"{s['p95']:.1f} ms; one render {s['render']:.1f} ms → p95 = {s['p95'] / s['render']:.2f}× "
                  f"render; each drag's last edit answered: {s['last_answered']}, median after "
                  f"{s['settle']:.1f} ms ({s['settle'] / s['render']:.2f}× render), worst {s['settle_max']:.1f} ms "
                  f"({s['settle_max'] / s['render']:.2f}×)")
        print(f"   target: storm p95 ≤ 1.5 × one render — worst {max(p95s):.2f}× → {verdict(max(p95s) <= 1.5)}")
        print(f"   target: a drag's last edit shown within 1.2 × one render (median of {DRAGS} drags) — worst "
              f"{max(settles):.2f}× → {verdict(max(settles) <= 1.2)}")
        print(f"== sessions held: {args.sessions} ==")
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
        for sess in sessions:
            sess.close()
        for c in clients:
            c.close()
        if args.soak_minutes > 0:
            soak(proc, conn_file, client, args)
        client.close()
    finally:
        proc.terminate()
        proc.wait(30)


def soak(proc: subprocess.Popen, conn_file: Path, client: Client, args: argparse.Namespace) -> None:
    """Resident memory at start, during and after a long storm on the largest region, then after idling."""
    n = max(args.sizes)
    start = rss_mb(proc.pid)
    samples: list[float] = []
    t_end = time.perf_counter() + args.soak_minutes * 60
    while time.perf_counter() < t_end:
        storm(conn_file, n, min(30.0, t_end - time.perf_counter() + 0.1), 60.0)
        samples.append(rss_mb(proc.pid))
    after = rss_mb(proc.pid)
    time.sleep(args.idle_wait)
    idle = rss_mb(proc.pid)
    print(f"== {args.soak_minutes:g}-minute storm on {n}²: backend RSS at start {start:.0f} MB, during max "
          f"{max(samples):.0f} MB (last {samples[-1]:.0f}), right after {after:.0f} MB, after {args.idle_wait:g} s "
          f"idle {idle:.0f} MB")
    print(f"   bound: RSS during ≤ start + 2 GB — {verdict(max(samples) <= start + 2048)}; idle gives memory back "
          f"(≤ 80 % of the peak) — {verdict(idle <= 0.8 * max(samples))}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=["demo", "random1024"], help="built-in models: demo, random1024")
    ap.add_argument("--model", default=None, help="also measure this model file")
    ap.add_argument("--directions", default=None, help="direction file (default: 3 SeFa directions of the model)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--storm-seconds", type=float, default=3.0)
    ap.add_argument("--sessions", type=int, default=16)
    ap.add_argument("--no-drafts", action="store_true", help="storm as a client that takes no drafts")
    ap.add_argument("--soak-minutes", type=float, default=0.0, help="a long storm measuring memory (e.g. 10)")
    ap.add_argument("--idle-wait", type=float, default=40.0, help="seconds idle after the soak before RSS is read")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        for label, model in build_models(tmp, args.models, args.model):
            serve_and_measure(label, model, args, tmp)


if __name__ == "__main__":
    main()
