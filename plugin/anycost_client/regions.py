"""Regions and pixel formats for host plugins, in pure Python (no numpy: hosts' Pythons lack it).

The wire carries RGBA8, straight alpha, row-major (``protocol.FRAME_FORMATS``). Hosts store other
things; these helpers convert both ways:

- channel order: integer RGBA in Krita comes as B,G,R,A; float RGBA as R,G,B,A;
- depth: ``U8``, ``U16`` (exact: 8-bit ``v`` ↔ 16-bit ``v × 257``), ``F16``, ``F32``;
- data in linear light (a linear profile such as Krita's default ``…-g10.icc`` for 16-bit and float
  images) is encoded to sRGB for the wire and decoded back; alpha is never gamma-encoded;
- bytes in the machine's native order (what hosts hand out).

And the geometry: one rule for the rect every host edits (``region_rect``: the selection's bounds grown
by ``DEFAULT_PADDING`` around the face, clipped to the image); the selection's coverage as an ``A8``
mask; pasting a preview's box into the region.

Every conversion is a few C-level passes (slicing, ``bytes.translate``, ``map`` over a table,
``bisect``), so a 1024² region converts in well under a second. Runs on Python 3.8 (Krita 5.0–5.1).
"""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_left
from dataclasses import dataclass
from functools import lru_cache, partial

__all__ = [
    "DEFAULT_PADDING",
    "DEPTHS",
    "FormatError",
    "PixelFormat",
    "Rect",
    "Region",
    "clip_rect",
    "edit_rect",
    "from_rgba8",
    "krita_pixel_format",
    "mask_or_none",
    "crop_box",
    "paste_box",
    "region_rect",
    "result_layer_pixels",
    "swap_red_blue",
    "to_rgba8",
]

# Context around the selected face, × the selection's longer side. One value for every host: the same
# selection must give the same rect, hence the same edit, in Krita and GIMP.
DEFAULT_PADDING = 0.25
DEPTHS = {"U8": 1, "U16": 2, "F16": 2, "F32": 4}  # bytes per channel
_SELECTED = bytes([0] + [255] * 255)  # A8 coverage → 0xFF where anything is selected


class FormatError(ValueError):
    """Pixels the plugin cannot convert; the message says what the user can do."""


@dataclass(frozen=True)
class PixelFormat:
    """How a host stores one RGBA pixel."""

    depth: str = "U8"  # U8, U16, F16, F32
    order: str = "RGBA"  # RGBA or BGRA
    linear: bool = False  # values in linear light (a linear profile): sRGB-encoded for the wire

    def __post_init__(self) -> None:
        if self.depth not in DEPTHS:
            raise FormatError(f"unsupported channel depth {self.depth!r} (supported: {', '.join(DEPTHS)})")
        if self.order not in ("RGBA", "BGRA"):
            raise FormatError(f"unsupported channel order {self.order!r}")

    @property
    def bytes_per_pixel(self) -> int:
        return 4 * DEPTHS[self.depth]

    @property
    def is_float(self) -> bool:
        return self.depth.startswith("F")


def krita_pixel_format(color_model: str, color_depth: str, profile: str = "") -> PixelFormat:
    """The format of Krita's ``pixelData`` for a layer's colour space (``Node.colorModel()``,
    ``colorDepth()``, ``colorProfile()``). Only RGBA can be edited; others get a message."""
    if color_model != "RGBA":
        names = {"GRAYA": "greyscale", "CMYKA": "CMYK", "LABA": "L*a*b*", "XYZA": "XYZ", "YCbCrA": "YCbCr"}
        kind = names.get(color_model, color_model or "unknown")
        raise FormatError(f"the layer is {kind}; Anycost Face Edit works on RGB layers. Convert the layer or "
                          "image to RGB/Alpha (Image ▸ Convert Image Color Space) and try again")
    if color_depth not in DEPTHS:
        raise FormatError(f"the layer's channel depth {color_depth!r} is not supported; convert the image to "
                          "8-bit, 16-bit or 32-bit float RGB/Alpha")
    is_float = color_depth.startswith("F")
    return PixelFormat(color_depth, "RGBA" if is_float else "BGRA", _is_linear_profile(profile))


def _is_linear_profile(profile: str) -> bool:
    p = profile.lower()
    return any(tag in p for tag in ("g10", "linear", "scrgb", "gamma 1.0", "gamma1.0"))


# ------------------------------------------------------------------------------------ geometry
@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    width: int
    height: int

    @property
    def empty(self) -> bool:
        return self.width <= 0 or self.height <= 0

    @property
    def right(self) -> int:
        return self.x + self.width

    @property
    def bottom(self) -> int:
        return self.y + self.height

    def as_tuple(self) -> tuple[int, int, int, int]:
        return self.x, self.y, self.width, self.height


