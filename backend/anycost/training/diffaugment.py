"""Differentiable augmentation (DiffAugment) for data-efficient GAN training.

The same policy is applied to real and generated images before the discriminator, and every
op is differentiable so the generator is trained through it. Random parameters are drawn per
sample; ``sample_params`` + ``apply`` let a caller reuse one draw for several batches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

OPS = ("color", "translation", "cutout")


def parse_policy(policy: str | list[str] | tuple[str, ...]) -> list[str]:
    names = [p.strip() for p in policy.split(",")] if isinstance(policy, str) else list(policy)
    names = [n for n in names if n]
    bad = [n for n in names if n not in OPS]
    if bad:
        raise ValueError(f"unknown DiffAugment ops {bad}; choose from {list(OPS)}")
    return names


class DiffAugment:
    def __init__(self, policy: str | list[str] = "color,translation,cutout", translation: float = 0.125,
                 cutout: float = 0.5):
        self.ops = parse_policy(policy)
        self.translation = translation
        self.cutout = cutout

    def sample_params(self, n: int, size: int, device: torch.device | str = "cpu",
                      generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        def rand(*shape: int) -> torch.Tensor:
            return torch.rand(*shape, generator=generator).to(device)

        p: dict[str, torch.Tensor] = {}
        if "color" in self.ops:
            p["brightness"] = rand(n, 1, 1, 1) - 0.5
            p["saturation"] = rand(n, 1, 1, 1) * 2
            p["contrast"] = rand(n, 1, 1, 1) + 0.5
        if "translation" in self.ops:
            s = int(size * self.translation + 0.5)
            p["shift"] = (rand(n, 2) * (2 * s + 1)).floor() - s
        if "cutout" in self.ops:
            c = int(size * self.cutout + 0.5)
            p["cut_size"] = torch.tensor(c)
            p["cut_pos"] = (rand(n, 2) * (size + (1 - c % 2))).floor()
        return p

    def apply(self, x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        if "brightness" in p:
            x = x + p["brightness"].to(x.dtype)
            mean = x.mean(dim=1, keepdim=True)
            x = (x - mean) * p["saturation"].to(x.dtype) + mean
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) * p["contrast"].to(x.dtype) + mean
        if "shift" in p:
            x = _translate(x, p["shift"])
        if "cut_pos" in p:
            x = _cutout(x, p["cut_pos"], int(p["cut_size"]))
        return x

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.ops:
            return x
        return self.apply(x, self.sample_params(x.shape[0], x.shape[-1], x.device, generator))


def _translate(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Integer shift per sample with zero padding (gather, so gradients reach the input)."""
    n, c, h, w = x.shape
    dev = x.device
    sy, sx = shift[:, 0].long().to(dev), shift[:, 1].long().to(dev)
    gy = torch.arange(h, device=dev)[None, :] - sy[:, None] + 1  # (n, h), padded coordinates
    gx = torch.arange(w, device=dev)[None, :] - sx[:, None] + 1
    gy, gx = gy.clamp(0, h + 1), gx.clamp(0, w + 1)
    padded = F.pad(x, (1, 1, 1, 1))
    idx_y = gy[:, None, :, None].expand(n, c, h, w + 2)
    rows = padded.gather(2, idx_y)
    idx_x = gx[:, None, None, :].expand(n, c, h, w)
    return rows.gather(3, idx_x)


def _cutout(x: torch.Tensor, pos: torch.Tensor, size: int) -> torch.Tensor:
    n, _, h, w = x.shape
    dev = x.device
    ys = torch.arange(h, device=dev)[None, :]
    xs = torch.arange(w, device=dev)[None, :]
    cy, cx = pos[:, 0:1].to(dev), pos[:, 1:2].to(dev)
    half = size // 2
    in_y = (ys >= cy - half) & (ys < cy - half + size)
    in_x = (xs >= cx - half) & (xs < cx - half + size)
    mask = ~(in_y[:, :, None] & in_x[:, None, :])
    return x * mask[:, None].to(x.dtype)
