"""Krita's side of an edit: reading the region, the preview layer, writing the result.

Only Krita's scripting API (``Document``, ``Node``, ``Selection``) goes through here, passed in as
objects, so this module imports neither ``krita`` nor Qt and is exercised with a small fake of that
API in the tests. Facts it relies on (Krita 5.1–6):

- ``pixelData``/``setPixelData`` use image coordinates; integer RGBA comes as B,G,R,A, float RGBA as
  R,G,B,A, in the layer's own depth;
- ``setPixelData`` is not undoable, ``addChildNode`` is: a new layer filled *before* it is added is
  exactly one undo step;
- a layer's ``bounds`` leave out fully transparent pixels, so the result layer's are those of the
  pixels the edit changed;
- the temporary preview layer's own "Add layer" step is undone (the ``edit_undo`` action) instead of
  removing the layer, so neither Apply nor Cancel leaves preview steps in the undo history; the undo
  is checked by its effect and a step that was not the preview's is redone at once.
"""

from __future__ import annotations

import logging
from typing import Any

from anycost_client.edit_controller import PreviewFrame
from anycost_client.regions import (
    DEFAULT_PADDING,
    FormatError,
    PixelFormat,
    Rect,
    Region,
    clip_rect,
    crop_box,
    from_rgba8,
    krita_pixel_format,
    mask_or_none,
    region_rect,
    result_layer_pixels,
    to_rgba8,
)

log = logging.getLogger("anycost.krita")

PREVIEW_LAYER_NAME = "Anycost preview (temporary)"
PAINT_LAYER = "paintlayer"


def _rect(qrect: Any) -> Rect:
    return Rect(int(qrect.x()), int(qrect.y()), int(qrect.width()), int(qrect.height()))


def node_format(node: Any) -> PixelFormat:
    return krita_pixel_format(str(node.colorModel()), str(node.colorDepth()), str(node.colorProfile()))


def read_region(doc: Any, node: Any, padding: float = DEFAULT_PADDING) -> Region:
    """The region to edit on ``node`` (``regions.region_rect``, the rule GIMP's plug-in follows too): the
    selection's bounds grown by ``padding`` (with the selection as mask), or the whole layer without a
    selection; RGBA8 for the wire. ``FormatError`` says what the user has to change."""
    if doc is None:
        raise FormatError("open an image first")
    if node is None or str(node.type()) != PAINT_LAYER:
        kinds = {"grouplayer": "a group layer", "filelayer": "a file layer", "filterlayer": "a filter layer",
                 "filllayer": "a fill layer", "clonelayer": "a clone layer", "vectorlayer": "a vector layer",
                 "transparencymask": "a transparency mask", "filtermask": "a filter mask",
                 "transformmask": "a transform mask", "selectionmask": "a selection mask",
                 "colorizemask": "a colorize mask"}
        kind = "nothing" if node is None else kinds.get(str(node.type()), f"a {node.type()} node")
        raise FormatError(f"the active layer is {kind}; select the paint layer with the face")
    fmt = node_format(node)
    canvas = Rect(0, 0, int(doc.width()), int(doc.height()))
    layer = clip_rect(_rect(node.bounds()), canvas)
    if layer.empty:
        raise FormatError(f"the layer '{node.name()}' is empty; select the layer with the face")
    sel = doc.selection()
    sel_rect = None
    if sel is not None:
        sel_rect = Rect(int(sel.x()), int(sel.y()), int(sel.width()), int(sel.height()))
        if sel_rect.empty:
            sel, sel_rect = None, None
    rect = region_rect(sel_rect, layer, canvas, padding)
    raw = bytes(node.pixelData(rect.x, rect.y, rect.width, rect.height))
    rgba = to_rgba8(raw, rect.width, rect.height, fmt)
    mask = None
    if sel is not None:
        mask = mask_or_none(bytes(sel.pixelData(rect.x, rect.y, rect.width, rect.height)))
    log.info("region %s on layer %r (%s %s), mask: %s", rect.as_tuple(), node.name(), fmt.depth, fmt.order,
             "yes" if mask else "no")
    return Region(rect, rgba, mask, str(node.name()), fmt)


def _contains(outer: tuple[int, int, int, int] | None, inner: tuple[int, int, int, int]) -> bool:
    if outer is None:
        return False
    ox, oy, ow, oh = outer
    ix, iy, iw, ih = inner
    return ox <= ix and oy <= iy and ix + iw <= ox + ow and iy + ih <= oy + oh


