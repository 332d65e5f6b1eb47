"""SeFa: closed-form, unsupervised directions from the generator's style modulation weights.

Every modulated convolution maps a style vector s to per-channel scales ``A s``. Directions
that change those scales the most are the top eigenvectors of ``AᵀA`` with ``A`` the
(row-normalised) modulation weights of the chosen layers stacked on top of each other.
"""

from __future__ import annotations

import torch

from ..errors import InputError
from ..models.generator import Generator
from .direction import Direction, DirectionSet

# Slider 1.0 moves this many standard deviations of the sampled w along the direction.
SPREAD_PER_SLIDER = 2.0


def conv_modulations(G: Generator) -> list[tuple[int, torch.Tensor]]:
    """(style slot, modulation weight (in_channels, style_dim)) for every styled convolution."""
    out = [(0, G.conv1.conv.modulation.weight)]
    for i, conv in enumerate(G.convs):
        out.append((i + 1, conv.conv.modulation.weight))
    return out


def rgb_modulations(G: Generator) -> list[tuple[int, torch.Tensor]]:
    out = [(1, G.to_rgb1.conv.modulation.weight)]
    for b, rgb in enumerate(G.to_rgbs):
        out.append((3 + 2 * b, rgb.conv.modulation.weight))
    return out


@torch.no_grad()
def latent_spread(G: Generator, vectors: torch.Tensor, n: int = 4000, seed: int = 0) -> torch.Tensor:
    """Standard deviation of mapped w along each unit vector (K, D) → (K,)."""
    w = torch.cat([G.mapping(z) for z in G.sample_z(n, seed).split(2048)]).float().cpu()
    return (w @ vectors.T.float()).std(0)


@torch.no_grad()
def sefa_directions(G: Generator, k: int = 5, layers: list[int] | None = None, *, include_rgb: bool = False,
                    scale: float | None = None) -> DirectionSet:
    """Top-``k`` SeFa directions named ``sefa_0`` (largest eigenvalue), ``sefa_1``, …

    ``layers`` picks style slots (default: all); the directions act on those slots only.
    ``scale`` defaults to ``SPREAD_PER_SLIDER`` standard deviations of w along each direction.
    Eigenvector signs are fixed (largest-magnitude component positive), so results are
    deterministic for a given generator.
    """
    mods = conv_modulations(G) + (rgb_modulations(G) if include_rgb else [])
    if layers is not None:
        bad = [i for i in layers if not 0 <= int(i) < G.n_style]
        if bad:
            raise InputError(f"style slots {bad} are outside 0..{G.n_style - 1}")
        chosen = {int(i) for i in layers}
        mods = [(s, w) for s, w in mods if s in chosen]
        if not mods:
            raise InputError(f"no styled layer reads style slots {sorted(chosen)}")
    if not 1 <= k <= G.style_dim:
        raise InputError(f"number of SeFa directions must be in 1..{G.style_dim}, got {k}")
    A = torch.cat([w.detach().double().cpu() for _, w in mods])
    A = A / A.norm(dim=1, keepdim=True).clamp_min(1e-12)
    evals, evecs = torch.linalg.eigh(A.T @ A)  # ascending
    order = torch.argsort(evals, descending=True)[:k]
    vecs = evecs[:, order].T  # (k, D)
    idx = vecs.abs().argmax(dim=1)
    signs = torch.sign(vecs[torch.arange(k), idx])
    vecs = (vecs * signs[:, None]).float()
    spreads = latent_spread(G, vecs) if scale is None else None
    total = float(evals.clamp_min(0).sum())
    out = DirectionSet()
    for r in range(k):
        s = float(scale) if scale is not None else SPREAD_PER_SLIDER * float(spreads[r])
        out.add(Direction(f"sefa_{r}", vecs[r], layers=sorted(layers) if layers is not None else None,
                          scale=s, source="sefa",
                          info={"rank": r, "eigenvalue": float(evals[order[r]]),
                                "explained": float(evals[order[r]]) / total if total > 0 else 0.0}))
    return out
