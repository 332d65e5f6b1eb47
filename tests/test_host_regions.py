"""Krita and GIMP send the same region for the same selection: both adapters' ``read_region`` (on small fakes
of the hosts' APIs, tests/krita_fake.py and tests/gimp_fake.py) go through ``anycost_client.regions.region_rect``
and give the same rect, pixels and mask, so one face gets one edit whichever host it is edited in."""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

import gimp_fake
import pytest
from krita_fake import FakeDocument

from anycost_client import regions
from anycost_client.regions import DEFAULT_PADDING, FormatError, Rect, from_rgba8, krita_pixel_format, region_rect

REPO = Path(__file__).resolve().parents[1]
W, H = 64, 48  # the image


def _pixel(i: int) -> bytes:
    return bytes(((i * 7) % 256, (i * 3) % 256, (i * 11) % 256, 255))


@pytest.fixture
def hosts(monkeypatch):
    """The two adapters' canvas modules: Krita's imports no host module; GIMP's gets the fake ``gi``."""
    for name, module in gimp_fake.gi_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.syspath_prepend(str(REPO / "plugin" / "gimp" / "anycost_face_edit"))
    monkeypatch.syspath_prepend(str(REPO / "plugin" / "krita"))
    monkeypatch.delitem(sys.modules, "face_edit_canvas", raising=False)
    gimp = importlib.import_module("face_edit_canvas")
    krita = importlib.import_module("anycost_face_edit.krita_canvas")
    yield krita, gimp
    sys.modules.pop("face_edit_canvas", None)  # it was imported against the fake


def _krita_doc(layer: Rect) -> FakeDocument:
    """A document whose background holds pixels only in ``layer`` (Krita's layer bounds are its pixels')."""
    doc = FakeDocument(W, H)
    node = doc.activeNode()
    rgba = b"".join(_pixel(i) for i in range(layer.width * layer.height))
    fmt = krita_pixel_format(node.colorModel(), node.colorDepth())  # 8-bit: stored as B,G,R,A
    node.setPixelData(from_rgba8(rgba, layer.width, layer.height, fmt), layer.x, layer.y, layer.width, layer.height)
    return doc


def _gimp_image(layer: Rect) -> tuple[gimp_fake.FakeImage, gimp_fake.FakeLayer]:
    image = gimp_fake.FakeImage(W, H)
    pixels = b"".join(_pixel(i) for i in range(layer.width * layer.height))
    return image, gimp_fake.FakeLayer(image, "Background", layer.width, layer.height, (layer.x, layer.y), pixels)


def _select(doc: FakeDocument, image: gimp_fake.FakeImage, sel: Rect, soft: Rect | None) -> None:
    """The same selection in both hosts: ``sel``, with ``soft`` inside it half selected."""
    doc.select(*sel.as_tuple())
    image.select(*sel.as_tuple())
    if soft is not None:
        image.select(*soft.as_tuple(), value=128)
        for y in range(soft.y, soft.bottom):
            doc.selection().mask[y * W + soft.x:y * W + soft.right] = b"\x80" * soft.width


def _grown(sel: Rect, padding: float) -> Rect:
    """The selection grown by ``padding`` × its longer side, clipped to the image: written out here, not asked
    of the code under test."""
    pad = round(padding * max(sel.width, sel.height))
    x0, y0 = max(sel.x - pad, 0), max(sel.y - pad, 0)
    return Rect(x0, y0, min(sel.right + pad, W) - x0, min(sel.bottom + pad, H) - y0)


