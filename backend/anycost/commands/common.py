"""Argument helpers shared by subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError


def parse_channels(text: str | None) -> float | list[int] | None:
    """``--channels``: a ratio (0.5) or a comma-separated per-layer list (512,512,256,…)."""
    if text is None or text in ("", "full", "1", "1.0"):
        return None
    try:
        if "," in text:
            return [int(c) for c in text.split(",") if c.strip()]
        return float(text)
    except ValueError as e:
        raise InputError(f"--channels must be a ratio like 0.5 or a comma-separated list of widths, "
                         f"got {text!r}") from e


def model_output(path: str) -> Path:
    """``-o/--output`` of a command that writes a model file."""
    out = Path(path)
    if out.suffix != ".safetensors":
        raise InputError(f"--output must be a .safetensors model file, got {out}")
    return out


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")


def resolve_device(name: str):
    import torch

    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but no CUDA device is available")
    return torch.device(name)


def add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice); 1 keeps render times steady on a busy machine")


def apply_threads(threads: int | None) -> None:
    if threads is None:
        return
    if threads < 1:
        raise InputError("--threads must be at least 1")
    import torch

    torch.set_num_threads(threads)
