"""How faithfully a sub-generator reproduces the full generator, on a fixed set of latents.

What a user sees of a preview is the sub-generator's image scaled up to the full render's size,
so a sub-generator is compared there: its output is upsampled (bilinear) to the model's
resolution and compared with the full render of the same latent and noise. That makes a lower
resolution pay for its blur, and the search can trade resolution against width fairly.

- PSNR (dB, images in [-1, 1]), the mean over latents of each image's PSNR;
- LPIPS (AlexNet) when its backbone weights are available locally, on both images brought
  to at most 256 px;
- the score the search maximises: PSNR, minus ``LPIPS_DB`` dB per unit of LPIPS when LPIPS is
  available (0.1 LPIPS is a clearly visible difference, about as bad as losing 3 dB).

Latents: seeded samples of the model's latent distribution (truncated), and, where the model
has edit directions, the same samples moved along them, since previews are mostly of edits.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..measures.perceptual import backbone_path, load_lpips, lpips_distance
from ..models.generator import Generator
from .space import SubConfig

LPIPS_DB = 30.0
LPIPS_MAX_SIZE = 256


@dataclass(frozen=True)
class Consistency:
    psnr: float
    lpips: float | None
    mse: float

    @property
    def score(self) -> float:
        return self.psnr - (LPIPS_DB * self.lpips if self.lpips is not None else 0.0)

    @property
    def dist(self) -> float:
        """Lower is better, as the published tables' ``dist``: LPIPS when measured, else the MSE."""
        return self.lpips if self.lpips is not None else self.mse

    def to_dict(self) -> dict:
        return {"psnr": self.psnr, "lpips": self.lpips, "mse": self.mse, "score": self.score}


def consistency_latents(G: Generator, n: int, *, seed: int = 0, truncation: float = 0.8,
                        directions=None) -> torch.Tensor:
    """``n`` W+ latents (n, n_style, style_dim): seeded samples; with ``directions`` (a DirectionSet)
    every second one is a sample moved along one direction (taken in turn) to ±0.8 of its range."""
    if n < 1:
        raise ValueError("need at least one latent")
    names = list(directions) if directions is not None and len(directions) else []
    n_plain = n if not names else (n + 1) // 2
    w = G.styles_from_seed(seed, n=n_plain, truncation=truncation)
    out = [w]
    if names:
        edited = []
        for i in range(n - n_plain):
            d = directions[names[i % len(names)]]
            lo, hi = d.slider_range
            value = 0.8 * (hi if i % 2 == 0 else lo)
            edited.append(directions.apply(w[i % n_plain: i % n_plain + 1], {d.name: value}))
        out += edited
    return torch.cat(out).to(G._device())


def _psnr_per_image(a: torch.Tensor, b: torch.Tensor) -> tuple[list[float], list[float]]:
    mse = (a.float() - b.float()).square().flatten(1).mean(1).tolist()
    return [10.0 * math.log10(4.0 / m) if m > 0 else 100.0 for m in mse], mse


class ConsistencyEvaluator:
    """Scores sub-generators against the full generator on fixed latents; results are cached per config."""

    def __init__(self, G: Generator, latents: torch.Tensor, *, lpips_model=None):
        self.G = G
        self.latents = latents
        self.lpips = lpips_model
        self._cache: dict[SubConfig, Consistency] = {}
        with torch.inference_mode():
            self.full = torch.cat([G.synthesize(w[None], noise="const") for w in latents])
            self._full_small = self._small(self.full) if lpips_model is not None else None
        self.evaluations = 0

    @staticmethod
    def _small(x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] <= LPIPS_MAX_SIZE:
            return x
        return F.interpolate(x, size=(LPIPS_MAX_SIZE, LPIPS_MAX_SIZE), mode="bilinear", align_corners=False,
                             antialias=True)

    def render(self, cfg: SubConfig) -> torch.Tensor:
        """The sub-generator's images, upsampled to the model's resolution."""
        G = self.G
        with torch.inference_mode():
            sub = torch.cat([G.synthesize(w[None], res=cfg.res, channels=list(cfg.channels), noise="const")
                             for w in self.latents])
            if cfg.res != G.resolution:
                sub = F.interpolate(sub, size=(G.resolution, G.resolution), mode="bilinear", align_corners=False)
        return sub

    def __call__(self, cfg: SubConfig) -> Consistency:
        hit = self._cache.get(cfg)
        if hit is not None:
            return hit
        sub = self.render(cfg)
        psnrs, mses = _psnr_per_image(sub, self.full)
        lp = None
        if self.lpips is not None:
            with torch.inference_mode():
                lp = float(lpips_distance(self.lpips, self._small(sub), self._full_small).mean())
        result = Consistency(sum(psnrs) / len(psnrs), lp, sum(mses) / len(mses))
        self._cache[cfg] = result
        self.evaluations += 1
        return result


def load_lpips_if_available(device: torch.device | str = "cpu"):
    """The AlexNet LPIPS module when its backbone is cached locally, else None (PSNR only)."""
    if not backbone_path("alex").is_file():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_lpips("alex", device)
