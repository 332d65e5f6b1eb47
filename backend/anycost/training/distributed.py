"""Data parallelism across processes started by ``torchrun`` (or any launcher setting RANK/WORLD_SIZE).

Gradients are averaged with one all-reduce per optimiser step. This is what
DistributedDataParallel does, done explicitly because every training step runs a
different sub-graph (sampled resolution, sampled sub-generators, the sandwich rule, lazy R1
with double backward), which DDP's reducer would have to rediscover each step.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
import torch.distributed as dist


def env_world() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from the launcher's environment (0, 0, 1 when absent)."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
            int(os.environ.get("WORLD_SIZE", 1)))


def init_from_env(device: str) -> tuple[int, int, int]:
    """Join the process group when the launcher asked for more than one process."""
    rank, local_rank, world = env_world()
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return rank, local_rank, world


def is_active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """All-reduce-average gradients in one flat buffer; missing gradients count as zeros."""
    if not is_active():
        return
    params = [p for p in params if p.requires_grad]
    if not params:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    i = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[i:i + n].view_as(p))
        i += n


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    if not is_active():
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src)


def all_gather_object(obj):
    if not is_active():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if is_active():
        dist.barrier()


def shutdown(clean: bool = True) -> None:
    """Leave the process group. After a normal finish every rank first waits for the others, so none
    tears its connections down while a peer still uses them (gloo then aborts the process); after an
    error it leaves at once, since a barrier could wait for a rank that is gone."""
    if not is_active():
        return
    if clean:
        dist.barrier()
    dist.destroy_process_group()


def any_rank(flag: bool) -> bool:
    """True on every process when ``flag`` is true on any (so all of them stop at the same step)."""
    if not is_active():
        return flag
    on_gpu = dist.get_backend() == "nccl"
    t = torch.tensor([int(flag)], device=torch.device("cuda", torch.cuda.current_device()) if on_gpu else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
