"""PCA directions: the principal axes of the mapped latent distribution (GANSpace, Härkönen et al. 2020).

The mapping network turns round Gaussian z into a w distribution stretched along a few axes;
the axes of largest variance tend to be the generator's main modes of variation (pose, gender,
lighting, …). The components are computed in W from sampled ``w = mapping(z)`` and, as GANSpace
does, may be applied to a range of style slots only (coarse slots change shape and pose, fine
slots colour and texture).
"""

from __future__ import annotations

import torch

from ..errors import InputError
from ..models.generator import Generator
from .direction import Direction, DirectionSet
from .sefa import SPREAD_PER_SLIDER

# Latents sampled by default: enough for stable axes of a 512-dimensional w on a GPU; the CPU
# takes a quarter of that (the leading components, the ones sliders use, settle much earlier).
DEFAULT_SAMPLES_GPU = 20000
DEFAULT_SAMPLES_CPU = 5000
BATCH = 2048


def default_samples(G: Generator) -> int:
    return DEFAULT_SAMPLES_GPU if next(G.parameters()).device.type == "cuda" else DEFAULT_SAMPLES_CPU


@torch.no_grad()
def w_covariance(G: Generator, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (D,), covariance (D, D)) of ``n`` mapped latents, float64 on the CPU.

    Accumulated batch by batch around the first batch's mean, so memory does not grow with ``n``
    and the sums do not cancel."""
    z_all = G.sample_z(n, seed)
    shift: torch.Tensor | None = None
    total = torch.zeros(G.style_dim, dtype=torch.float64)
    outer = torch.zeros(G.style_dim, G.style_dim, dtype=torch.float64)
    device = next(G.parameters()).device
    for z in z_all.split(BATCH):
        w = G.mapping(z.to(device)).double()
        if shift is None:
            shift = w.mean(0)
        w = w - shift
        total += w.sum(0).cpu()
        outer += (w.T @ w).cpu()
    assert shift is not None
    mean = total / n
    cov = (outer - n * torch.outer(mean, mean)) / (n - 1)
    return shift.cpu() + mean, cov


@torch.no_grad()
def pca_directions(G: Generator, k: int = 10, layers: list[int] | None = None, *, n_samples: int | None = None,
                   seed: int = 0, scale: float | None = None) -> DirectionSet:
    """The top-``k`` principal components of w named ``pca_0`` (largest variance), ``pca_1``, …

    ``layers`` picks the style slots they act on (default: all). ``n_samples`` defaults to
    ``default_samples(G)``. ``scale`` defaults to ``SPREAD_PER_SLIDER`` standard deviations of w
    along each component (what ``latent_spread`` measures, here read off the fit itself), the same
    rule as SeFa's, so slider 1.0 moves every unlabelled direction a comparable amount. Signs are
    fixed (largest-magnitude entry positive): a given generator and seed always give the same set.
    """
    n = default_samples(G) if n_samples is None else int(n_samples)
    if not 1 <= k <= G.style_dim:
        raise InputError(f"number of PCA directions must be in 1..{G.style_dim}, got {k}")
    if n <= k:
        raise InputError(f"PCA needs more sampled latents than components: {n} samples for {k} components")
    if layers is not None:
        bad = sorted({int(i) for i in layers if not 0 <= int(i) < G.n_style})
        if bad:
            raise InputError(f"style slots {bad} are outside 0..{G.n_style - 1}")
        layers = sorted({int(i) for i in layers})
    _, cov = w_covariance(G, n, seed)
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    order = torch.argsort(evals, descending=True)[:k]
    variances = evals[order].clamp_min(0)
    vecs = evecs[:, order].T  # (k, D), orthonormal rows
    idx = vecs.abs().argmax(dim=1)
    vecs = vecs * torch.sign(vecs[torch.arange(k), idx])[:, None]
    total = float(evals.clamp_min(0).sum())
    out = DirectionSet()
    for r in range(k):
        std = float(variances[r].sqrt())
        out.add(Direction(f"pca_{r}", vecs[r].float(), layers=layers,
                          scale=float(scale) if scale is not None else SPREAD_PER_SLIDER * std, source="pca",
                          info={"rank": r, "variance": float(variances[r]), "std": std,
                                "explained": float(variances[r]) / total if total > 0 else 0.0,
                                "samples": n, "seed": seed}))
    return out
