"""A small fake of the part of GIMP 3's Python API (``gi.repository.Gimp`` and ``Gegl``) through which the
GIMP plug-in reads a region, so that its canvas module runs outside GIMP (not a test module).

It keeps what the plug-in relies on and what the real GIMP does (the real one is driven in
tests/test_gimp_e2e.py): a layer's pixels in the layer's own coordinates, placed at its offsets, read as
transparent outside it (``Gegl.AbyssPolicy.NONE``); the selection an image-sized ``Y u8`` channel;
``Gimp.Selection.bounds`` in image coordinates; ``mask_intersect`` the selection's bounds on the layer in
the layer's coordinates, the whole layer without a selection. Only ``R'G'B'A u8`` and ``Y u8`` are read.
"""

from __future__ import annotations

import types
from enum import Enum


class AbyssPolicy(Enum):
    NONE = 0
    CLAMP = 1


class ImageBaseType(Enum):
    RGB = 0
    GRAY = 1


class Rectangle:
    def __init__(self, x: int, y: int, width: int, height: int):
        self.x, self.y, self.width, self.height = x, y, width, height

    @staticmethod
    def new(x: int, y: int, width: int, height: int) -> Rectangle:
        return Rectangle(x, y, width, height)


class Buffer:
    """A GEGL buffer of ``width`` × ``height`` pixels of one format."""

    def __init__(self, width: int, height: int, fmt: str, data: bytearray):
        self.width, self.height, self.fmt, self.data = width, height, fmt, data
        self.bpp = {"R'G'B'A u8": 4, "Y u8": 1}[fmt]
        assert len(data) == width * height * self.bpp

    def get(self, rect: Rectangle, scale: float, fmt: str, abyss: AbyssPolicy) -> bytes:
        assert scale == 1.0 and fmt == self.fmt and abyss == AbyssPolicy.NONE, (scale, fmt, abyss)
        bpp, out = self.bpp, bytearray(rect.width * rect.height * self.bpp)
        x0, x1 = max(rect.x, 0), min(rect.x + rect.width, self.width)
        for r in range(rect.height):
            y = rect.y + r
            if 0 <= y < self.height and x0 < x1:
                src = (y * self.width + x0) * bpp
                dst = (r * rect.width + x0 - rect.x) * bpp
                out[dst:dst + (x1 - x0) * bpp] = self.data[src:src + (x1 - x0) * bpp]
        return bytes(out)


class FakeSelection:
    def __init__(self, image: FakeImage):
        self.mask = bytearray(image.width * image.height)
        self.image = image

    def get_buffer(self) -> Buffer:
        return Buffer(self.image.width, self.image.height, "Y u8", self.mask)


class FakeLayer:
    def __init__(self, image: FakeImage, name: str, width: int, height: int, offsets: tuple[int, int] = (0, 0),
                 rgba: bytes | None = None):
        self.image, self.name, self.width, self.height, self.offsets = image, name, width, height, offsets
        self.rgba = bytearray(rgba if rgba is not None else bytes(4 * width * height))

    def get_name(self) -> str:
        return self.name

    def is_layer(self) -> bool:
        return True

    def get_offsets(self) -> tuple[bool, int, int]:
        return (True, *self.offsets)

    def get_width(self) -> int:
        return self.width

    def get_height(self) -> int:
        return self.height

    def get_buffer(self) -> Buffer:
        return Buffer(self.width, self.height, "R'G'B'A u8", self.rgba)

    def mask_intersect(self) -> tuple[bool, int, int, int, int]:
        if Selection.is_empty(self.image):
            return True, 0, 0, self.width, self.height
        _, _, x1, y1, x2, y2 = Selection.bounds(self.image)
        ox, oy = self.offsets
        x, y = max(x1 - ox, 0), max(y1 - oy, 0)
        w, h = min(x2 - ox, self.width) - x, min(y2 - oy, self.height) - y
        return (w > 0 and h > 0), x, y, max(w, 0), max(h, 0)


class FakeImage:
    def __init__(self, width: int, height: int, base_type: ImageBaseType = ImageBaseType.RGB):
        self.width, self.height, self.base_type = width, height, base_type
        self.selection = FakeSelection(self)

    def get_width(self) -> int:
        return self.width

    def get_height(self) -> int:
        return self.height

    def get_base_type(self) -> ImageBaseType:
        return self.base_type

    def get_selection(self) -> FakeSelection:
        return self.selection

    def select(self, x: int, y: int, w: int, h: int, value: int = 255) -> None:
        """Add a rectangle of ``value`` coverage to the selection (clipped to the image)."""
        for yy in range(max(y, 0), min(y + h, self.height)):
            for xx in range(max(x, 0), min(x + w, self.width)):
                self.selection.mask[yy * self.width + xx] = value


class Selection:
    @staticmethod
    def is_empty(image: FakeImage) -> bool:
        return not any(image.selection.mask)

    @staticmethod
    def bounds(image: FakeImage) -> tuple[bool, bool, int, int, int, int]:
        """(success, non-empty, x1, y1, x2, y2) in image coordinates; the whole image when empty."""
        w = image.width
        hits = [i for i, v in enumerate(image.selection.mask) if v]
        if not hits:
            return True, False, 0, 0, image.width, image.height
        xs, ys = [i % w for i in hits], [i // w for i in hits]
        return True, True, min(xs), min(ys), max(xs) + 1, max(ys) + 1


def gi_modules() -> dict[str, types.ModuleType]:
    """``gi`` and ``gi.repository`` as the plug-in imports them, for ``sys.modules``."""
    gi = types.ModuleType("gi")
    gi.require_version = lambda _name, _version: None  # type: ignore[attr-defined]
    repository = types.ModuleType("gi.repository")
    repository.Gimp = types.SimpleNamespace(  # type: ignore[attr-defined]
        Image=FakeImage, Drawable=FakeLayer, Layer=FakeLayer, ImageBaseType=ImageBaseType, Selection=Selection)
    repository.Gegl = types.SimpleNamespace(Rectangle=Rectangle, AbyssPolicy=AbyssPolicy)  # type: ignore[attr-defined]
    gi.repository = repository  # type: ignore[attr-defined]
    return {"gi": gi, "gi.repository": repository}
