"""Affine resampling shared by alignment and paste-back.

Convention everywhere in ``anycost.editing``: a point (x, y) is in pixel-centre coordinates, so the
centre of pixel [row i, column j] is (j, i) and the image spans -0.5 .. W-0.5 horizontally. Transforms
are 3 × 3 matrices acting on column vectors (x, y, 1).

Large reductions go through an antialiased resize first (Pillow's Lanczos) so the final bicubic warp
only rotates and resamples at about 1:1; bicubic sampling on its own would alias when shrinking.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def translation(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def rescale(sx: float, sy: float) -> np.ndarray:
    """Pixel-centre coordinates of an image resized by (sx, sy): edges scale, centres shift by half a pixel."""
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (N, 2) points through a 3 × 3 affine matrix."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return p @ matrix[:2, :2].T + matrix[:2, 2]


def linear_scale(matrix: np.ndarray) -> float:
    """Geometric-mean scale factor of an affine map (sqrt of |det| of its linear part)."""
    return float(np.sqrt(abs(np.linalg.det(matrix[:2, :2]))))


def source_coords(dst_to_src: np.ndarray, x0: int, y0: int, width: int, height: int) -> torch.Tensor:
    """(height, width, 2) float32 source coordinates of the destination pixel centres x0.., y0.."""
    m = torch.from_numpy(np.asarray(dst_to_src, dtype=np.float64))
    xs = torch.arange(x0, x0 + width, dtype=torch.float64)
    ys = torch.arange(y0, y0 + height, dtype=torch.float64)
    # Affine: separable sums avoid materialising a float64 (H, W, 3) homogeneous grid.
    gx = m[0, 0] * xs[None, :] + (m[0, 1] * ys[:, None] + m[0, 2])
    gy = m[1, 0] * xs[None, :] + (m[1, 1] * ys[:, None] + m[1, 2])
    return torch.stack([gx, gy], dim=-1).to(torch.float32)


def normalized_grid(dst_to_src: np.ndarray, src_w: int, src_h: int, x0: int, y0: int, width: int,
                    height: int) -> torch.Tensor:
    """(height, width, 2) float32 ``grid_sample`` coordinates (align_corners=False) of the destination
    pixel centres x0.., y0.. in a ``src_w`` × ``src_h`` source. Resolution-independent: any resize of
    the source keeps the same grid."""
    to_norm = np.array([[2.0 / src_w, 0.0, 1.0 / src_w - 1.0], [0.0, 2.0 / src_h, 1.0 / src_h - 1.0], [0, 0, 1]])
    m = to_norm @ dst_to_src @ translation(x0, y0)
    xs = torch.arange(width, dtype=torch.float32)
    ys = torch.arange(height, dtype=torch.float32)
    grid = torch.empty((height, width, 2), dtype=torch.float32)
    torch.add(float(m[0, 0]) * xs[None, :], (float(m[0, 1]) * ys + float(m[0, 2]))[:, None], out=grid[..., 0])
    torch.add(float(m[1, 0]) * xs[None, :], (float(m[1, 1]) * ys + float(m[1, 2]))[:, None], out=grid[..., 1])
    return grid


def grid_sample(src: torch.Tensor, grid: torch.Tensor, mode: str, padding: str) -> torch.Tensor:
    """(C, h, w) float source sampled at a ``normalized_grid`` → (C, H, W)."""
    return F.grid_sample(src[None], grid[None], mode=mode, padding_mode=padding, align_corners=False)[0]


def sample(src: torch.Tensor, coords: torch.Tensor, mode: str = "bicubic", padding: str = "reflection") -> torch.Tensor:
    """Sample a (C, h, w) float image at (H, W, 2) pixel-centre coordinates → (C, H, W)."""
    _, h, w = src.shape
    grid = torch.empty_like(coords)
    # grid_sample with align_corners=False puts -1 / +1 on the outer pixel edges.
    grid[..., 0] = (2.0 * coords[..., 0] + 1.0) / w - 1.0
    grid[..., 1] = (2.0 * coords[..., 1] + 1.0) / h - 1.0
    out = F.grid_sample(src[None], grid[None], mode=mode, padding_mode=padding, align_corners=False)
    return out[0]


def resize_uint8(arr: np.ndarray, width: int, height: int) -> np.ndarray:
    """Antialiased resize of an (H, W, C) uint8 array with Lanczos filtering."""
    if arr.shape[1] == width and arr.shape[0] == height:
        return arr
    im = Image.fromarray(np.ascontiguousarray(arr))
    return np.asarray(im.resize((int(width), int(height)), Image.Resampling.LANCZOS))


def resize_float(t: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Antialiased resize of a (C, H, W) float tensor."""
    if t.shape[-1] == width and t.shape[-2] == height:
        return t
    shrinking = width < t.shape[-1] or height < t.shape[-2]
    out = F.interpolate(t[None], size=(int(height), int(width)), mode="bicubic", align_corners=False,
                        antialias=shrinking)
    return out[0]


def warp_uint8(
    image: np.ndarray, dst_to_src: np.ndarray, width: int, height: int, *, x0: int = 0, y0: int = 0
) -> np.ndarray:
    """Warp an (H, W, C) uint8 image into a (height, width, C) uint8 output whose pixel (x, y) shows the
    source at ``dst_to_src @ (x + x0, y + y0, 1)``. Outside the source, the image is mirrored."""
    H, W, C = image.shape
    scale = linear_scale(dst_to_src)  # source pixels per destination pixel
    # Only the part of the source the output can see (plus the bicubic footprint) is resampled.
    corners = apply(dst_to_src, [[x0 - 0.5, y0 - 0.5], [x0 + width - 0.5, y0 - 0.5],
                                 [x0 - 0.5, y0 + height - 0.5], [x0 + width - 0.5, y0 + height - 0.5]])
    margin = 3.0 * max(scale, 1.0) + 2.0
    bx0 = int(np.clip(np.floor(corners[:, 0].min() - margin), 0, W - 1))
    by0 = int(np.clip(np.floor(corners[:, 1].min() - margin), 0, H - 1))
    bx1 = int(np.clip(np.ceil(corners[:, 0].max() + margin), bx0, W - 1))
    by1 = int(np.clip(np.ceil(corners[:, 1].max() + margin), by0, H - 1))
    crop = image[by0:by1 + 1, bx0:bx1 + 1]
    to_crop = translation(-bx0, -by0)
    if scale > 1.0:
        cw, ch = crop.shape[1], crop.shape[0]
        nw, nh = max(1, round(cw / scale)), max(1, round(ch / scale))
        crop = resize_uint8(crop, nw, nh)
        to_crop = rescale(nw / cw, nh / ch) @ to_crop
    src = torch.from_numpy(np.array(crop, dtype=np.float32)).permute(2, 0, 1)
    coords = source_coords(to_crop @ dst_to_src, x0, y0, width, height)
    out = sample(src, coords, "bicubic", "reflection")
    return out.clamp_(0, 255).round_().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
