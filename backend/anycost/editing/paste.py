"""Paste-back: warp the edited crop into the region and blend it in without visible seams.

The blend weight of a region pixel is the product of
  * the host's selection mask (if any), with a fall-off inside its edge: a hard selection edge through
    the face would otherwise show the whole edit as a step at the boundary, so the weight ramps up
    over ``selection_feather`` (a fraction of the crop side, measured in region pixels) from the edge in,
  * the alignment's face mask, warped back into the region, and
  * an edge feather that falls smoothly to 0 at the crop's border (distance-based, ``feather`` wide),
so the weight is exactly 0 outside the crop and outside the selection, and those pixels come back
bit-identical, alpha included. Inside, the colour channels are mixed and alpha is kept.

Optional colour matching removes the global colour cast a GAN reconstruction tends to have: in the
band where the weight falls from 1 to 0, a per-channel YCbCr gain and offset is fitted that gives the
crop the original's mean and spread there, and it is applied to the whole edited crop before blending.
The fit is best made on the unedited reconstruction (``reference``): then an edit that changes colours on
purpose (hair colour, tan) keeps its change and only the reconstruction's cast is removed. Without a
reference the edited crop itself is measured, which also pulls deliberate colour changes in the band
back towards the original.

All work happens inside the bounding box of the non-zero weight, so the cost follows the face's size
on the canvas, not the canvas.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict

import numpy as np
import torch

from ..errors import InputError, RenderCancelled
from . import warp
from .align import Alignment
from .region import Region

DEFAULT_FEATHER = 0.08  # edge feather width as a fraction of the crop side
# Limits on the colour-matching gain: a band dominated by one flat colour must not blow up contrast.
GAIN_RANGE = (0.67, 1.5)
MIN_BAND_WEIGHT = 32.0
STAT_SAMPLES = 1 << 18  # below this much band (in pixel-weights) the statistics are noise; skip matching

# BT.601 full-range YCbCr without offsets (offsets cancel in a mean/std match).
_RGB_TO_YCC = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=np.float64
)


BLEND_MODES = ("delta", "replace")


def paste_back(
    region: Region,
    alignment: Alignment,
    edited,
    *,
    feather: float = DEFAULT_FEATHER,
    use_face_mask: bool = True,
    color_match: bool = True,
    color_strength: float = 1.0,
    reference=None,
    blend: str = "replace",
    selection_feather: float | None = None,
    cancel=None,
) -> np.ndarray:
    """Blend ``edited`` (the aligned crop after editing) back into ``region``; returns (H, W, 4) uint8.

    ``edited`` is a uint8 (h, w, 3|4) array, or a float image in [-1, 1]: a torch tensor (3, h, w) /
    (1, 3, h, w) or a numpy (h, w, 3) array; any resolution (it is treated as the crop, rescaled).
    ``reference``, in the same forms, is the unedited reconstruction used to fit the colour match.

    ``blend="replace"`` puts the render itself into the region. ``blend="delta"`` adds only the
    edit, ``edited - reference``, to the original pixels: the region keeps all the detail the
    generator cannot reproduce (brush strokes, texture, identity) and sliders at zero change
    nothing. Delta mode needs ``reference`` and ignores the colour match (a difference has no cast).

    ``selection_feather`` (default half of ``feather``; 0 keeps a hard selection edge hard) is the width
    of the fall-off inside the selection's edge, as a fraction of the crop side.

    ``cancel`` (a callable) is asked between the stages; when it answers True the paste stops with
    ``RenderCancelled`` (a preview nobody waits for any more: on a large region the paste costs more
    than the render)."""

    def check() -> None:
        if cancel is not None and cancel():
            raise RenderCancelled
    if alignment.region_size != (region.height, region.width):
        raise InputError(
            f"the alignment was made for a {alignment.region_size[1]} × {alignment.region_size[0]} region, "
            f"not {region.width} × {region.height}"
        )
    if not np.isfinite(feather) or not 0.0 <= feather <= 0.5:
        raise InputError(f"feather must be between 0 and 0.5 of the crop side (got {feather!r})")
    sel_feather = _selection_feather(feather, selection_feather)
    if not np.isfinite(color_strength) or not 0.0 <= color_strength <= 1.0:
        raise InputError(f"color_strength must be between 0 and 1 (got {color_strength!r})")
    if blend not in BLEND_MODES:
        raise InputError(f"blend must be one of {', '.join(BLEND_MODES)}, got {blend!r}")
    src = _edited_to_tensor(edited)  # (3, h, w) float32 in [0, 255]
    ref = None if reference is None else _edited_to_tensor(reference, "reference")
    delta = blend == "delta"
    if delta:
        if ref is None:
            raise InputError("blend='delta' needs the unedited reference render")
        if ref.shape != src.shape:
            ref = warp.resize_float(ref, src.shape[2], src.shape[1])
        src = src - ref  # the edit alone, signed
    out = region.rgba.copy()
    geometry = _geometry(region, alignment, feather, use_face_mask, sel_feather)
    if geometry is None:
        return out
    box, grid, weight = geometry
    x0, y0, x1, y1 = box
    size = alignment.size

    with torch.inference_mode():
        check()
        # The edited image is denser than the region where the face is small on the canvas: shrink it
        # (antialiased) to about 1:1 first. The grid is resolution-independent, so it stays valid.
        h, w = src.shape[1:]
        scale = warp.linear_scale(warp.rescale(w / size, h / size) @ alignment.matrix)
        if scale > 1.0:
            src = warp.resize_float(src, max(1, round(w / scale)), max(1, round(h / scale)))
        patch = out[y0:y1, x0:x1, :3]
        orig = torch.from_numpy(patch).permute(2, 0, 1).float()
        if delta:
            # bilinear: a convex combination, so the change never overshoots the edit (no ringing)
            change = warp.grid_sample(src, grid, "bilinear", "border")  # (3, bh, bw), signed
            check()
            blended = orig.add_(change.mul_(weight[None])).clamp_(0.0, 255.0).round_().to(torch.uint8)
            # where the weight is 0 this is the original exactly (x + 0 · finite), so no masked copy is needed
            patch[...] = blended.permute(1, 2, 0).numpy()
            return out
        if color_match and color_strength > 0:
            correction = _colour_correction(src if ref is None else ref, grid, patch, weight, color_strength)
            if correction is not None:
                # Sampling is linear, so correcting the (smaller) crop equals correcting the samples.
                a, b = correction
                src = torch.addmm(b[:, None], a, src.reshape(3, -1)).reshape(src.shape).clamp_(0.0, 255.0)
        new = warp.grid_sample(src, grid, "bicubic", "border").clamp_(0.0, 255.0)  # (3, bh, bw)
        check()
        # lerp at weight 0 is the original exactly (x + 0 · finite), so no masked copy is needed
        blended = torch.lerp(orig, new, weight[None]).clamp_(0.0, 255.0).round_().to(torch.uint8)

    patch[...] = blended.permute(1, 2, 0).numpy()
    return out


def paste_bounds(region: Region, alignment: Alignment, *, use_face_mask: bool = True
                 ) -> tuple[int, int, int, int] | None:
    """Half-open (x0, y0, x1, y1) outside which ``paste_back`` leaves every pixel as it was (None: all)."""
    return _paste_box(region, alignment, use_face_mask)


# The paste geometry (box, sampling grid, blend weight) depends only on the region, the
# alignment and the feathering, which stay the same for every preview of a session: kept for the few in
# use. Callers only read it.
_GEOMETRIES: OrderedDict[tuple, tuple[weakref.ref, weakref.ref, tuple]] = OrderedDict()
_GEOMETRIES_KEPT = 4


def _geometry(region: Region, alignment: Alignment, feather: float, use_face_mask: bool, sel_feather: float
              ) -> tuple[tuple[int, int, int, int], torch.Tensor, torch.Tensor] | None:
    key = (id(region), id(alignment), feather, use_face_mask, sel_feather)
    hit = _GEOMETRIES.get(key)
    if hit is not None and hit[0]() is region and hit[1]() is alignment:  # not new objects at reused addresses
        _GEOMETRIES.move_to_end(key)
        return hit[2]
    box = _paste_box(region, alignment, use_face_mask)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    size = alignment.size
    with torch.inference_mode():
        grid = warp.normalized_grid(alignment.matrix, size, size, x0, y0, x1 - x0, y1 - y0)
        weight = _weight(region, alignment, grid, box, feather, use_face_mask, sel_feather)
    value = (box, grid, weight)
    _GEOMETRIES[key] = (weakref.ref(region), weakref.ref(alignment), value)
    while len(_GEOMETRIES) > _GEOMETRIES_KEPT:
        _GEOMETRIES.popitem(last=False)
    return value


def blend_weight(region: Region, alignment: Alignment, *, feather: float = DEFAULT_FEATHER,
                 use_face_mask: bool = True, selection_feather: float | None = None) -> np.ndarray:
    """The full-size (H, W) float32 blend weight ``paste_back`` uses (for previews and tests)."""
    sel_feather = _selection_feather(feather, selection_feather)
    weight = np.zeros((region.height, region.width), np.float32)
    box = _paste_box(region, alignment, use_face_mask)
    if box is None:
        return weight
    x0, y0, x1, y1 = box
    with torch.inference_mode():
        grid = warp.normalized_grid(alignment.matrix, alignment.size, alignment.size, x0, y0, x1 - x0, y1 - y0)
        weight[y0:y1, x0:x1] = _weight(region, alignment, grid, box, feather, use_face_mask, sel_feather).numpy()
    return weight


def _selection_feather(feather: float, selection_feather: float | None) -> float:
    value = feather / 2 if selection_feather is None else selection_feather
    if not np.isfinite(value) or not 0.0 <= value <= 0.5:
        raise InputError(f"selection_feather must be between 0 and 0.5 of the crop side (got {value!r})")
    return float(value)


def _weight(region: Region, alignment: Alignment, grid: torch.Tensor, box: tuple[int, int, int, int],
            feather: float, use_face_mask: bool, selection_feather: float = 0.0) -> torch.Tensor:
    """Blend weight over ``box`` (bh, bw) float32: edge feather × warped face mask × selection."""
    x0, y0, x1, y1 = box
    weight = _edge_feather(grid, alignment.size, feather)
    if use_face_mask:
        fm = torch.from_numpy(np.asarray(alignment.face_mask, dtype=np.float32))[None]
        weight.mul_(warp.grid_sample(fm, grid, "bilinear", "zeros")[0].clamp_(0.0, 1.0))
    if region.mask is not None:
        # a float copy: the mask may be a read-only array (torch warns on those)
        weight.mul_(torch.from_numpy(region.mask[y0:y1, x0:x1].astype(np.float32)).mul_(1.0 / 255.0))
        # the crop's side in region pixels sets the fall-off width, as it does for the crop's own edge
        radius = int(round(selection_feather * alignment.size / warp.linear_scale(alignment.matrix)))
        if radius > 0:
            weight.mul_(torch.from_numpy(_selection_falloff(region.mask, box, radius)))
    return weight


# The fall-off depends only on the selection and the box, which stay the same for every preview of a
# session: kept for the few masks in use (about 15 ms for a 1024 px region, each preview otherwise).
# Callers only read it.
_FALLOFFS: OrderedDict[tuple, tuple[weakref.ref, np.ndarray]] = OrderedDict()
_FALLOFFS_KEPT = 8


def _selection_falloff(mask: np.ndarray, box: tuple[int, int, int, int], radius: int) -> np.ndarray:
    key = (id(mask), box, radius)
    hit = _FALLOFFS.get(key)
    if hit is not None and hit[0]() is mask:  # the same array, not a new one at a reused address
        _FALLOFFS.move_to_end(key)
        return hit[1]
    value = _inner_falloff(mask, box, radius)
    _FALLOFFS[key] = (weakref.ref(mask), value)
    while len(_FALLOFFS) > _FALLOFFS_KEPT:
        _FALLOFFS.popitem(last=False)
    return value


def _inner_falloff(mask: np.ndarray, box: tuple[int, int, int, int], radius: int) -> np.ndarray:
    """(bh, bw) float32 over ``box``: 0 outside the selection, a smooth rise over about ``radius`` pixels
    from its edge inwards, 1 deeper in. The share of selected pixels in a (2r+1)² window is a cheap,
    exact-on-straight-edges stand-in for the distance to the edge (smaller in corners, which is safe).
    The region's own border is not a selection edge: the mask is extended past it unchanged."""
    x0, y0, x1, y1 = box
    h, w = mask.shape
    r = radius
    ya, yb, xa, xb = max(0, y0 - r), min(h, y1 + r), max(0, x0 - r), min(w, x1 + r)
    inside = mask[ya:yb, xa:xb] > 0
    inside = np.pad(inside, ((ya - (y0 - r), (y1 + r) - yb), (xa - (x0 - r), (x1 + r) - xb)), mode="edge")
    integral = np.zeros((inside.shape[0] + 1, inside.shape[1] + 1), np.int64)
    np.cumsum(np.cumsum(inside, axis=0, dtype=np.int64), axis=1, out=integral[1:, 1:])
    k = 2 * r + 1
    count = integral[k:, k:] - integral[:-k, k:] - integral[k:, :-k] + integral[:-k, :-k]
    # straight edge, pixel d steps inside: count = k·(r + 1 + d), so t runs 1/(r+1) at the edge → 1 at d = r
    t = np.clip((count / k - r) / (r + 1), 0.0, 1.0).astype(np.float32)
    t *= inside[r:-r, r:-r]
    return t * t * (3.0 - 2.0 * t)


