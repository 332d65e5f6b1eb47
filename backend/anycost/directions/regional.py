"""Regional edits: where in the frame a direction's attribute lives, and keeping its edit there.

A latent offset changes the whole image a little: lengthening hair also redraws the mouth and the
eyes slightly, and a person (or a classifier) reads that as a different smile. A direction's
*region* is its mean footprint ``|G(w ± d) − G(w)|`` over sampled faces, scaled so that pixels
carrying ``alpha`` of the peak change count fully, and softened by a Gaussian of ``sigma`` pixels.
An edit is then ``base + M · (edited − base)``: the attribute changes where it lives, the rest of
the face keeps its pixels. It suits attributes with a place (hair, glasses); a head turn moves
everything, and compositing it over the unmoved head leaves a ghost of the old outline.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..models.generator import Generator
from .direction import Direction, DirectionSet

DEFAULT_ALPHA = 0.3
DEFAULT_SIGMA = 2.0
DEFAULT_SAMPLES = 64
# the footprint is read at about the resolution an attribute classifier sees; finer adds only noise
FOOTPRINT_RES = 64


def footprint_resolution(G: Generator) -> int:
    """The generator's smallest output resolution of at least ``FOOTPRINT_RES`` (its full one if smaller)."""
    return next((r for r in G.resolutions if r >= FOOTPRINT_RES), G.resolution)


@torch.no_grad()
def footprint(G: Generator, offset: torch.Tensor, w_plus: torch.Tensor, *, res: int | None = None,
              batch: int = 32) -> torch.Tensor:
    """Mean absolute pixel change (res, res) of a W+ offset applied at ±1 to ``w_plus`` (N, n_style, D)."""
    res = res or footprint_resolution(G)
    dev = next(G.parameters()).device
    off = offset.to(dev)
    total = torch.zeros(res, res)
    for chunk in w_plus.to(dev).split(batch):
        base = G.synthesize(chunk, res=res, noise="const")
        for sign in (1.0, -1.0):
            total += (G.synthesize(chunk + sign * off, res=res, noise="const") - base).abs().mean(1).sum(0).cpu()
    return total / (2 * len(w_plus))


def gaussian_blur(m: torch.Tensor, sigma: float) -> torch.Tensor:
    """A 2-D map blurred by a separable Gaussian of ``sigma`` pixels (edges replicated)."""
    if sigma <= 0:
        return m
    r = max(1, int(3 * sigma + 0.5))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-x.square() / (2 * sigma * sigma))
    k = k / k.sum()
    out = F.pad(m[None, None].float(), (r, r, r, r), mode="replicate")
    out = F.conv2d(F.conv2d(out, k.view(1, 1, 1, -1)), k.view(1, 1, -1, 1))
    return out[0, 0]


def check_region_settings(alpha: float, sigma: float) -> None:
    if not 0 < alpha <= 1:
        raise InputError(f"alpha must be in (0, 1], got {alpha:g}")
    if not 0 <= sigma <= 16:
        raise InputError(f"sigma must be between 0 and 16 pixels, got {sigma:g}")


def region_from_footprint(fp: torch.Tensor, *, alpha: float = DEFAULT_ALPHA,
                          sigma: float = DEFAULT_SIGMA) -> torch.Tensor:
    """Full weight where the footprint reaches ``alpha`` of its peak, falling off linearly below, then blurred."""
    check_region_settings(alpha, sigma)
    peak = float(fp.max())
    if not peak > 0:
        raise InputError("the direction changes no pixel on these samples: it has no region")
    return gaussian_blur((fp / (alpha * peak)).clamp(0, 1), sigma).clamp(0, 1)