def clip_rect(rect: Rect, bounds: Rect) -> Rect:
    x0, y0 = max(rect.x, bounds.x), max(rect.y, bounds.y)
    x1, y1 = min(rect.right, bounds.right), min(rect.bottom, bounds.bottom)
    return Rect(x0, y0, max(0, x1 - x0), max(0, y1 - y0))


def edit_rect(selection: Rect | None, bounds: Rect, padding: float = 0.0, *, min_side: int = 16) -> Rect:
    """The region to edit: the selection's bounds (everything in ``bounds`` without one), grown on
    every side by ``padding`` × its longer side for context around the face, clipped to ``bounds``."""
    if padding < 0:
        raise ValueError("padding must not be negative")
    base = bounds if selection is None or selection.empty else clip_rect(selection, bounds)
    if base.empty:
        raise FormatError("the selection does not overlap the layer; select the face on this layer")
    pad = int(round(padding * max(base.width, base.height)))
    grown = Rect(base.x - pad, base.y - pad, base.width + 2 * pad, base.height + 2 * pad)
    out = clip_rect(grown, bounds)
    if out.width < min_side or out.height < min_side:
        raise FormatError(f"the region is {out.width}×{out.height} pixels; select at least "
                          f"{min_side}×{min_side} pixels around the face")
    return out


def region_rect(selection: Rect | None, layer: Rect, canvas: Rect, padding: float = DEFAULT_PADDING) -> Rect:
    """The rect a host edits, in image coordinates; the one rule of every host. With a selection: its bounds
    grown by ``padding`` (``edit_rect``) and clipped to the ``canvas``; the host sends the selection's
    coverage as the mask, so only selected pixels change, and the layer reads as transparent where the
    rect reaches past it. Without one: the ``layer``'s part of the canvas."""
    if selection is not None and not selection.empty:
        return edit_rect(selection, canvas, padding)
    on_canvas = clip_rect(layer, canvas)
    if on_canvas.empty:
        raise FormatError("the layer has no pixels on the image; select the layer with the face")
    return edit_rect(None, on_canvas)


def mask_or_none(mask: bytes | None) -> bytes | None:
    """An ``A8`` selection mask, or None when it selects everything (no mask needed). A mask that
    selects nothing is an error: there would be nothing to edit."""
    if mask is None:
        return None
    if not mask.strip(b"\xff"):
        return None
    if not mask.strip(b"\x00"):
        raise FormatError("nothing is selected inside the region; select the face (or select nothing to "
                          "edit the whole layer)")
    return bytes(mask)


@dataclass
class Region:
    """The part of a layer being edited, as the wire wants it. Host-neutral: hosts fill it in."""

    rect: Rect  # in image coordinates: where the new layer's pixels go
    rgba: bytes  # RGBA8 straight alpha, rect.width × rect.height × 4
    mask: bytes | None = None  # A8 selection coverage of the rect, None: all selected
    layer_name: str = ""
    fmt: PixelFormat = PixelFormat()

    def __post_init__(self) -> None:
        n = self.rect.width * self.rect.height
        if len(self.rgba) != 4 * n:
            raise ValueError(f"region pixels: {len(self.rgba)} bytes, expected {4 * n}")
        if self.mask is not None and len(self.mask) != n:
            raise ValueError(f"region mask: {len(self.mask)} bytes, expected {n}")

    @property
    def width(self) -> int:
        return self.rect.width

    @property
    def height(self) -> int:
        return self.rect.height


def paste_box(base: bytearray, width: int, box: tuple[int, int, int, int] | None, pixels: bytes,
              bpp: int = 4) -> bytearray:
    """Write ``pixels`` (the box's rows, ``bpp`` bytes per pixel) into ``base`` (``width`` pixels wide) at
    ``box`` = (x, y, w, h), in place. Returns ``base``."""
    if box is None:
        return base
    x, y, w, h = box
    height = len(base) // (width * bpp)
    if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > width or y + h > height:
        raise ValueError(f"box {box} is outside the {width}×{height} region")
    row = w * bpp
    if len(pixels) != row * h:
        raise ValueError(f"box pixels: {len(pixels)} bytes, expected {row * h}")
    stride = width * bpp
    mv = memoryview(pixels)
    for r in range(h):
        start = (y + r) * stride + x * bpp
        base[start:start + row] = mv[r * row:(r + 1) * row]
    return base


def crop_box(data: bytes | bytearray, width: int, box: tuple[int, int, int, int], bpp: int = 4) -> bytes:
    """The rows of ``box`` = (x, y, w, h) out of ``data`` (``width`` pixels wide, ``bpp`` bytes per pixel)."""
    x, y, w, h = box
    height = len(data) // (width * bpp)
    if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > width or y + h > height:
        raise ValueError(f"box {box} is outside the {width}×{height} region")
    mv, stride, row = memoryview(data), width * bpp, w * bpp
    return b"".join(mv[(y + r) * stride + x * bpp:(y + r) * stride + x * bpp + row] for r in range(h))


