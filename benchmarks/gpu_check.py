"""Every CUDA path in one run, with throughput: what to run first on a GPU machine (≤ 5 minutes).

1. render parity CUDA vs the CPU reference (random 1024 config-f generator), fp32 and bf16;
2. render throughput: full 1024 and 256 px at ratio 0.25, batch 1 and 8;
3. `anycost distill` steps (bf16 autocast, the sandwich of sub-generators);
4. encoder training steps;
5. `anycost train` steps (the staged trainer, adaptive stage);
6. a service edit with `anycost serve --device cuda`: first preview, preview latency during a 2 s
   60 Hz slider storm (last edit → its preview) and the commit.

    python benchmarks/gpu_check.py [--device cuda] [--quick]

``--device cpu`` runs the same script on the CPU at small sizes (a check of the script itself).
Nothing here asserts; it prints figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
T0 = time.perf_counter()


def say(text: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f} s] {text}", flush=True)


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn, dev: torch.device, repeats: int) -> float:
    """Median milliseconds of ``fn`` (one warm-up call first)."""
    fn()
    sync(dev)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync(dev)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def random_generator(res: int, seed: int = 0):
    from anycost.models.generator import Generator

    torch.manual_seed(seed)
    kw = {} if res >= 256 else {"channel_multiplier": 1, "channel_max": 128}
    return Generator(resolution=res, **kw).eval()


def check_render(G, dev: torch.device, quick: bool) -> None:
    from anycost.models.fast_synthesis import render

    Gd = G.to(dev)
    Gc = random_generator(G.resolution).eval()
    Gc.load_state_dict(G.state_dict())
    w = Gc.styles_from_seed(3, n=2, truncation=0.7)
    with torch.no_grad():
        ref = Gc.synthesize(w, impl="reference")
        out = Gd.synthesize(w.to(dev)).float().cpu()
        say(f"render parity {dev.type} vs CPU reference, full {G.resolution}: max |Δ| "
            f"{(out - ref).abs().max():.2e}")
        sub = Gd.synthesize(w.to(dev), res=G.resolution // 4, channels=0.5).float().cpu()
        sub_ref = Gc.synthesize(w, res=G.resolution // 4, channels=0.5, impl="reference")
        say(f"render parity {dev.type} vs CPU reference, {G.resolution // 4}:0.5: max |Δ| "
            f"{(sub - sub_ref).abs().max():.2e}")
        if dev.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                bf = Gd.synthesize(w.to(dev), impl="reference").float().cpu()
        else:
            bf = render(Gd, w, dtype=torch.bfloat16).float()
        say(f"bf16 vs fp32, full {G.resolution}: mean |Δ| {(bf - ref).abs().mean():.4f}, "
            f"max {(bf - ref).abs().max():.3f}")
    reps = 3 if quick else 10
    for batch in (1, 8):
        wb = Gd.styles_from_seed(1, n=batch).to(dev)
        for res, ratio in ((G.resolution, None), (max(8, G.resolution // 4), 0.25)):
            with torch.no_grad():
                ms = timed(lambda wb=wb, res=res, ratio=ratio: Gd.synthesize(wb, res=res, channels=ratio), dev, reps)
            label = f"{res}:{ratio or 1}"
            say(f"render {label:>9} batch {batch}: {ms:8.1f} ms ({1000 * batch / ms:7.1f} img/s)")
            if dev.type == "cuda":
                with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                    ms = timed(lambda wb=wb, res=res, ratio=ratio: Gd.synthesize(wb, res=res, channels=ratio,
                                                                                 impl="reference"), dev, reps)
                say(f"render {label:>9} batch {batch} bf16: {ms:8.1f} ms ({1000 * batch / ms:7.1f} img/s)")


def check_distill(G, dev: torch.device, quick: bool, tmp: Path) -> None:
    from anycost.training.distill import DistillConfig, Distiller

    steps = 3 if quick else 10
    cfg = DistillConfig(steps=steps, batch=4 if dev.type == "cuda" else 1, device=str(dev), perceptual="none",
                        eval_seeds=2, checkpoint_every=0, log_every=0)
    d = Distiller(G.cpu(), cfg)
    d.train_step()  # warm-up (cuDNN autotuning, allocator)
    sync(dev)
    t = time.perf_counter()
    for _ in range(steps):
        d.train_step()
    sync(dev)
    dt = (time.perf_counter() - t) / steps
    say(f"distill {G.resolution} px, batch {cfg.batch}, amp={d.amp}: {dt * 1000:.0f} ms/step "
        f"({cfg.batch / dt:.1f} latents/s); 2000 steps ≈ {2000 * dt / 60:.1f} min")
    if dev.type == "cuda":
        say(f"  peak GPU memory {torch.cuda.max_memory_allocated(dev) / 2**30:.1f} GiB")


def check_encoder(G, dev: torch.device, quick: bool) -> None:
    from anycost.training.encoder_training import EncoderTrainConfig, build_encoder, train_encoder

    steps = 4 if quick else 20
    E = build_encoder(G.cpu(), depth=18, width=32)
    cfg = EncoderTrainConfig(steps=1, batch=8 if dev.type == "cuda" else 2, device=str(dev), lpips_weight=0.0)
    train_encoder(G, E, cfg, progress=False)  # warm-up
    cfg.steps = 1 + steps
    t = time.perf_counter()
    train_encoder(G, E, cfg, progress=False)
    sync(dev)
    dt = (time.perf_counter() - t) / (steps + 1)
    say(f"encoder training on {G.resolution} px, batch {cfg.batch}: {dt * 1000:.0f} ms/step; 2000 steps ≈ "
        f"{2000 * dt / 60:.1f} min")


def check_train(dev: torch.device, quick: bool, tmp: Path) -> None:
    from anycost.training.anycost_trainer import AnycostTrainer
    from anycost.training.config import TrainConfig

    res = 256 if dev.type == "cuda" else 32
    steps = 3 if quick else 10
    cfg = TrainConfig(data="synth:faces", res=res, out=str(tmp / "train"), steps=steps + 1, batch=8 if
                      dev.type == "cuda" else 2, device=str(dev), stages="adaptive:1", style_dim=256 if
                      dev.type == "cuda" else 32, n_mlp=4 if dev.type == "cuda" else 2,
                      channel_multiplier=1 if dev.type == "cuda" else 0.25, channel_max=256 if
                      dev.type == "cuda" else 32, d_channel_multiplier=1 if dev.type == "cuda" else 0.25,
                      d_channel_max=256 if dev.type == "cuda" else 32, log_every=0, sample_every=0,
                      checkpoint_every=0, metrics_every=0, lpips_weight=0.0)
    tr = AnycostTrainer(cfg, quiet=True)
    tr.train_step()
    sync(dev)
    t = time.perf_counter()
    for _ in range(steps):
        tr.train_step()
    sync(dev)
    dt = (time.perf_counter() - t) / steps
    say(f"anycost train, adaptive stage, {res} px, batch {cfg.batch}, amp={tr.amp}: {dt * 1000:.0f} ms/step "
        f"({cfg.batch / dt:.1f} img/s)")


def check_service(G, dev: torch.device, quick: bool, tmp: Path) -> None:
    from anycost.directions import save_directions_file, sefa_directions
    from anycost.io.modelfile import save_model
    from anycost_client.client import Client

    model = tmp / "service-model.safetensors"
    save_model(model, generator=G.cpu(), info={"name": "gpu-check", "face": False})
    dirs = save_directions_file(tmp / "dirs.safetensors", sefa_directions(G.cpu(), k=2))
    conn = tmp / "conn.json"
    cmd = [sys.executable, "-m", "anycost", "serve", "--model", str(model), "--directions", str(dirs),
           "--device", str(dev), "--no-lpips", "--connection-file", str(conn), "--log-level", "warning",
           "--rate", "1000"]
    env = {**os.environ, "ANYCOST_BACKGROUND_SEARCH": "0"}
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    try:
        while not conn.exists():
            if proc.poll() is not None or time.perf_counter() - t > 240:
                raise SystemExit(f"backend did not start: {proc.stderr.read() if proc.stderr else ''}")
            time.sleep(0.1)
        say(f"service on {dev}: ready in {time.perf_counter() - t:.1f} s")
        size = min(1024, G.resolution)
        rgba = os.urandom(size * size * 4)
        with Client.connect(conn, timeout=120) as client:
            say(f"  preview choice: {client.welcome['costs'].get('preview')} "
                f"({client.welcome['costs'].get('preview_ms')} ms measured)")
            t = time.perf_counter()
            with client.open(rgba, size, size, align=False, refine_steps=0) as s:
                say(f"  open (projection, {size}²): {time.perf_counter() - t:.2f} s")
                t = time.perf_counter()
                p = s.edit(sefa_0=0.5)
                say(f"  first preview: {(time.perf_counter() - t) * 1000:.0f} ms (render {p.render_ms:.0f} ms)")
                singles = []
                for v in (0.1, 0.2, 0.3):
                    t = time.perf_counter()
                    p = s.edit(sefa_0=v)
                    singles.append(p.render_ms)
                render_ms = statistics.median(singles)
                seconds = 1.0 if quick else 2.0
                t_end = time.perf_counter() + seconds
                k = 0
                while time.perf_counter() < t_end:
                    k += 1
                    s.edit_nowait(sefa_0=(k % 100) / 100)
                    time.sleep(1 / 60)
                last_sent = time.perf_counter()
                last = s.edit_nowait(sefa_0=-0.5)
                while True:  # previews of older edits may still arrive first
                    got = s.latest_preview(timeout=30)
                    if got is None or got.seq is None or got.seq >= last:
                        break
                lag = (time.perf_counter() - last_sent) * 1000
                say(f"  storm {seconds:.0f} s at 60 Hz ({k} edits): last edit → its preview {lag:.0f} ms "
                    f"= {lag / max(render_ms, 1e-3):.2f} × one preview render ({render_ms:.0f} ms)")
                t = time.perf_counter()
                r = s.commit(sefa_0=-0.5)
                say(f"  commit (full {G.resolution}, pasted back): {(time.perf_counter() - t) * 1000:.0f} ms "
                    f"(render {r.render_ms:.0f} ms)")
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run it on a GPU machine (or --device cpu to check the script)")
        return
    dev = torch.device(args.device)
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        say(f"{p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}, CUDA {torch.version.cuda}, "
            f"bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}")
        torch.backends.cudnn.benchmark = True
    else:
        say(f"CPU run at small sizes (a check of the script), torch {torch.__version__}")
    big = random_generator(1024 if dev.type == "cuda" else 64)
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        for name, fn in (("render", lambda: check_render(big, dev, args.quick)),
                         ("distill", lambda: check_distill(random_generator(256 if dev.type == "cuda" else 32),
                                                           dev, args.quick, tmp)),
                         ("encoder", lambda: check_encoder(random_generator(256 if dev.type == "cuda" else 32).to(dev),
                                                           dev, args.quick)),
                         ("train", lambda: check_train(dev, args.quick, tmp)),
                         ("service", lambda: check_service(big, dev, args.quick, tmp))):
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - one failing path must not hide the others' figures
                say(f"{name}: FAILED: {type(e).__name__}: {e}")
    say("done")


if __name__ == "__main__":
    main()
