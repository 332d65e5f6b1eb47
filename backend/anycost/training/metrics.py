"""Quality metrics for Anycost generators.

- Sub-generator consistency: PSNR (and LPIPS when its weights are cached) of every channel
  ratio × resolution against the full generator's output at the same resolution, on fixed seeds.
- FID, only when Inception weights are available locally (never downloaded).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import AnycostError
from ..measures.perceptual import lpips_distance
from ..measures.psnr import psnr
from ..models.channels import STANDARD_RATIOS
from ..models.generator import Generator

# torchvision's cache file name for Inception-v3 weights.
INCEPTION_FILE = "inception_v3_google-0cc3c7bd.pth"


class MetricUnavailable(AnycostError):
    """A metric needs weights that are not available on this machine."""


@torch.no_grad()
def consistency_metrics(G: Generator, ratios: Sequence[float] = STANDARD_RATIOS,
                        resolutions: Sequence[int] | None = None, n_seeds: int = 16, seed: int = 1000,
                        lpips_model: torch.nn.Module | None = None, batch: int = 8) -> dict[str, float]:
    """``{"psnr/r0.5/res64": dB, "lpips/r0.5/res64": d, …}`` against the full generator."""
    resolutions = list(resolutions or G.resolutions)
    acc: dict[str, list[float]] = {}
    for start in range(0, n_seeds, batch):
        w = G.styles_from_seed(seed + start, min(batch, n_seeds - start))
        for res in resolutions:
            full = G.synthesize(w, res=res, noise="const", impl="reference")
            for r in ratios:
                if float(r) == 1.0:
                    continue
                sub = G.synthesize(w, res=res, channels=float(r), noise="const", impl="reference")
                acc.setdefault(f"psnr/r{r:g}/res{res}", []).extend(psnr(sub, full).tolist())
                if lpips_model is not None:
                    d = lpips_distance(lpips_model, sub, full)
                    acc.setdefault(f"lpips/r{r:g}/res{res}", []).extend(d.tolist())
    return {k: float(np.mean([v for v in vals if math.isfinite(v)] or [float("inf")])) for k, vals in acc.items()}


def inception_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def load_inception(device: torch.device | str = "cpu") -> torch.nn.Module:
    """Inception-v3 pool features from the local torch cache; MetricUnavailable when absent."""
    path = inception_path()
    if not path.is_file():
        raise MetricUnavailable(f"FID needs Inception-v3 weights at {path} (torchvision's file); they are not "
                                "downloaded automatically. Copy the file there to enable FID.")
    from torchvision.models import inception_v3

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = inception_v3(weights=None, aux_logits=True, init_weights=False)
    try:
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as e:  # noqa: BLE001
        raise MetricUnavailable(f"Inception weights at {path} could not be loaded: {e}") from e
    net.fc = torch.nn.Identity()
    return net.to(device).eval().requires_grad_(False)


@torch.no_grad()
def inception_features(net: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    x = F.interpolate(images.float().clamp(-1, 1), size=(299, 299), mode="bilinear", align_corners=False)
    mean = torch.tensor([0.485, 0.456, 0.406], device=x.device).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=x.device).view(1, 3, 1, 1)
    return net(((x + 1) / 2 - mean) / std).double().cpu()


def frechet_distance(f1: torch.Tensor, f2: torch.Tensor) -> float:
    mu1, mu2 = f1.mean(0), f2.mean(0)
    c1, c2 = torch.cov(f1.T), torch.cov(f2.T)
    # tr(sqrt(c1 c2)) from the eigenvalues of c1 c2 (real, non-negative up to round-off).
    eig = torch.linalg.eigvals(c1 @ c2).real.clamp_min(0)
    return float((mu1 - mu2).pow(2).sum() + torch.trace(c1) + torch.trace(c2) - 2 * eig.sqrt().sum())


@torch.no_grad()
def fid(G: Generator, real_batches: Iterable[torch.Tensor], n: int = 5000, res: int | None = None,
        channels=None, batch: int = 32, seed: int = 0, device: torch.device | str = "cpu") -> float:
    """FID between ``n`` generated images (random seeds, no truncation) and ``n`` real images."""
    net = load_inception(device)
    real = []
    count = 0
    for b in real_batches:
        real.append(inception_features(net, b.to(device)))
        count += len(b)
        if count >= n:
            break
    if count < 2:
        raise MetricUnavailable("FID needs at least two real images")
    fake = []
    for start in range(0, count, batch):
        w = G.styles_from_seed(seed + start, min(batch, count - start))
        fake.append(inception_features(net, G.synthesize(w, res=res, channels=channels, noise="random")))
    return frechet_distance(torch.cat(real)[:count], torch.cat(fake)[:count])