def result_layer_pixels(result: bytes | bytearray, original: bytes | bytearray, mask: bytes | None = None) -> bytes:
    """The pixels of a layer laid over the source: ``result`` (RGBA8) with alpha 0 where it equals
    ``original`` byte for byte or where the selection ``mask`` (A8; None: all selected) is 0.

    The wire is 8-bit: an opaque copy of pixels the edit never touched would round them on a 16-bit or
    float layer and lay semi-transparent ones over themselves a second time. Transparent there, the
    layer lets the source show through at its own precision. Colour bytes are kept."""
    if len(result) != len(original) or len(result) % 4:
        raise ValueError(f"result ({len(result)} bytes) and original ({len(original)} bytes) must be the same "
                         "whole number of RGBA8 pixels")
    if mask is not None and 4 * len(mask) != len(result):
        raise ValueError(f"the mask has {len(mask)} pixels, the region {len(result) // 4}")
    # Runs per preview, so no loop over pixels: the pixels as one big little-endian integer, 32 bits each.
    # XOR marks differing bits; folding each pixel's 32 bits down onto its lowest (shifts adding up to 31
    # never reach the next pixel's) leaves bit 0 set where the pixel changed; that bit becomes 0xFF in
    # the alpha byte, and alpha keeps its value only there (and where the mask selects something).
    n = len(result)
    pixels = int.from_bytes(bytes(result), "little")
    diff = pixels ^ int.from_bytes(bytes(original), "little")
    for shift in (16, 8, 4, 2, 1):
        diff |= diff >> shift
    keep = (diff & int.from_bytes(b"\x01\0\0\0" * (n // 4), "little")) * 0xFF << 24
    if mask is not None:
        selected = bytearray(n)
        selected[3::4] = bytes(mask).translate(_SELECTED)
        keep &= int.from_bytes(selected, "little")
    colour = int.from_bytes(b"\xff\xff\xff\0" * (n // 4), "little")
    return (pixels & (colour | keep)).to_bytes(n, "little")


# ------------------------------------------------------------------------------------ conversions
def swap_red_blue(data: bytes | bytearray | memoryview) -> bytes:
    """RGBA ↔ BGRA for 8-bit pixels."""
    out = bytearray(data)
    out[0::4] = data[2::4]
    out[2::4] = data[0::4]
    return bytes(out)


@lru_cache(maxsize=2)
def _u16_to_u8(linear: bool) -> bytes:
    if linear:
        return bytes(min(255, int(_srgb_encode(v / 65535) * 255 + 0.5)) for v in range(65536))
    return bytes((v + 128) // 257 for v in range(65536))  # round(v / 257), exact for v = k × 257


@lru_cache(maxsize=1)
def _u8_to_u16_linear() -> list[int]:
    return [int(_srgb_decode(i / 255) * 65535 + 0.5) for i in range(256)]


@lru_cache(maxsize=2)
def _u8_linear_tables() -> tuple[bytes, bytes]:
    """8-bit linear ↔ 8-bit sRGB (lossy near black; 8-bit linear images are rare)."""
    to_srgb = bytes(min(255, int(_srgb_encode(i / 255) * 255 + 0.5)) for i in range(256))
    to_linear = bytes(min(255, int(_srgb_decode(i / 255) * 255 + 0.5)) for i in range(256))
    return to_srgb, to_linear


def _colour_only(data: bytes, table: bytes) -> bytes:
    """Map the three colour channels of 8-bit 4-channel pixels through ``table``; alpha stays."""
    out = bytearray(data.translate(table))
    out[3::4] = data[3::4]
    return bytes(out)


def _srgb_encode(v: float) -> float:
    return 12.92 * v if v <= 0.0031308 else 1.055 * v ** (1 / 2.4) - 0.055


def _srgb_decode(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def _next_below(x: float) -> float:
    """The largest double below the positive finite ``x`` (``math.nextafter(x, -inf)``, which needs 3.9)."""
    bits = struct.unpack("<q", struct.pack("<d", x))[0]
    return struct.unpack("<d", struct.pack("<q", bits - 1))[0]


@lru_cache(maxsize=2)
def _float_thresholds(linear: bool) -> list[float]:
    """Just below the float value where 8-bit code i becomes i+1 (i = 0..254): ``bisect_left`` then rounds
    half up and clamps."""
    mids = [(i + 0.5) / 255 for i in range(255)]
    return [_next_below(_srgb_decode(m) if linear else m) for m in mids]


@lru_cache(maxsize=2)
def _u8_to_float(linear: bool) -> list[float]:
    return [_srgb_decode(i / 255) if linear else i / 255 for i in range(256)]


@lru_cache(maxsize=2)
def _f16_to_u8(linear: bool) -> bytes:
    """Every half float's bit pattern (native order) → its 8-bit code, the same as ``_float_to_u8``."""
    halves = struct.unpack("=65536e", array("H", range(65536)).tobytes())
    return bytes(map(partial(bisect_left, _float_thresholds(linear)), halves))


def _floats(data: bytes | bytearray | memoryview) -> list[float]:
    a = array("f")
    a.frombytes(bytes(data))
    return a.tolist()


def _float_to_u8(values: list[float], linear: bool) -> bytes:
    # bisect_left maps NaN to 0 (every comparison with NaN is false), ±inf to 255/0
    colour = partial(bisect_left, _float_thresholds(linear))
    alpha = partial(bisect_left, _float_thresholds(False))
    out = bytearray(len(values))
    for c in range(3):
        out[c::4] = bytes(map(colour, values[c::4]))
    out[3::4] = bytes(map(alpha, values[3::4]))
    return bytes(out)


@lru_cache(maxsize=8)
def _byte_planes(depth: str, linear: bool) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """For an 8-bit code → a channel of ``depth`` (native byte order): one ``bytes.translate`` table per
    byte of the channel, for colour and for alpha (never gamma-coded)."""
    def encode(values: list[float] | list[int]) -> list[bytes]:
        if depth == "U16":
            return [array("H", [v]).tobytes() for v in values]
        return [struct.pack("=e" if depth == "F16" else "=f", v) for v in values]

    def planes(encoded: list[bytes]) -> tuple[bytes, ...]:
        return tuple(bytes(e[k] for e in encoded) for k in range(DEPTHS[depth]))

    colour: list[int] | list[float]
    alpha: list[int] | list[float]
    if depth == "U16":
        colour = _u8_to_u16_linear() if linear else [257 * i for i in range(256)]
        alpha = [257 * i for i in range(256)]
    else:
        colour, alpha = _u8_to_float(linear), _u8_to_float(False)
    return planes(encode(colour)), planes(encode(alpha))


def _u8_to_wide(src: bytes, depth: str, linear: bool) -> bytes:
    """RGBA8 → 4 channels of ``depth``: each output byte is a table lookup of its 8-bit code, so the whole
    conversion is ``bytes.translate`` and slice assignments."""
    colour, alpha = _byte_planes(depth, linear)
    b = DEPTHS[depth]
    out = bytearray(len(src) * b)
    a = src[3::4]
    for k in range(b):
        out[k::b] = src.translate(colour[k])
        out[3 * b + k::4 * b] = a.translate(alpha[k])
    return bytes(out)


def to_rgba8(data: bytes | bytearray | memoryview, width: int, height: int, fmt: PixelFormat) -> bytes:
    """A host's pixels (``fmt``) → the wire's RGBA8."""
    n = width * height
    if len(data) != n * fmt.bytes_per_pixel:
        raise FormatError(f"expected {n * fmt.bytes_per_pixel} bytes of {fmt.depth} pixels for {width}×{height}, "
                          f"got {len(data)}")
    if fmt.depth == "U8":
        out = _colour_only(bytes(data), _u8_linear_tables()[0]) if fmt.linear else bytes(data)
    elif fmt.depth in ("U16", "F16"):  # 65536-entry tables indexed by the 16-bit pattern
        table = _u16_to_u8 if fmt.depth == "U16" else _f16_to_u8
        a = array("H")
        a.frombytes(bytes(data))
        out = bytes(map(table(fmt.linear).__getitem__, a))
        if fmt.linear:  # alpha is never gamma-coded
            mixed = bytearray(out)
            mixed[3::4] = bytes(map(table(False).__getitem__, a[3::4]))
            out = bytes(mixed)
    else:
        out = _float_to_u8(_floats(data), fmt.linear)
    return swap_red_blue(out) if fmt.order == "BGRA" else out


def from_rgba8(rgba: bytes | bytearray | memoryview, width: int, height: int, fmt: PixelFormat) -> bytes:
    """The wire's RGBA8 → a host's pixels (``fmt``)."""
    n = width * height
    if len(rgba) != 4 * n:
        raise FormatError(f"expected {4 * n} bytes of RGBA8 for {width}×{height}, got {len(rgba)}")
    src = swap_red_blue(rgba) if fmt.order == "BGRA" else bytes(rgba)
    if fmt.depth == "U8":
        return _colour_only(src, _u8_linear_tables()[1]) if fmt.linear else src
    if fmt.depth == "U16" and not fmt.linear:
        out = bytearray(2 * len(src))
        out[0::2] = src  # v × 257: both bytes equal v, in either byte order
        out[1::2] = src
        return bytes(out)
    return _u8_to_wide(src, fmt.depth, fmt.linear)

