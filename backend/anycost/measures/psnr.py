"""PSNR of images in [-1, 1] (peak-to-peak 2)."""

from __future__ import annotations

import math

import torch


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample PSNR in dB of images in [-1, 1] (peak-to-peak 2); identical images give inf."""
    mse = (a.float() - b.float()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(4.0 / mse)


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB of images in [-1, 1] from their mean squared error."""
    return 10 * math.log10(4.0 / mse) if mse > 0 else float("inf")
