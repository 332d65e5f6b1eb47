"""Pixels in and out of GIMP: the region to edit and the layer that receives the result.

The region follows the rule Krita's plug-in follows (``anycost_client.regions.region_rect``): the
selection's bounds grown by ``DEFAULT_PADDING`` for context around the face, clipped to the image, with
the selection's coverage as the mask so only selected pixels change; without a selection, the layer's
part of the image. Rects are in image coordinates; a layer's pixels are read at its offsets.

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

from anycost_client.regions import (  # noqa: E402
    FormatError,
    Rect,
    Region,
    mask_or_none,
    region_rect,
    result_layer_pixels,
)

PIXEL_FORMAT = "R'G'B'A u8"
MASK_FORMAT = "Y u8"


class CanvasError(Exception):
    """The image or drawable cannot be edited as asked; the message says why."""


@dataclass
class LayerRegion(Region):
    """A client ``Region`` read from one GIMP layer, with the image and the layer the result goes back to
    (always set by ``read_region``)."""

    image: Gimp.Image | None = None
    drawable: Gimp.Drawable | None = None


def _single_layer(image: Gimp.Image, drawables: list) -> Gimp.Drawable:
    if len(drawables) != 1:
        raise CanvasError(f"select exactly one layer (got {len(drawables)})")
    drawable = drawables[0]
    if not drawable.is_layer():
        raise CanvasError("select a layer: channels and layer masks cannot be edited")
    if image.get_base_type() != Gimp.ImageBaseType.RGB:
        raise CanvasError("the image must be RGB (Image > Mode > RGB)")
    return drawable


def _rectangle(rect: Rect, dx: int = 0, dy: int = 0) -> Gegl.Rectangle:
    return Gegl.Rectangle.new(rect.x - dx, rect.y - dy, rect.width, rect.height)


def read_region(image: Gimp.Image, drawables: list) -> LayerRegion:
    """The region to edit on the drawable (``region_rect``), its pixels and the selection's coverage over
    it as the mask (None without a selection, or where it covers the whole rect)."""
    drawable = _single_layer(image, drawables)
    touches, _, _, w, h = drawable.mask_intersect()  # the selection on the layer, or the whole layer
    if not touches or w <= 0 or h <= 0:
        raise CanvasError("the selection does not touch the selected layer")
    _, off_x, off_y = drawable.get_offsets()
    layer = Rect(off_x, off_y, drawable.get_width(), drawable.get_height())
    canvas = Rect(0, 0, image.get_width(), image.get_height())
    selection = None
    if not Gimp.Selection.is_empty(image):
        _, _, x1, y1, x2, y2 = Gimp.Selection.bounds(image)
        selection = Rect(x1, y1, x2 - x1, y2 - y1)
    try:
        rect = region_rect(selection, layer, canvas)
        # the layer's pixels in its own coordinates; transparent where the rect reaches past the layer
        rgba = bytes(drawable.get_buffer().get(_rectangle(rect, off_x, off_y), 1.0, PIXEL_FORMAT,
                                               Gegl.AbyssPolicy.NONE))
        mask = None
        if selection is not None:
            coverage = bytes(image.get_selection().get_buffer().get(_rectangle(rect), 1.0, MASK_FORMAT,
                                                                    Gegl.AbyssPolicy.NONE))
            mask = mask_or_none(coverage)  # None: everything in the rect is selected
    except FormatError as e:
        raise CanvasError(str(e)) from None
    return LayerRegion(rect, rgba, mask, drawable.get_name(), image=image, drawable=drawable)


def add_result_layer(region: Region, rgba: bytes, name: str) -> Gimp.Layer:
    """The result as a new layer right above the source drawable, at the region's offsets: one undo
    step; the source drawable stays the selected layer. The layer is filled before it enters the image, so
    a failure leaves the image as it was. It is transparent outside the selection and wherever the result
    equals the region's original pixels."""
    image, drawable = region.image, region.drawable
    if len(rgba) != region.width * region.height * 4:
        raise CanvasError(f"the backend returned {len(rgba)} bytes for a {region.width}×{region.height} region")
    rgba = result_layer_pixels(bytes(rgba), region.rgba, region.mask)
    layer = Gimp.Layer.new(image, name, region.width, region.height, Gimp.ImageType.RGBA_IMAGE, 100.0,
                           Gimp.LayerMode.NORMAL)
    try:
        layer.set_offsets(region.rect.x, region.rect.y)
        buf = layer.get_buffer()
        buf.set(Gegl.Rectangle.new(0, 0, region.width, region.height), PIXEL_FORMAT, rgba)
        buf.flush()
    except Exception:
        layer.delete()
        raise
    image.undo_group_start()
    try:
        image.insert_layer(layer, drawable.get_parent(), image.get_item_position(drawable))
        layer.update(0, 0, region.width, region.height)
    finally:
        image.undo_group_end()
    # Inserting made the new layer the selected one. The source stays selected instead, so reopening the
    # dialog or Filters > Repeat edits the face again, not the mostly transparent result layer.
    image.set_selected_layers([drawable])
    Gimp.displays_flush()
    return layer
