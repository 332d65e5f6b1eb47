"""The region being edited: RGBA pixels of any size plus an optional 8-bit selection mask.

A region reaches the backend either as raw bytes from a painting program (Krita hands out BGRA rows,
GIMP RGBA, possibly with padded rows) or as an image file. Both paths end in the same validated
``Region``; everything downstream can rely on its shape and dtype.
"""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..errors import InputError

# 64 megapixels: an 8K × 8K canvas. Above this the float buffers of the paste-back alone need gigabytes.
DEFAULT_MAX_PIXELS = 64 * 1024 * 1024
# The detector and the generator need a face of some size; below this there is nothing to edit.
MIN_SIDE = 32
CHANNEL_ORDERS = ("RGBA", "BGRA")

# Pillow's decompression-bomb limit is process-global; it is raised to our limit only while we open a
# file, under this lock, so concurrent opens from this module never see each other's settings.
_PIL_LIMIT_LOCK = threading.Lock()


def pixel_count(n: int) -> str:
    """``67.1 megapixels`` for large counts, ``2000 pixels`` for small ones (a low configured limit)."""
    return f"{n / 1e6:.1f} megapixels" if n >= 100_000 else f"{n} pixels"


def check_size(width: int, height: int, max_pixels: int = DEFAULT_MAX_PIXELS, what: str = "region") -> None:
    """Raise ``InputError`` unless ``width`` × ``height`` is a usable region size."""
    if isinstance(width, bool) or isinstance(height, bool):
        raise InputError(f"the {what} size must be integers (got {width!r} × {height!r})")
    try:
        w, h = int(width), int(height)
    except (TypeError, ValueError):
        raise InputError(f"the {what} size must be integers (got {width!r} × {height!r})") from None
    if w != width or h != height:
        raise InputError(f"the {what} size must be integers (got {width!r} × {height!r})")
    if w <= 0 or h <= 0:
        raise InputError(f"the {what} is empty ({w} × {h} pixels); select an area that contains a face")
    if w * h > max_pixels:
        raise InputError(
            f"the {what} is too large: {w} × {h} = {pixel_count(w * h)}, the limit is "
            f"{pixel_count(max_pixels)}; select a smaller area around the face"
        )
    if w < MIN_SIDE or h < MIN_SIDE:
        raise InputError(
            f"the {what} is too small: {w} × {h} pixels, at least {MIN_SIDE} pixels are needed on each side"
        )


