"""Data-parallel training: two CPU processes (gloo) end with identical weights."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _leave() -> None:
    """End a finished worker without interpreter finalisation: gloo's threads can still be torn down there,
    which aborts a process whose work is done and saved (SIGABRT, "terminate called without an active
    exception"), now and then."""
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from anycost.training.anycost_trainer import AnycostTrainer
    from anycost.training.config import build_config
    from anycost.training.data import TensorStream
    from anycost.training.distributed import shutdown

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    finished = False
    try:
        cfg = build_config({"preset": "tiny", "res": 16, "channel_max": 16, "d_channel_max": 16, "style_dim": 16,
                            "batch": 2, "steps": 2, "stages": "multires:1,adaptive:1", "out": out,
                            "checkpoint_every": 0, "sample_every": 0})
        imgs = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(5)) * 2 - 1
        t = AnycostTrainer(cfg, TensorStream(imgs, [8, 16], cfg.batch, cfg.seed, rank, world),
                           rank=rank, world=world, quiet=True)
        first = t.data.next_batch()[16]
        t.data.load_state_dict({"epoch": 0, "pos": 0})
        for _ in range(2):
            t.train_step()
        ckpt = t.save_checkpoint()  # every rank joins the RNG gather; rank 0 writes
        torch.save({"G": t.G.state_dict(), "D": t.D.state_dict(), "first": first, "ckpt": str(ckpt)},
                   os.path.join(out, f"rank{rank}.pt"))
        finished = True
    finally:
        shutdown(clean=finished)  # a rank leaving while its peer still talks aborts under gloo
    _leave()


def test_two_gloo_processes_train_identical_weights(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert not torch.equal(r0["first"], r1["first"])  # each rank reads its own shard
    for part in ("G", "D"):
        for k, v in r0[part].items():
            assert torch.equal(v, r1[part][k]), f"{part}.{k} differs across ranks"
    assert r1["ckpt"] == "None" and r0["ckpt"].endswith("ckpt-00000002.pt")
    ckpt = torch.load(r0["ckpt"], weights_only=True)
    assert ckpt["world"] == 2 and len(ckpt["rng"]) == 2 and len(ckpt["data"]) == 2


def _distill_worker(rank: int, world: int, port: int, out: str, model: str) -> None:
    import torch.distributed as dist

    from anycost.io.checkpoint import open_model
    from anycost.training.distill import DistillConfig, Distiller
    from anycost.training.distributed import shutdown

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    finished = False
    try:
        cfg = DistillConfig(steps=2, batch=1, perceptual="none", eval_seeds=1, checkpoint_every=0, log_every=0)
        d = Distiller(open_model(model).generator(), cfg, rank=rank, world=world)
        first = d._latents(1)  # each rank draws its own latents
        for _ in range(2):
            d.train_step()
        ckpt = d.save_checkpoint(Path(out))
        torch.save({"G": d.G.state_dict(), "first": first, "ckpt": str(ckpt)}, os.path.join(out, f"d{rank}.pt"))
        finished = True
    finally:
        shutdown(clean=finished)
    _leave()


def test_two_gloo_processes_distill_identical_weights(tmp_path, ada_fixture):
    model = str(ada_fixture / "network-snapshot.pkl")
    mp.spawn(_distill_worker, args=(2, _free_port(), str(tmp_path), model), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "d0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "d1.pt", weights_only=True)
    assert not torch.equal(r0["first"], r1["first"])
    for k, v in r0["G"].items():
        assert torch.equal(v, r1["G"][k]), f"G.{k} differs across ranks"
    assert r1["ckpt"] == "None"
    ckpt = torch.load(r0["ckpt"], weights_only=True)
    assert ckpt["kind"] == "distill" and ckpt["world"] == 2 and len(ckpt["rng"]) == 2