# ----------------------------------------------------------------------------------------------------


def _edited_to_tensor(edited, what: str = "edited image") -> torch.Tensor:
    """Any accepted edited-image form → (3, h, w) float32 in [0, 255]."""
    if isinstance(edited, torch.Tensor):
        t = edited.detach().cpu()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim != 3 or t.shape[0] not in (3, 4):
            raise InputError(f"the {what} tensor must be (3, H, W) or (1, 3, H, W) (got {tuple(edited.shape)})")
        t = t[:3]
        t = t.float() if t.dtype == torch.uint8 else (t.float() + 1.0) * 127.5
    else:
        a = np.asarray(edited)
        if a.ndim != 3 or a.shape[2] not in (3, 4):
            raise InputError(f"the {what} array must be (H, W, 3) or (H, W, 4) (got shape {a.shape})")
        if a.dtype == np.uint8:
            t = torch.from_numpy(np.array(a[..., :3], dtype=np.float32))
        elif np.issubdtype(a.dtype, np.floating):
            t = (torch.from_numpy(np.array(a[..., :3], dtype=np.float32)) + 1.0) * 127.5
        else:
            raise InputError(f"the {what} must be uint8 or float in [-1, 1] (got {a.dtype})")
        t = t.permute(2, 0, 1)
    if t.shape[1] < 1 or t.shape[2] < 1:
        raise InputError(f"the {what} is empty")
    if not torch.isfinite(t).all():
        raise InputError(f"the {what} contains NaN or infinite values")
    return t.clamp(0.0, 255.0).contiguous()


