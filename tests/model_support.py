"""Small real models shared by tests (not a test module)."""

from __future__ import annotations

import torch

from anycost.models.generator import Generator


def tiny_generator(res: int = 16, seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    return Generator(resolution=res, style_dim=32, n_mlp=2, channel_multiplier=1, channel_max=32).eval()
