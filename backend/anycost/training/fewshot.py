"""Few-shot training pieces (FastGAN techniques for ~100 images).

- A discriminator with self-supervised reconstruction decoders: the whole image is decoded
  at low resolution from the coarsest features, and a random quarter crop from finer
  features. The reconstruction loss on real images forces the discriminator to keep
  describing the images instead of memorising them.
- Hinge loss and DiffAugment (see ``losses`` and ``diffaugment``).
- Skip-layer excitation pairs for the generator, so the result is still a sliceable,
  multi-resolution Anycost generator.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from torch import nn

from .discriminator import Discriminator, EqualConv
from .losses import image_distance

# Skip-layer excitation pairs (low_res, high_res) of the few-shot generator.
SLE_PAIRS: tuple[tuple[int, int], ...] = ((8, 64), (16, 128), (32, 256), (64, 512), (128, 1024))


def sle_pairs(resolution: int) -> list[tuple[int, int]]:
    """The standard pairs that fit ``resolution``; small test models gate their top layer from 4×4."""
    pairs = [p for p in SLE_PAIRS if p[1] <= resolution]
    if not pairs and resolution >= 16:
        pairs = [(4, resolution)]
    return pairs


class Decoder(nn.Module):
    """Feature map → RGB image at ``out_res`` by nearest upsampling + conv blocks."""

    def __init__(self, in_ch: int, in_res: int, out_res: int, width: int = 64):
        super().__init__()
        layers: list[nn.Module] = []
        ch = in_ch
        r = in_res
        while r < out_res:
            nxt = max(16, min(width, ch // 2))
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), EqualConv(ch, nxt, 3, padding=1),
                       nn.LeakyReLU(0.2)]
            ch, r = nxt, r * 2
        layers += [EqualConv(ch, 3, 3, padding=1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FewShotDiscriminator(Discriminator):
    """Multi-resolution residual discriminator plus two reconstruction decoders.

    ``forward(img, cond)`` → logits; ``forward_with_recon(img, cond, part)`` also returns the
    whole-image reconstruction (from the 8×8 features) and the reconstruction of quarter
    ``part`` (0..3, row-major) from the 16×16 features, both at ``decode_res``.
    """

    def __init__(self, resolution: int, decode_res: int | None = None, **kwargs):
        super().__init__(resolution, **kwargs)
        self.decode_res = decode_res or min(128, resolution)
        self.coarse_res, self.fine_res = 8, 16
        self.decoder_whole = Decoder(self.channels[8], 8, self.decode_res)
        # A quarter of the 16×16 map is 8×8.
        self.decoder_part = Decoder(self.channels[16], 8, self.decode_res) if resolution >= 16 else None

    def forward_with_recon(self, img: torch.Tensor, cond: torch.Tensor | None = None, part: int = 0
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        keep = (self.coarse_res, self.fine_res)
        x, kept = self.trunk(img, cond, keep=keep)
        logits = self.head(x)
        whole = self.decoder_whole(kept[self.coarse_res])
        part_rec = None
        if self.decoder_part is not None and self.fine_res in kept:
            part_rec = self.decoder_part(quarter(kept[self.fine_res], part))
        return logits, whole, part_rec


def quarter(x: torch.Tensor, part: int) -> torch.Tensor:
    """Quarter ``part`` (0: top-left, 1: top-right, 2: bottom-left, 3: bottom-right) of a map."""
    h, w = x.shape[-2] // 2, x.shape[-1] // 2
    r, c = divmod(int(part), 2)
    return x[..., r * h:(r + 1) * h, c * w:(c + 1) * w]


def recon_targets(real: torch.Tensor, part: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    whole = F.interpolate(real, size=(size, size), mode="area")
    crop = F.interpolate(quarter(real, part), size=(size, size), mode="area")
    return whole, crop


def reconstruction_loss(D: FewShotDiscriminator, real: torch.Tensor, cond: torch.Tensor | None,
                        rng: random.Random, lpips_model: nn.Module | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits on ``real`` and the decoders' reconstruction loss (L1 + LPIPS when available)."""
    part = rng.randrange(4)
    logits, whole, part_rec = D.forward_with_recon(real, cond, part)
    t_whole, t_part = recon_targets(real, part, D.decode_res)
    loss = image_distance(whole, t_whole, lpips_model, pixel="l1")
    if part_rec is not None:
        loss = loss + image_distance(part_rec, t_part, lpips_model, pixel="l1")
    return logits, loss