@dataclass
class Region:
    """Pixels to edit. ``rgba`` is (H, W, 4) uint8, straight (not premultiplied) alpha; ``mask`` is
    (H, W) uint8 (255 = fully selected) or None for "everything". ``icc_profile`` is the colour profile
    of the file the pixels came from (RGB profiles only), so that outputs can carry it on."""

    rgba: np.ndarray
    mask: np.ndarray | None = None
    icc_profile: bytes | None = None

    def __post_init__(self) -> None:
        a = self.rgba
        if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 4:
            raise InputError(f"region pixels must be an (H, W, 4) uint8 array (got {_describe(a)})")
        check_size(a.shape[1], a.shape[0], max_pixels=max(a.shape[0] * a.shape[1], 1))
        if self.mask is not None:
            m = self.mask
            if not isinstance(m, np.ndarray) or m.dtype != np.uint8 or m.ndim != 2:
                raise InputError(f"the selection mask must be an (H, W) uint8 array (got {_describe(m)})")
            if m.shape != a.shape[:2]:
                raise InputError(
                    f"the selection mask is {m.shape[1]} × {m.shape[0]} pixels but the image is "
                    f"{a.shape[1]} × {a.shape[0]}; they must be the same size"
                )

    @property
    def width(self) -> int:
        return int(self.rgba.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgba.shape[0])

    @property
    def rgb(self) -> np.ndarray:
        """(H, W, 3) view of the colour channels."""
        return self.rgba[..., :3]

    # ------------------------------------------------------------------------------------------------
    # constructors

    @classmethod
    def from_array(
        cls, image: np.ndarray, mask: np.ndarray | None = None, *, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> Region:
        """From an (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA uint8 array (copied). ``mask`` may be
        uint8 (H, W) or boolean (True = selected)."""
        image = np.asarray(image)
        if image.dtype != np.uint8:
            raise InputError(f"region pixels must be uint8 (got {image.dtype})")
        if image.ndim == 2:
            image = image[..., None]
        if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
            raise InputError(f"region pixels must be (H, W), (H, W, 3) or (H, W, 4) (got shape {image.shape})")
        check_size(image.shape[1], image.shape[0], max_pixels)
        h, w, c = image.shape
        rgba = np.empty((h, w, 4), np.uint8)
        rgba[..., :3] = image[..., :3] if c >= 3 else image
        rgba[..., 3] = image[..., 3] if c == 4 else 255
        return cls(rgba, _as_mask(mask, (h, w)))

    @classmethod
    def from_rgba_bytes(
        cls,
        data: bytes | bytearray | memoryview,
        width: int,
        height: int,
        stride: int | None = None,
        channel_order: str = "RGBA",
        mask_bytes: bytes | bytearray | memoryview | None = None,
        mask_stride: int | None = None,
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> Region:
        """From raw 8-bit rows as a host sends them. ``stride`` is the byte distance between row starts
        (default ``width * 4``) and ``data`` must hold exactly ``stride * height`` bytes; the mask is one
        byte per pixel with its own stride (default ``width``)."""
        check_size(width, height, max_pixels)
        width, height = int(width), int(height)
        order = str(channel_order).upper()
        if order not in CHANNEL_ORDERS:
            raise InputError(f"unknown channel order {channel_order!r}; expected one of {', '.join(CHANNEL_ORDERS)}")
        rows = _rows(data, width * 4, height, stride, "pixel data")
        px = rows.reshape(height, width, 4)
        rgba = px[..., [2, 1, 0, 3]] if order == "BGRA" else px.copy()
        mask = None
        if mask_bytes is not None:
            mask = _rows(mask_bytes, width, height, mask_stride, "selection mask").copy()
        return cls(np.ascontiguousarray(rgba), mask)

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike,
        mask_path: str | os.PathLike | None = None,
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> Region:
        """From an image file in any mode Pillow reads (converted to RGBA, EXIF orientation applied) and
        an optional mask file of the same size (read as greyscale: white = selected)."""
        im = _open_image(path, max_pixels)
        rgba = _to_rgba(im, path)
        mask = None
        if mask_path is not None:
            mask = read_mask_file(mask_path, (rgba.shape[0], rgba.shape[1]), max_pixels=max_pixels,
                                  image_name=os.fspath(path))
        return cls(rgba, mask, rgb_icc_profile(im))

    def with_mask(self, mask: np.ndarray | str | os.PathLike | None, *,
                  max_pixels: int = DEFAULT_MAX_PIXELS) -> Region:
        """This region's pixels with another selection: a uint8 or boolean (H, W) array, a mask image
        file (greyscale, white = selected) or None for everything."""
        if mask is None:
            return Region(self.rgba, icc_profile=self.icc_profile)
        if isinstance(mask, (str, os.PathLike)):
            return Region(self.rgba, read_mask_file(mask, (self.height, self.width), max_pixels=max_pixels),
                          self.icc_profile)
        return Region(self.rgba, _as_mask(mask, (self.height, self.width)), self.icc_profile)

    # ------------------------------------------------------------------------------------------------

    def to_bytes(self, channel_order: str = "RGBA") -> bytes:
        """Tightly packed rows in the host's channel order."""
        return encode_rgba(self.rgba, channel_order)


def read_mask_file(path: str | os.PathLike, shape: tuple[int, int], *, max_pixels: int = DEFAULT_MAX_PIXELS,
                   image_name: str | None = None) -> np.ndarray:
    """A selection mask image read as greyscale (white = selected): a writable (H, W) uint8 array of
    ``shape``, or an ``InputError`` naming the file."""
    mask = _to_grey(_open_image(path, max_pixels), path)
    if mask.shape != tuple(shape):
        image = f"image {image_name!r}" if image_name else "image"
        raise InputError(
            f"the mask {os.fspath(path)!r} is {mask.shape[1]} × {mask.shape[0]} pixels but the "
            f"{image} is {shape[1]} × {shape[0]}; they must be the same size"
        )
    return mask


def rgb_icc_profile(im: Image.Image) -> bytes | None:
    """The image's embedded ICC profile when it describes RGB data (a CMYK or grey profile would be
    wrong for the RGB pixels written back), else None."""
    icc = im.info.get("icc_profile")
    # bytes 16-19 of an ICC header name the data colour space
    return bytes(icc) if isinstance(icc, (bytes, bytearray)) and icc[16:20] == b"RGB " else None


def encode_rgba(rgba: np.ndarray, channel_order: str = "RGBA") -> bytes:
    """(H, W, 4) uint8 → tightly packed bytes in ``channel_order`` ('RGBA' or 'BGRA')."""
    order = str(channel_order).upper()
    if order not in CHANNEL_ORDERS:
        raise InputError(f"unknown channel order {channel_order!r}; expected one of {', '.join(CHANNEL_ORDERS)}")
    if order == "BGRA":
        rgba = rgba[..., [2, 1, 0, 3]]
    return np.ascontiguousarray(rgba, dtype=np.uint8).tobytes()


# ----------------------------------------------------------------------------------------------------
# helpers


def _describe(a: object) -> str:
    if isinstance(a, np.ndarray):
        return f"{a.dtype} array of shape {a.shape}"
    return type(a).__name__


def _as_mask(mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.dtype == bool:
        m = m.astype(np.uint8) * 255
    if m.dtype != np.uint8 or m.ndim != 2:
        raise InputError(f"the selection mask must be an (H, W) uint8 or boolean array (got {_describe(m)})")
    if m.shape != shape:
        raise InputError(
            f"the selection mask is {m.shape[1]} × {m.shape[0]} pixels but the image is "
            f"{shape[1]} × {shape[0]}; they must be the same size"
        )
    return m.copy()


def _rows(data, row_bytes: int, height: int, stride: int | None, what: str) -> np.ndarray:
    """View ``data`` as (height, row_bytes) uint8, dropping per-row padding; checks the length exactly."""
    try:
        buf = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    except TypeError:
        raise InputError(f"the {what} must be bytes-like (got {type(data).__name__})") from None
    if stride is None:
        stride = row_bytes
    if isinstance(stride, bool) or int(stride) != stride:
        raise InputError(f"the {what} stride must be an integer (got {stride!r})")
    stride = int(stride)
    if stride < row_bytes:
        raise InputError(f"the {what} stride is {stride} bytes, less than one row ({row_bytes} bytes)")
    expected = stride * height
    if buf.size != expected:
        raise InputError(
            f"the {what} has {buf.size} bytes, expected exactly {expected} "
            f"({height} rows × {stride} bytes per row)"
        )
    return buf.reshape(height, stride)[:, :row_bytes]


def _open_image(path: str | os.PathLike, max_pixels: int) -> Image.Image:
    """Open and fully decode ``path``; every failure becomes an ``InputError`` naming the file."""
    name = os.fspath(path)
    p = Path(name)
    if not p.exists():
        raise InputError(f"image file not found: {name!r}")
    if not p.is_file():
        raise InputError(f"not an image file: {name!r} is a directory or special file")
    try:
        with _PIL_LIMIT_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            old = Image.MAX_IMAGE_PIXELS
            # Pillow warns above its limit and refuses above twice the limit; both mean "too large" here.
            Image.MAX_IMAGE_PIXELS = max_pixels
            try:
                im = Image.open(name)
                # Check before decoding so a bomb never allocates its pixels.
                check_size(im.size[0], im.size[1], max_pixels, what=f"image {name!r}")
                im.seek(0)
                im.load()
                im = ImageOps.exif_transpose(im)
            finally:
                Image.MAX_IMAGE_PIXELS = old
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(
            f"the image {name!r} is too large: it claims more than {pixel_count(max_pixels)} (the limit) "
            f"and was not decoded"
        ) from None
    except Image.UnidentifiedImageError:
        raise InputError(f"{name!r} is not an image file Pillow can read") from None
    except MemoryError:
        raise InputError(f"not enough memory to decode the image {name!r}") from None
    except Exception as e:  # noqa: BLE001 - Pillow's decoders raise many types for broken files
        raise InputError(f"cannot read the image {name!r}: it is damaged or truncated ({e})") from None
    return im


def _to_rgba(im: Image.Image, path: str | os.PathLike) -> np.ndarray:
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        grey = _high_depth_to_uint8(im)
        return np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    try:
        if im.mode == "RGBA":
            out = im
        elif im.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
            out = im.convert("RGB").convert("RGBA")
        else:
            out = im.convert("RGBA")
        # np.array, not asarray: Pillow's buffer is read-only and callers (and torch) expect to own the pixels
        arr = np.array(out, dtype=np.uint8)
    except (ValueError, OSError) as e:
        raise InputError(f"cannot convert the image {os.fspath(path)!r} (mode {im.mode}) to RGBA: {e}") from None
    return arr


def _to_grey(im: Image.Image, path: str | os.PathLike) -> np.ndarray:
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return _high_depth_to_uint8(im)
    try:
        if im.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
            im = im.convert("RGB")
        return np.array(im.convert("L"), dtype=np.uint8)  # a writable copy (see _to_rgba)
    except (ValueError, OSError) as e:
        raise InputError(f"cannot read the mask {os.fspath(path)!r} (mode {im.mode}) as greyscale: {e}") from None


def _high_depth_to_uint8(im: Image.Image) -> np.ndarray:
    """16-bit / 32-bit integer / float greyscale → uint8, scaled rather than clipped."""
    a = np.asarray(im).astype(np.float64)
    if im.mode == "F":
        top = 1.0 if a.size and np.nanmax(a) <= 1.0 else 255.0
    elif im.mode.startswith("I;16") or (a.size and a.max() > 255):
        top = 65535.0
    else:
        top = 255.0
    a = np.nan_to_num(a, nan=0.0) * (255.0 / top)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)
