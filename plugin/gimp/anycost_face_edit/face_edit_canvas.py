"""Pixels in and out of GIMP: the region to edit and the layer that receives the result.

Pixels always travel as ``R'G'B'A u8`` through GEGL buffers; GIMP converts from and to the
image's own precision (16/32-bit, linear or perceptual). The result layer is transparent wherever the
edit changed nothing (``anycost_client.regions.result_layer_pixels``), so those pixels keep their full
precision.
"""

from __future__ import annotations

from dataclasses import dataclass

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp  # noqa: E402

from anycost_client.regions import FormatError, mask_or_none, result_layer_pixels  # noqa: E402

PIXEL_FORMAT = "R'G'B'A u8"
MASK_FORMAT = "Y u8"


class CanvasError(Exception):
    """The image or drawable cannot be edited as asked; the message says why."""


@dataclass
class Region:
    """The part of one drawable to edit: the selection's bounds on it (or all of it)."""

    image: Gimp.Image
    drawable: Gimp.Drawable
    x: int  # in the drawable's own coordinates
    y: int
    width: int
    height: int
    image_x: int  # the same corner in image coordinates (where the new layer goes)
    image_y: int
    rgba: bytes
    mask: bytes | None  # A8 selection coverage, None when nothing (or everything) is selected

    @property
    def rect(self) -> tuple[int, int, int, int]:
        return self.image_x, self.image_y, self.width, self.height


def _single_layer(image: Gimp.Image, drawables: list) -> Gimp.Drawable:
    if len(drawables) != 1:
        raise CanvasError(f"select exactly one layer (got {len(drawables)})")
    drawable = drawables[0]
    if not drawable.is_layer():
        raise CanvasError("select a layer: channels and layer masks cannot be edited")
    if image.get_base_type() != Gimp.ImageBaseType.RGB:
        raise CanvasError("the image must be RGB (Image > Mode > RGB)")
    return drawable


def read_region(image: Gimp.Image, drawables: list) -> Region:
    """The selection's bounds on the drawable (all of it without a selection), its pixels and the
    selection's coverage as a mask."""
    drawable = _single_layer(image, drawables)
    non_empty, x, y, w, h = drawable.mask_intersect()
    if not non_empty or w <= 0 or h <= 0:
        raise CanvasError("the selection does not touch the selected layer")
    _, off_x, off_y = drawable.get_offsets()
    rect = Gegl.Rectangle.new(x, y, w, h)
    rgba = bytes(drawable.get_buffer().get(rect, 1.0, PIXEL_FORMAT, Gegl.AbyssPolicy.NONE))
    mask = None
    if not Gimp.Selection.is_empty(image):
        sel = image.get_selection().get_buffer()
        coverage = bytes(sel.get(Gegl.Rectangle.new(off_x + x, off_y + y, w, h), 1.0, MASK_FORMAT,
                                 Gegl.AbyssPolicy.NONE))
        try:
            mask = mask_or_none(coverage)  # None: everything in the bounds is selected
        except FormatError as e:
            raise CanvasError(str(e)) from None
    return Region(image, drawable, x, y, w, h, off_x + x, off_y + y, rgba, mask)


def add_result_layer(region: Region, rgba: bytes, name: str) -> Gimp.Layer:
    """The result as a new layer right above the source drawable, at the region's offsets: one undo
    step; the source drawable stays the selected layer. The layer is filled before it enters the image, so
    a failure leaves the image as it was. It is transparent outside the selection and wherever the result
    equals the region's original pixels."""
    if len(rgba) != region.width * region.height * 4:
        raise CanvasError(f"the backend returned {len(rgba)} bytes for a {region.width}×{region.height} region")
    rgba = result_layer_pixels(bytes(rgba), region.rgba, region.mask)
    image = region.image
    layer = Gimp.Layer.new(image, name, region.width, region.height, Gimp.ImageType.RGBA_IMAGE, 100.0,
                           Gimp.LayerMode.NORMAL)
    try:
        layer.set_offsets(region.image_x, region.image_y)
        buf = layer.get_buffer()
        buf.set(Gegl.Rectangle.new(0, 0, region.width, region.height), PIXEL_FORMAT, rgba)
        buf.flush()
    except Exception:
        layer.delete()
        raise
    image.undo_group_start()
    try:
        image.insert_layer(layer, region.drawable.get_parent(), image.get_item_position(region.drawable))
        layer.update(0, 0, region.width, region.height)
    finally:
        image.undo_group_end()
    # Inserting made the new layer the selected one. The source stays selected instead, so reopening the
    # dialog or Filters > Repeat edits the face again, not the mostly transparent result layer.
    image.set_selected_layers([region.drawable])
    Gimp.displays_flush()
    return layer