def _paste_box(region: Region, alignment: Alignment, use_face_mask: bool) -> tuple[int, int, int, int] | None:
    """Half-open pixel box (x0, y0, x1, y1) outside which the blend weight is certainly 0."""
    s = alignment.size
    lo, hi = (-0.5, -0.5), (s - 0.5, s - 0.5)
    if use_face_mask:
        fm = np.asarray(alignment.face_mask) > 0
        rows, cols = np.flatnonzero(fm.any(axis=1)), np.flatnonzero(fm.any(axis=0))
        if rows.size == 0:
            return None
        # One pixel of slack: bilinear sampling of the mask reaches half a pixel past its support.
        lo, hi = (cols[0] - 1.5, rows[0] - 1.5), (cols[-1] + 1.5, rows[-1] + 1.5)
    q = alignment.to_region([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]])
    x0 = max(0, int(np.floor(q[:, 0].min())))
    y0 = max(0, int(np.floor(q[:, 1].min())))
    x1 = min(region.width, int(np.ceil(q[:, 0].max())) + 1)
    y1 = min(region.height, int(np.ceil(q[:, 1].max())) + 1)
    if region.mask is not None:
        rows = np.flatnonzero(region.mask.any(axis=1))
        cols = np.flatnonzero(region.mask.any(axis=0))
        if rows.size == 0:
            return None
        x0, x1 = max(x0, int(cols[0])), min(x1, int(cols[-1]) + 1)
        y0, y1 = max(y0, int(rows[0])), min(y1, int(rows[-1]) + 1)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def _edge_feather(grid: torch.Tensor, size: int, feather: float) -> torch.Tensor:
    """1 deep inside the crop, smooth (C¹) fall-off to exactly 0 at its outer pixel edges."""
    # Distance to the nearest crop edge in crop pixels, from normalised coordinates (edges at ±1).
    d = (1.0 - grid.abs().amax(dim=-1)).mul_(size / 2.0)
    if feather <= 0:
        return (d > 0).float()
    t = d.mul_(1.0 / (feather * size)).clamp_(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _colour_correction(
    src: torch.Tensor, grid: torch.Tensor, patch: np.ndarray, weight: torch.Tensor, strength: float
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """RGB affine map (A, b) that gives the edited crop, in the blend's transition band, the original's
    per-channel YCbCr mean and spread (gain limited to ``GAIN_RANGE``, both scaled by ``strength``).
    None when the band is too small to measure."""
    # Statistics from a regular subsample: a few hundred thousand pixels pin the means down plenty.
    k = max(1, int(np.sqrt(weight.numel() / STAT_SAMPLES)))
    wk = weight[::k, ::k]
    band = (4.0 * wk * (1.0 - wk)).clamp_(min=0.0)
    sel = band > 1e-3
    if float(band[sel].sum()) * k * k < MIN_BAND_WEIGHT:
        return None
    bw = band[sel].double()
    total = float(bw.sum())
    c = torch.from_numpy(_RGB_TO_YCC)
    new = warp.grid_sample(src, grid[::k, ::k], "bicubic", "border").clamp_(0.0, 255.0)
    orig = torch.from_numpy(np.ascontiguousarray(patch[::k, ::k])).permute(2, 0, 1)
    e = c @ new[:, sel].double()
    o = c @ orig[:, sel].double()
    me, mo = (e * bw).sum(1) / total, (o * bw).sum(1) / total
    se = (((e - me[:, None]) ** 2 * bw).sum(1) / total).sqrt()
    so = (((o - mo[:, None]) ** 2 * bw).sum(1) / total).sqrt()
    gain = torch.where(se > 1.0, so / se.clamp(min=1e-6), torch.ones_like(se)).clamp(*GAIN_RANGE)
    gain = 1.0 + strength * (gain - 1.0)
    # In YCbCr: y' = gain * (y - me) + me + strength * (mo - me). As an affine map in RGB: A x + b.
    shift = me + strength * (mo - me) - gain * me
    c_inv = torch.linalg.inv(c)
    return (c_inv @ torch.diag(gain) @ c).float(), (c_inv @ shift).float()