def fit_region(G: Generator, direction: Direction, *, samples: int = DEFAULT_SAMPLES, seed: int = 0,
               truncation: float = 0.8, alpha: float = DEFAULT_ALPHA, sigma: float = DEFAULT_SIGMA) -> Direction:
    """``direction`` with a region measured on ``samples`` faces of ``seed`` (its provenance in ``info``)."""
    if samples < 1:
        raise InputError("a region needs at least one sample")
    check_region_settings(alpha, sigma)
    w = G.styles_from_seed(seed, n=samples, truncation=truncation)
    fp = footprint(G, direction.offset(G.n_style, G.style_dim), w)
    region = region_from_footprint(fp, alpha=alpha, sigma=sigma)
    info = {**direction.info, "region": {"samples": samples, "seed": seed, "truncation": truncation,
                                         "alpha": alpha, "sigma": sigma, "res": int(fp.shape[-1]),
                                         "area": round(float(region.mean()), 3)}}
    return dataclasses.replace(direction, region=region, info=info)


def without_region(direction: Direction) -> Direction:
    info = {k: v for k, v in direction.info.items() if k != "region"}
    return dataclasses.replace(direction, region=None, info=info)


def region_mask(regions: Sequence[torch.Tensor], size: int | tuple[int, int], *,
                like: torch.Tensor | None = None) -> torch.Tensor:
    """The union (pixel-wise max) of region maps at an image's ``size``: (1, 1, h, w)."""
    if not regions:
        raise InputError("no regions to combine")
    hw = (size, size) if isinstance(size, int) else size
    maps = [F.interpolate(r[None, None].float(), size=hw, mode="bilinear", align_corners=False) for r in regions]
    m = torch.stack(maps).amax(0).clamp(0, 1)
    return m if like is None else m.to(device=like.device, dtype=like.dtype)


def blend(base: torch.Tensor, edited: torch.Tensor, regions: Sequence[torch.Tensor]) -> torch.Tensor:
    """``edited`` inside the union of ``regions``, ``base`` outside, soft in between."""
    m = region_mask(regions, tuple(edited.shape[-2:]), like=edited)
    return base + m * (edited - base)


def split_sliders(directions: Mapping[str, Direction],
                  values: Mapping[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """Non-zero slider values split into (whole-image, regional)."""
    plain: dict[str, float] = {}
    regional: dict[str, float] = {}
    for name, v in values.items():
        if not v:
            continue
        if name not in directions:
            raise InputError(f"unknown direction {name!r}; available: {', '.join(directions) or 'none'}")
        (regional if directions[name].region is not None else plain)[name] = v
    return plain, regional


def render_sliders(G: Generator, directions: DirectionSet, w_plus: torch.Tensor, values: Mapping[str, float], *,
                   base: Callable[[dict[str, float]], torch.Tensor] | None = None, **render_kwargs) -> torch.Tensor:
    """Render W+ with slider edits, each regional one kept inside its region.

    ``base(plain_values)`` may supply the render without the regional sliders (a caller's cache);
    without it that render is drawn here, which doubles the cost while a regional slider is set."""
    plain, regional = split_sliders(directions, values)
    edited = G.synthesize(directions.apply(w_plus, {**plain, **regional}), **render_kwargs)
    if not regional:
        return edited
    under = base(plain) if base is not None else G.synthesize(directions.apply(w_plus, plain), **render_kwargs)
    return blend(under, edited, [r for n in regional if (r := directions[n].region) is not None])


@torch.no_grad()
def score_regional(G: Generator, classifier, w_base: torch.Tensor, w_edited: torch.Tensor, region: torch.Tensor, *,
                   res: int, batch: int = 32) -> torch.Tensor:
    """Classifier scores (N, n_attr) of the edits ``w_edited`` kept inside ``region`` over the renders of ``w_base``."""
    dev = next(G.parameters()).device
    cdev = next(classifier.parameters()).device
    out = []
    for b, e in zip(w_base.split(batch), w_edited.split(batch), strict=True):
        img = blend(G.synthesize(b.to(dev), res=res), G.synthesize(e.to(dev), res=res), [region])
        out.append(classifier.predict(img.to(cdev)).float().cpu())
    return torch.cat(out)
