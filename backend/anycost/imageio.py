"""Tensor ↔ image conversion and safe (atomic) image writing."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .fsutil import atomic_write

# Formats an output image may be written in (by extension).
OUTPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")


def check_output_path(path: str | os.PathLike) -> Path:
    """An output image path with a writable format, or an InputError that says which are."""
    from .errors import InputError

    p = Path(path)
    if p.suffix.lower() not in OUTPUT_SUFFIXES:
        raise InputError(f"output must be an image file ({', '.join(OUTPUT_SUFFIXES)}), got {p}")
    return p


def tensor_to_uint8(img: torch.Tensor) -> np.ndarray:
    """(3, H, W) or (N, 3, H, W) in [-1, 1] → uint8 HWC / NHWC."""
    x = ((img.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    x = x.permute(0, 2, 3, 1) if x.ndim == 4 else x.permute(1, 2, 0)
    return x.cpu().numpy()


def images_to_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 RGB(A) images, (N, H, W, C) or one (H, W, C), → float (N, 3, H, W) in [-1, 1]; alpha is dropped."""
    from .errors import InputError

    # a read-only array (np.asarray of a PIL image) is copied: torch cannot wrap one without a warning
    t = torch.from_numpy(np.require(images, requirements=["C", "W"])) if isinstance(images, np.ndarray) \
        else torch.as_tensor(images)
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4 or t.shape[-1] not in (3, 4):
        raise InputError(f"expected RGB images of shape (N, H, W, 3), got {tuple(t.shape)}")
    return t[..., :3].permute(0, 3, 1, 2).float() / 127.5 - 1.0


def make_grid(images: np.ndarray, cols: int | None = None, pad: int = 2) -> np.ndarray:
    """NHWC uint8 → one HWC uint8 contact sheet."""
    n, h, w, c = images.shape
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
    for i, im in enumerate(images):
        r, q = divmod(i, cols)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = im
    return out


# Encoder options per format: the lossy-by-default WebP is written lossless (``exact`` keeps the colour
# of fully transparent pixels), so that untouched pixels stay bit-identical; JPEG cannot, so at least
# it is written at a high quality.
_SAVE_OPTIONS: dict[str, dict] = {
    "WEBP": {"lossless": True, "exact": True},
    "JPEG": {"quality": 95},
}
# Formats whose Pillow writer embeds an ICC profile.
_ICC_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF")
# Extensions of formats that cannot keep pixels exactly.
LOSSY_SUFFIXES = (".jpg", ".jpeg")


def image_writer(arr: np.ndarray, path: str | os.PathLike, *,
                 icc_profile: bytes | None = None) -> Callable[[str], None]:
    """A function that writes ``arr`` to a given file in the format ``path``'s extension names (for
    writing under a temporary name first), embedding ``icc_profile`` where the format can hold one.
    An unknown extension is an ``InputError``, raised here, before anything is written."""
    check_output_path(path)
    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    if fmt is None:  # a suffix in OUTPUT_SUFFIXES that this Pillow build cannot write
        from .errors import InputError

        raise InputError(f"this installation cannot write {Path(path).suffix!r} images; use .png")
    options = dict(_SAVE_OPTIONS.get(fmt, {}))
    if icc_profile and fmt in _ICC_FORMATS:
        options["icc_profile"] = icc_profile
    return lambda tmp: Image.fromarray(arr).save(tmp, format=fmt, **options)


def save_image_atomic(arr: np.ndarray, path: str | os.PathLike, *, icc_profile: bytes | None = None) -> Path:
    """Write an image so that ``path`` either holds the whole file or is left untouched."""
    return atomic_write(path, image_writer(arr, path, icc_profile=icc_profile))
