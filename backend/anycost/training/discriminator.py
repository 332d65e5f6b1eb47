"""Discriminators for Anycost training.

One residual trunk (StyleGAN2 layout) with a fromRGB per resolution, so an image of any
training resolution enters the trunk at its own level. The generator-conditioned variant
FiLM-modulates the late blocks with an encoding of the generator's channel configuration,
so one discriminator can judge every sub-generator on its own terms.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..models.channels import resolution_channels
from ..models.layers import Blur, EqualLinear, FusedLeakyReLU

SQRT2 = math.sqrt(2.0)


class EqualConv(nn.Module):
    """Convolution with equalised learning rate and a stride (the generator's has none)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int = 0,
                 bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.scale = 1.0 / math.sqrt(in_ch * kernel ** 2)
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.stride = stride
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class ConvLayer(nn.Sequential):
    """[blur →] conv [stride 2] [→ bias + leaky ReLU]; blur before striding avoids aliasing."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, downsample: bool = False,
                 blur_kernel: tuple[int, ...] = (1, 3, 3, 1), bias: bool = True, activate: bool = True):
        layers: list[nn.Module] = []
        if downsample:
            p = len(blur_kernel) - 2 + (kernel - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            layers.append(EqualConv(in_ch, out_ch, kernel, stride=2, padding=0, bias=bias and not activate))
        else:
            layers.append(EqualConv(in_ch, out_ch, kernel, padding=kernel // 2, bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_ch))
        super().__init__(*layers)


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, blur_kernel: tuple[int, ...] = (1, 3, 3, 1)):
        super().__init__()
        self.conv1 = ConvLayer(in_ch, in_ch, 3, blur_kernel=blur_kernel)
        self.conv2 = ConvLayer(in_ch, out_ch, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(in_ch, out_ch, 1, downsample=True, blur_kernel=blur_kernel,
                              bias=False, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / SQRT2


def minibatch_stddev(x: torch.Tensor, group: int = 4) -> torch.Tensor:
    """Append the mean per-group standard deviation as one extra feature map."""
    n, c, h, w = x.shape
    g = max(1, min(group, n))
    while n % g:
        g -= 1
    y = x.float().view(g, n // g, c, h, w)
    y = torch.sqrt(y.var(0, unbiased=False) + 1e-8).mean(dim=(1, 2, 3))  # (n/g,)
    y = y.view(1, n // g, 1, 1, 1).expand(g, -1, 1, h, w).reshape(n, 1, h, w)
    return torch.cat([x, y.to(x.dtype)], dim=1)


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator with a multi-resolution input.

    ``forward(img, cond=None)`` accepts images at any of ``resolutions`` (8..resolution).
    With ``cond_dim > 0`` it is generator-conditioned: ``cond`` (N or 1, cond_dim) — the
    one-hot channel configuration — becomes per-channel FiLM scale/shift on the blocks at
    resolution ≤ ``film_res`` and on the final conv.
    """

    def __init__(self, resolution: int, channel_multiplier: float = 2, channel_max: int = 512,
                 blur_kernel: tuple[int, ...] = (1, 3, 3, 1), mbstd_group: int = 4,
                 cond_dim: int = 0, film_res: int = 16, channels: dict[int, int] | None = None,
                 input_resolutions: list[int] | None = None):
        super().__init__()
        if resolution < 8 or resolution & (resolution - 1):
            raise ValueError(f"resolution must be a power of two ≥ 8, got {resolution}")
        self.resolution = resolution
        self.mbstd_group = mbstd_group
        if channels is not None:  # explicit widths (an imported StyleGAN2 discriminator)
            ch = {int(k): int(v) for k, v in channels.items()}
            if sorted(ch) != [2 ** i for i in range(2, resolution.bit_length())]:
                raise ValueError(f"channels must give a width for every resolution 4..{resolution}")
        else:
            ch = resolution_channels(resolution, channel_multiplier, channel_max)
        self.channels = ch
        self.resolutions = [r for r in ch if r >= 8]
        # Images enter at these sizes; an imported StyleGAN2 discriminator has a fromRGB at the top only.
        inputs = self.resolutions if input_resolutions is None else [int(r) for r in input_resolutions]
        if not set(inputs) <= set(self.resolutions) or not inputs:
            raise ValueError(f"input resolutions {inputs} must be among {self.resolutions}")
        self.input_resolutions = inputs
        self.from_rgbs = nn.ModuleDict({str(r): ConvLayer(3, ch[r], 1) for r in inputs})
        self.blocks = nn.ModuleDict({str(r): ResBlock(ch[r], ch[r // 2], blur_kernel) for r in self.resolutions})
        self.final_conv = ConvLayer(ch[4] + 1, ch[4], 3)
        self.final_linear = nn.Sequential(EqualLinear(ch[4] * 16, ch[4], activation=True), EqualLinear(ch[4], 1))

        self.cond_dim = cond_dim
        self.film_res = film_res
        # FiLM targets: output of block r (width ch[r//2]) for r ≤ film_res, and the final conv.
        self.film_sizes = {str(r): ch[r // 2] for r in self.resolutions if r <= film_res}
        self.film_sizes["final"] = ch[4]
        if cond_dim > 0:
            total = 2 * sum(self.film_sizes.values())
            self.film = nn.Sequential(EqualLinear(cond_dim, 256, activation=True), EqualLinear(256, total))
            # Start as the identity modulation so conditioning is learned gradually.
            nn.init.zeros_(self.film[1].weight)

    def _film_params(self, cond: torch.Tensor | None, n: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        if self.cond_dim == 0 or cond is None:
            return {}
        if cond.ndim == 1:
            cond = cond.unsqueeze(0)
        out = self.film(cond.to(self.final_conv[0].weight.dtype))
        if out.shape[0] == 1 and n > 1:
            out = out.expand(n, -1)
        params = {}
        i = 0
        for key, size in self.film_sizes.items():
            gamma, beta = out[:, i:i + size], out[:, i + size:i + 2 * size]
            params[key] = (gamma[:, :, None, None], beta[:, :, None, None])
            i += 2 * size
        return params

    @staticmethod
    def _modulate(x: torch.Tensor, fp: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        if fp is None:
            return x
        gamma, beta = fp
        return x * (1 + gamma.to(x.dtype)) + beta.to(x.dtype)

    def trunk(self, img: torch.Tensor, cond: torch.Tensor | None = None,
              keep: tuple[int, ...] = ()) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Run fromRGB and the residual blocks; return the 4×4 features and the maps at ``keep`` sizes."""
        r = img.shape[-1]
        if str(r) not in self.from_rgbs or img.shape[-2] != r:
            raise ValueError(f"discriminator input must be square at one of {self.input_resolutions}, "
                             f"got {tuple(img.shape)}")
        film = self._film_params(cond, img.shape[0])
        x = self.from_rgbs[str(r)](img)
        kept: dict[int, torch.Tensor] = {}
        while r >= 8:
            if r in keep:
                kept[r] = x
            x = self._modulate(self.blocks[str(r)](x), film.get(str(r)))
            r //= 2
        x = minibatch_stddev(x, self.mbstd_group)
        x = self._modulate(self.final_conv(x), film.get("final"))
        return x, kept

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_linear(x.flatten(1))

    def forward(self, img: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        x, _ = self.trunk(img, cond)
        return self.head(x)


def discriminator_from_config(cfg: dict) -> Discriminator:
    """An unconditioned discriminator from a model file's ``discriminator`` component settings."""
    known = {"resolution", "channels", "input_resolutions", "mbstd_group", "channel_multiplier", "channel_max"}
    unknown = set(cfg) - known
    if unknown:
        raise ValueError(f"unknown discriminator settings: {sorted(unknown)}")
    return Discriminator(**cfg)


class ConditionedDiscriminator(Discriminator):
    """Generator-conditioned discriminator (channel configuration → FiLM on late layers)."""

    def __init__(self, resolution: int, cond_dim: int, **kwargs):
        if cond_dim <= 0:
            raise ValueError("a conditioned discriminator needs cond_dim > 0")
        super().__init__(resolution, cond_dim=cond_dim, **kwargs)