class KritaCanvas:
    """Implements ``anycost_client.edit_controller.Canvas`` on a Krita document."""

    def __init__(self, app: Any, doc: Any, source: Any, region: Region):
        self.app = app
        self.doc = doc
        self.source = source
        self.region = region
        self.preview: Any = None
        self.preview_fmt: PixelFormat | None = None
        self.result: Any = None
        self.was_modified = bool(doc.modified())
        self.previews_written = 0

    # ------------------------------------------------------------------ preview
    def _preview_layer(self) -> Any:
        if self.preview is None:
            layer = self.doc.createNode(PREVIEW_LAYER_NAME, PAINT_LAYER)
            self.preview_fmt = node_format(layer)
            layer.setLocked(True)
            parent = self.source.parentNode()
            if parent is None or not parent.addChildNode(layer, self.source):
                raise RuntimeError("Krita refused to add the preview layer")
            self.preview = layer
            self.doc.setActiveNode(self.source)
        return self.preview

    def show_preview(self, frame: PreviewFrame) -> None:
        layer = self._preview_layer()
        fmt = self.preview_fmt
        assert fmt is not None
        rx, ry = self.region.rect.x, self.region.rect.y
        old = frame.previous_box
        if old is not None and not _contains(frame.box, old):
            _, _, w, h = old  # back to transparent: the source shows through
            layer.setPixelData(bytes(w * h * fmt.bytes_per_pixel), rx + old[0], ry + old[1], w, h)
        if frame.box is not None:
            x, y, w, h = frame.box
            layer.setPixelData(from_rgba8(self._changed_only(frame.rgba, frame.box), w, h, fmt), rx + x, ry + y, w, h)
        self.doc.refreshProjection()
        self.previews_written += 1

    def _changed_only(self, rgba: bytes, box: tuple[int, int, int, int]) -> bytes:
        """``rgba`` for ``box`` of the region, transparent where it leaves the source as it is."""
        region = self.region
        if box == (0, 0, region.width, region.height):
            return result_layer_pixels(rgba, region.rgba, region.mask)
        mask = None if region.mask is None else crop_box(region.mask, region.width, box, 1)
        return result_layer_pixels(rgba, crop_box(region.rgba, region.width, box), mask)

    def _remove_preview(self) -> None:
        layer, self.preview = self.preview, None
        if layer is None:
            return
        # Empty it first: the undone step stays in Krita's redo list until the next change, and a Redo
        # must not bring the preview's pixels back.
        r = self.region.rect
        if self.preview_fmt is not None:
            layer.setPixelData(bytes(r.width * r.height * self.preview_fmt.bytes_per_pixel), r.x, r.y, r.width,
                               r.height)
        # Undo the preview's own "add layer" step, so that no step of it stays in the history. Krita (5.1)
        # names the newest step only generically ("Undo Add Layer", translated, updated late) and keeps
        # its undo/redo actions enabled, so the step is checked by its effect: an undo that takes our
        # layer out of the tree was the undo of its addition. One that did not took back another step
        # (the user's, were the addition not undoable): redo gives it back, and the layer goes plainly.
        undo = self.app.action("edit_undo") if self.app is not None else None
        if undo is not None and _same_doc(self.app, self.doc):
            undo.trigger()
            self.doc.waitForDone()
            if layer.parentNode() is not None:
                log.warning("undo did not remove the preview layer; redoing the step it took back")
                redo = self.app.action("edit_redo")
                if redo is not None:
                    redo.trigger()
                    self.doc.waitForDone()
        if layer.parentNode() is not None:
            log.info("removing the preview layer")
            layer.remove()
            self.doc.waitForDone()
        self.doc.refreshProjection()

    # ------------------------------------------------------------------ result
    def write_result(self, rgba: bytes, name: str) -> None:
        """New paint layer above the source, at the region: ``createNode`` → ``setPixelData`` →
        ``addChildNode``, one undo step. It holds only the pixels the edit changed inside the selection
        (transparent elsewhere), so the source shows through unchanged, at its own depth, everywhere else.
        The preview goes first so nothing else is left behind."""
        r = self.region.rect
        layer = self.doc.createNode(name, PAINT_LAYER)
        # may raise: nothing touched yet
        pixels = from_rgba8(self._changed_only(rgba, (0, 0, r.width, r.height)), r.width, r.height, node_format(layer))
        self._remove_preview()
        layer.setPixelData(pixels, r.x, r.y, r.width, r.height)
        parent = self.source.parentNode()
        if parent is None or not parent.addChildNode(layer, self.source):
            raise RuntimeError("Krita refused to add the result layer")
        self.doc.waitForDone()
        self.doc.refreshProjection()
        self.result = layer
        log.info("wrote %r at %s", name, r.as_tuple())

    def discard(self) -> None:
        had_preview = self.preview is not None
        self._remove_preview()
        try:
            self.doc.setActiveNode(self.source)
        except Exception:
            pass
        if had_preview and not self.was_modified:
            self.doc.setModified(False)


def _same_doc(app: Any, doc: Any) -> bool:
    """Whether ``doc`` is the active document (whose undo stack ``edit_undo`` acts on)."""
    try:
        active = app.activeDocument()
        if active is None:
            return False
        return active.rootNode().uniqueId() == doc.rootNode().uniqueId()
    except Exception:
        return False