CASES = {  # layer (where its pixels are), selection (None: none), a half-selected part of it, the rect to edit
    "inside": (Rect(0, 0, W, H), Rect(20, 10, 24, 20), None, _grown(Rect(20, 10, 24, 20), 0.25)),
    "at the top-left corner": (Rect(0, 0, W, H), Rect(2, 3, 30, 20), Rect(4, 5, 6, 6), Rect(0, 0, 40, 31)),
    "at the bottom-right": (Rect(0, 0, W, H), Rect(40, 30, 24, 18), None, Rect(34, 24, 30, 24)),
    "reaching past a layer at an offset": (Rect(20, 10, 24, 24), Rect(20, 10, 20, 20), Rect(22, 12, 4, 4),
                                           Rect(15, 5, 30, 30)),
    "no selection, a layer at an offset": (Rect(30, 20, 30, 25), None, None, Rect(30, 20, 30, 25)),
    "no selection, the whole image": (Rect(0, 0, W, H), None, None, Rect(0, 0, W, H)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_krita_and_gimp_send_the_same_region_for_the_same_selection(hosts, monkeypatch, case):
    krita, gimp = hosts
    layer, sel, soft, want = CASES[case]
    assert DEFAULT_PADDING == 0.25  # the rects above are written out for this padding
    calls: list[tuple[str, tuple, Rect]] = []

    def spy(host: str):
        def region_rect_spy(*args, **kwargs) -> Rect:
            out = region_rect(*args, **kwargs)
            bound = inspect.signature(region_rect).bind(*args, **kwargs)
            bound.apply_defaults()
            calls.append((host, tuple(bound.arguments.values()), out))
            return out
        return region_rect_spy

    # both adapters look the rule up in their module at call time: both must find the client's own function
    assert krita.region_rect is gimp.region_rect is regions.region_rect
    monkeypatch.setattr(krita, "region_rect", spy("krita"))
    monkeypatch.setattr(gimp, "region_rect", spy("gimp"))
    doc = _krita_doc(layer)
    image, gimp_layer = _gimp_image(layer)
    if sel is not None:
        _select(doc, image, sel, soft)

    from_krita = krita.read_region(doc, doc.activeNode())  # Krita's default padding is the client's
    from_gimp = gimp.read_region(image, [gimp_layer])

    assert [host for host, _, _ in calls] == ["krita", "gimp"]
    assert calls[0][1] == calls[1][1], "the same selection, layer, image and padding go into the rule"
    assert from_krita.rect == from_gimp.rect == want
    assert from_krita.rgba == from_gimp.rgba
    assert from_krita.mask == from_gimp.mask
    assert isinstance(from_gimp, regions.Region) and from_gimp.drawable is gimp_layer and from_gimp.image is image

    # the pixels are the layer's, at the layer's offsets; transparent where the rect reaches past it
    for x, y in ((want.x, want.y), (want.right - 1, want.bottom - 1), (layer.x, layer.y)):
        if not want.x <= x < want.right or not want.y <= y < want.bottom:
            continue
        i = 4 * ((y - want.y) * want.width + x - want.x)
        inside = layer.x <= x < layer.right and layer.y <= y < layer.bottom
        expected = _pixel((y - layer.y) * layer.width + x - layer.x) if inside else bytes(4)
        assert from_gimp.rgba[i:i + 4] == expected, (x, y)
    # the mask: the selection's coverage over the rect (only selected pixels change), none without one
    if sel is None:
        assert from_gimp.mask is None
    else:
        assert from_gimp.mask is not None and len(from_gimp.mask) == want.width * want.height
        half = soft.width * soft.height if soft else 0
        assert sum(v == 255 for v in from_gimp.mask) == sel.width * sel.height - half
        if soft is not None:
            assert from_gimp.mask[(soft.y - want.y) * want.width + soft.x - want.x] == 128


def test_the_padding_is_one_named_default():
    sys.path.insert(0, str(REPO / "plugin" / "krita"))
    from anycost_face_edit.krita_canvas import read_region
    from anycost_face_edit.settings import Settings

    assert inspect.signature(region_rect).parameters["padding"].default == DEFAULT_PADDING
    assert inspect.signature(read_region).parameters["padding"].default == DEFAULT_PADDING
    assert Settings().padding == DEFAULT_PADDING


def test_a_selection_outside_the_layer_or_a_layer_off_the_image_is_refused_in_gimps_words(hosts):
    _, gimp = hosts
    image, layer = _gimp_image(Rect(0, 0, 30, 30))
    image.select(40, 30, 20, 15)
    with pytest.raises(gimp.CanvasError, match="the selection does not touch the selected layer"):
        gimp.read_region(image, [layer])
    image, _ = _gimp_image(Rect(0, 0, W, H))
    off = gimp_fake.FakeLayer(image, "off", 20, 20, (W + 5, 0))
    with pytest.raises(gimp.CanvasError, match="no pixels on the image"):
        gimp.read_region(image, [off])
    # a layer partly off the image, no selection: its part on the image
    image = gimp_fake.FakeImage(W, H)
    assert gimp.read_region(image, [gimp_fake.FakeLayer(image, "big", 40, 40, (40, 30))]).rect == Rect(40, 30, 24, 18)
    image.select(10, 10, 4, 4)  # the rect must leave room for a face
    with pytest.raises(gimp.CanvasError, match="select at least 16×16 pixels"):
        gimp.read_region(image, [gimp_fake.FakeLayer(image, "bg", W, H)])
    with pytest.raises(FormatError, match="no pixels on the image"):
        region_rect(None, Rect(W, 0, 10, 10), Rect(0, 0, W, H))
