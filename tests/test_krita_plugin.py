"""The Krita plugin's host-neutral logic outside Krita: pixel formats and regions, the Krita adapter on a
small fake of Krita's API (tests/krita_fake.py), and the dialog's controller and backend link against
a real backend process over real sockets. The plugin in a real Krita is tests/test_krita_e2e.py."""

from __future__ import annotations

import heapq
import itertools
import json
import os
import random
import select
import signal
import struct
import sys
import time
from fractions import Fraction
from pathlib import Path

import pytest
from krita_fake import FakeDocument, FakeKrita
from render_times import RenderTimes
from service_support import Backend, make_directions

from anycost_client import backend_launcher as BL
from anycost_client.backend_link import BackendLink, LinkSettings, LinkState
from anycost_client.edit_controller import (
    AUTO,
    PREVIEW_SOURCES,
    EditController,
    Phase,
    PreviewFrame,
    edit_layer_name,
)
from anycost_client.regions import (
    FormatError,
    PixelFormat,
    Rect,
    Region,
    edit_rect,
    from_rgba8,
    krita_pixel_format,
    mask_or_none,
    paste_box,
    result_layer_pixels,
    swap_red_blue,
    to_rgba8,
)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugin" / "krita"))

from anycost_face_edit.krita_canvas import PREVIEW_LAYER_NAME, KritaCanvas, read_region  # noqa: E402
from anycost_face_edit.settings import Settings  # noqa: E402
from anycost_face_edit.vendor_paths import platform_key, vendor_key  # noqa: E402

# ---------------------------------------------------------------------------------------- regions


def test_krita_channel_orders_and_depths():
    assert krita_pixel_format("RGBA", "U8") == PixelFormat("U8", "BGRA")
    assert krita_pixel_format("RGBA", "U16") == PixelFormat("U16", "BGRA")
    assert krita_pixel_format("RGBA", "U16", "sRGB-elle-V2-g10.icc") == PixelFormat("U16", "BGRA", linear=True)
    assert krita_pixel_format("RGBA", "F32", "sRGB-elle-V2-g10.icc") == PixelFormat("F32", "RGBA", linear=True)
    assert krita_pixel_format("RGBA", "F16", "sRGB-elle-V2-srgbtrc.icc") == PixelFormat("F16", "RGBA", linear=False)
    with pytest.raises(FormatError, match="greyscale.*RGB/Alpha"):
        krita_pixel_format("GRAYA", "U8")
    with pytest.raises(FormatError, match="CMYK"):
        krita_pixel_format("CMYKA", "U8")


def test_known_pixels_convert_exactly():
    # Krita's U8: B, G, R, A
    assert to_rgba8(bytes([10, 20, 30, 40]), 1, 1, PixelFormat("U8", "BGRA")) == bytes([30, 20, 10, 40])
    # U16: v × 257 ↔ v, native byte order
    u16 = struct.pack("=4H", 0, 257 * 128, 65535, 257 * 7)
    assert to_rgba8(u16, 1, 1, PixelFormat("U16", "BGRA")) == bytes([255, 128, 0, 7])
    assert from_rgba8(bytes([255, 128, 0, 7]), 1, 1, PixelFormat("U16", "BGRA")) == u16
    # a linear 16-bit profile (Krita's default for new 16-bit images): linear 0.5 is sRGB 188
    lin16 = struct.pack("=4H", 32768, 0, 65535, 32768)
    assert to_rgba8(lin16, 1, 1, PixelFormat("U16", "BGRA", linear=True)) == bytes([255, 0, 188, 128])
    # floats: R, G, B, A; linear light is sRGB-encoded for the wire, alpha never is
    lin = struct.pack("=4f", 0.5, 0.0, 1.0, 0.5)
    assert to_rgba8(lin, 1, 1, PixelFormat("F32", "RGBA", linear=True)) == bytes([188, 0, 255, 128])
    assert to_rgba8(lin, 1, 1, PixelFormat("F32", "RGBA", linear=False)) == bytes([128, 0, 255, 128])
    # out of range and NaN clamp instead of wrapping
    wild = struct.pack("=4e", 2.0, -1.0, float("nan"), 1.0)
    assert to_rgba8(wild, 1, 1, PixelFormat("F16", "RGBA")) == bytes([255, 0, 0, 255])


@pytest.mark.parametrize("fmt", [PixelFormat("U8", "BGRA"), PixelFormat("U16", "BGRA"), PixelFormat("F16", "RGBA"),
                                 PixelFormat("U16", "BGRA", linear=True),
                                 PixelFormat("F32", "RGBA", linear=True), PixelFormat("F16", "RGBA", linear=True)])
def test_every_8bit_value_survives_the_round_trip(fmt):
    rgba = bytes((v + c) % 256 for v in range(256) for c in range(4))  # every value in every channel
    w, h = 16, 16
    assert len(rgba) == w * h * 4
    host = from_rgba8(rgba, w, h, fmt)
    assert len(host) == w * h * fmt.bytes_per_pixel
    assert to_rgba8(host, w, h, fmt) == rgba


def test_wrong_sizes_are_refused():
    with pytest.raises(FormatError, match="expected 8 bytes"):
        to_rgba8(b"\0" * 7, 2, 1, PixelFormat())
    with pytest.raises(FormatError, match="depth"):
        PixelFormat("U32")


def test_region_geometry():
    canvas = Rect(0, 0, 300, 200)
    assert edit_rect(None, canvas) == canvas
    assert edit_rect(Rect(100, 50, 80, 60), canvas, 0.25) == Rect(80, 30, 120, 100)
    assert edit_rect(Rect(10, 10, 80, 60), canvas, 0.5) == Rect(0, 0, 130, 110), "clipped to the canvas"
    with pytest.raises(FormatError, match="at least 16"):
        edit_rect(Rect(10, 10, 5, 5), canvas)
    with pytest.raises(FormatError, match="does not overlap"):
        edit_rect(Rect(400, 10, 50, 50), canvas)
    assert mask_or_none(b"\xff" * 4) is None
    assert mask_or_none(b"\xff\x00\x80\x00") == b"\xff\x00\x80\x00"
    with pytest.raises(FormatError, match="nothing is selected"):
        mask_or_none(b"\x00" * 4)
    base = bytearray(4 * 4 * 4)
    paste_box(base, 4, (1, 2, 2, 1), b"\x01" * 8)
    assert base[(2 * 4 + 1) * 4:(2 * 4 + 3) * 4] == b"\x01" * 8 and sum(base) == 8
    with pytest.raises(ValueError, match="outside"):
        paste_box(base, 4, (3, 3, 2, 2), b"\x01" * 16)
    assert swap_red_blue(bytes([1, 2, 3, 4])) == bytes([3, 2, 1, 4])
    assert edit_layer_name({"smile": 0.6, "age": -0.3, "hair": 0.0}) == "Anycost Face Edit (smile +0.60, age -0.30)"


def test_vendor_folders_match_the_installers_names():
    from anycost_installers.wheels import Target

    assert vendor_key("3.10", "win_amd64") == Target("3.10", "win_amd64").key == "cp310-win_amd64"
    assert platform_key("win32", "AMD64") == "win_amd64"
    assert platform_key("darwin", "arm64") == "macosx_arm64"
    assert platform_key("linux", "x86_64") == "linux_x86_64"
    assert platform_key("linux", "aarch64") == "linux_aarch64"


def test_settings_round_trip_through_krita_settings():
    store: dict = {}
    s = Settings.load(lambda g, k, d: store.get((g, k), d))
    assert s.padding == 0.25 and s.quality == "auto" and s.backend_command == ""
    s.backend_command, s.padding, s.preview_budget_ms = "/opt/venv/bin/python -m anycost serve", 0.4, 90
    s.save(lambda g, k, v: store.__setitem__((g, k), v))
    t = Settings.load(lambda g, k, d: store.get((g, k), d))
    assert t == s
    ls = t.link_settings()
    assert ls.backend_command == ["/opt/venv/bin/python", "-m", "anycost", "serve"]
    assert ls.backend_args == ["--preview-budget-ms", "90"] and ls.host == "krita"
    assert t.dialog_position == "" and Settings().dialog_position == ""
    written = []
    t.dialog_position = "40,60"
    t.save(lambda g, k, v: written.append((k, v)) or store.__setitem__((g, k), v), "dialog_position")
    assert written == [("dialog_position", "40,60")], "only what the dialog changed is written"
    assert Settings.load(lambda g, k, d: store.get((g, k), d)).dialog_position == "40,60"
    from anycost_face_edit.placement import parse_position, place

    assert parse_position("40,60") == (40, 60) and parse_position("") is None and parse_position("a,b") is None
    # beside Krita's window when the screen has room, else inside its right edge; a saved place kept on screen
    assert place((300, 500), (0, 0, 1920, 1040), (0, 0, 1200, 900)) == (1208, 8)
    assert place((300, 500), (0, 0, 1366, 728), (0, 0, 1366, 728)) == (1058, 8)
    assert place((300, 500), (0, 0, 1366, 728), (0, 0, 1366, 728), avoid=(1000, 100, 200, 200)) == (8, 8)
    assert place((300, 500), (0, 0, 1366, 728), saved=(2000, -50)) == (1066, 0)
    assert place((300, 800), (0, 0, 1366, 728), saved=(10, 10)) == (10, 0), "taller than the screen: its top"
    store[("anycost_face_edit", "padding")] = "lots"
    assert Settings.load(lambda g, k, d: store.get((g, k), d)).padding == 0.25, "garbage falls back to the default"


def test_python_environment_note_names_what_leaks_into_kritas_python():
    from anycost_face_edit.environment import python_environment_note

    assert python_environment_note({}, "/usr", "/usr") == ""
    krita_own = {"PYTHONPATH": "/usr/lib/x86_64-linux-gnu/krita-python-libs:/usr/share/krita/pykrita"}
    assert python_environment_note(krita_own, "/usr", "/usr") == "", "Krita's own folders are not a problem"
    note = python_environment_note({"VIRTUAL_ENV": "/home/me/anycost/.venv", "PYTHONPATH": "/opt/lib"},
                                   "/home/me/anycost/.venv", "/usr")
    assert "VIRTUAL_ENV=/home/me/anycost/.venv, PYTHONPATH=/opt/lib" in note
    assert "runs in the virtual environment /home/me/anycost/.venv" in note and "'deactivate'" in note
    assert "PYTHONHOME=/x" in python_environment_note({"PYTHONHOME": "/x"}, "/usr", "/usr")
    bin_dir = Path(sys.prefix) / "bin"  # this environment's own python3: first on PATH, as when activated
    note = python_environment_note({"PATH": f"{bin_dir}{os.pathsep}/usr/bin"}, "/usr", "/usr")
    assert f"PATH starting with a virtual environment's python3 ({bin_dir / 'python3'})" in note, note
    assert python_environment_note({"PATH": "/usr/bin:/bin"}, "/usr", "/usr") == ""


KRITA_PYTHON_LIBS = Path("/usr/lib/x86_64-linux-gnu/krita-python-libs")


@pytest.mark.skipif(not (KRITA_PYTHON_LIBS / "krita").is_dir(), reason="Krita's own Python modules are not installed")
def test_plugin_names_the_environment_when_kritas_own_module_cannot_be_imported(tmp_path):
    """The plugin imported where Krita's real ``krita`` module is found but cannot be imported (as in a Krita
    whose Python runs in a virtual environment without PyQt5), from a virtual environment's Python: it says
    so on standard error, naming VIRTUAL_ENV and the environment. Outside Krita (no ``krita`` module at all)
    it says nothing."""
    import subprocess

    plugin_path = [str(REPO / "plugin" / "krita"), str(REPO / "plugin")]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "VIRTUAL_ENV")}
    code = "import anycost_face_edit; print('imported', anycost_face_edit.Krita)"
    venv = str(Path(sys.prefix))
    assert sys.prefix != sys.base_prefix, "the tests run in a virtual environment"
    broken = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env={
        **env, "VIRTUAL_ENV": venv, "PYTHONPATH": os.pathsep.join([str(KRITA_PYTHON_LIBS), *plugin_path])})
    assert broken.returncode == 0 and "imported None" in broken.stdout, broken.stderr
    assert "Anycost Face Edit: Krita's Python cannot import its own modules" in broken.stderr, broken.stderr
    assert f"VIRTUAL_ENV={venv}" in broken.stderr and f"runs in the virtual environment {venv}" in broken.stderr
    assert "Start Krita from a shell without it" in broken.stderr
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                           env={**env, "PYTHONPATH": os.pathsep.join(plugin_path)})
    assert plain.returncode == 0 and "imported None" in plain.stdout and plain.stderr == "", plain.stderr


# ---------------------------------------------------------------------------------------- Krita adapter


def _painted_doc(w=64, h=48, depth="U8", profile="sRGB-elle-V2-srgbtrc.icc") -> FakeDocument:
    doc = FakeDocument(w, h, depth=depth, profile=profile)
    bg = doc.root.children[0]
    fmt = krita_pixel_format("RGBA", depth, profile)
    rgba = bytes(v for i in range(w * h) for v in ((i * 7) % 256, (i * 3) % 256, (i * 11) % 256, 255))
    bg.setPixelData(from_rgba8(rgba, w, h, fmt), 0, 0, w, h)
    doc.undo_stack.clear()
    doc.setModified(False)
    return doc


@pytest.mark.parametrize("depth, profile", [("U8", "sRGB-elle-V2-srgbtrc.icc"), ("U16", "sRGB-elle-V2-srgbtrc.icc"),
                                            ("F32", "sRGB-elle-V2-g10.icc"), ("F16", "sRGB-elle-V2-srgbtrc.icc")])
def test_region_from_a_selection(depth, profile):
    doc = _painted_doc(depth=depth, profile=profile)
    doc.select(20, 10, 24, 20)
    region = read_region(doc, doc.activeNode(), padding=0.25)
    assert region.rect == Rect(14, 4, 36, 32)
    # the wire's RGBA8 equals the layer's pixels of that rect
    i = (6 * 64 + 20)  # image pixel (20, 6) → region pixel (6, 2)
    expected = bytes(((i * 7) % 256, (i * 3) % 256, (i * 11) % 256, 255))
    j = 2 * 36 + 6
    assert region.rgba[4 * j:4 * j + 4] == expected
    assert region.mask is not None and region.mask[j] == 0 and region.mask[(10 - 4) * 36 + 6] == 255


def test_region_without_selection_is_the_layer_and_bad_layers_are_refused():
    doc = _painted_doc()
    assert read_region(doc, doc.activeNode()).rect == Rect(0, 0, 64, 48)
    assert read_region(doc, doc.activeNode()).mask is None
    group = doc.createNode("group", "grouplayer")
    with pytest.raises(FormatError, match="the active layer is a group layer; select the paint layer"):
        read_region(doc, group)
    gray = FakeDocument(32, 32, model="GRAYA")
    with pytest.raises(FormatError, match="greyscale"):
        read_region(gray, gray.activeNode())
    with pytest.raises(FormatError, match="empty"):
        read_region(doc, doc.createNode("empty", "paintlayer"))


def _frame(box, value, previous=None):
    x, y, w, h = box
    return PreviewFrame(0, box, bytes([value, value, value, 255]) * (w * h), previous)


@pytest.mark.parametrize("depth", ["U8", "U16", "F32"])
def test_canvas_preview_apply_is_one_undo_step(depth):
    doc = _painted_doc(depth=depth, profile="sRGB-elle-V2-g10.icc" if depth == "F32" else "srgbtrc")
    doc.select(20, 10, 24, 20)
    src = doc.activeNode()
    source_pixels = bytes(src.pixels)
    region = read_region(doc, src, 0.25)
    canvas = KritaCanvas(FakeKrita(doc), doc, src, region)
    canvas.show_preview(_frame((2, 2, 10, 10), 200))  # the selection starts at (6, 6) of the region
    assert doc.layer_names() == ["Background", PREVIEW_LAYER_NAME]
    pv = doc.root.children[1]
    assert pv.locked()
    fmt = krita_pixel_format("RGBA", depth, pv.colorProfile())
    rx, ry = region.rect.x, region.rect.y
    assert to_rgba8(pv.pixelData(rx + 8, ry + 8, 1, 1), 1, 1, fmt) == bytes([200, 200, 200, 255])
    assert to_rgba8(pv.pixelData(rx + 2, ry + 2, 1, 1), 1, 1, fmt)[3] == 0, "outside the selection: transparent"
    canvas.show_preview(_frame((8, 8, 4, 4), 50, previous=(2, 2, 10, 10)))
    assert to_rgba8(pv.pixelData(rx + 6, ry + 6, 1, 1), 1, 1, fmt)[3] == 0, "the old box is cleared"
    assert to_rgba8(pv.pixelData(rx + 9, ry + 9, 1, 1), 1, 1, fmt) == bytes([50, 50, 50, 255])

    result = bytes([9, 99, 199, 255]) * (region.width * region.height)
    canvas.write_result(result, "Anycost Face Edit (smile +0.50)")
    assert doc.layer_names() == ["Background", "Anycost Face Edit (smile +0.50)"]
    assert [what for what, *_ in doc.undo_stack] == ["add Anycost Face Edit (smile +0.50)"], \
        "the preview left no undo step; the result is exactly one"
    new = doc.root.children[1]
    b = new.bounds()
    assert (b.x(), b.y(), b.width(), b.height()) == (20, 10, 24, 20), "the changed pixels: the selection here"
    written = to_rgba8(new.pixelData(*region.rect.as_tuple()), region.width, region.height, fmt)
    assert written[3::4] == bytes(255 if region.mask[i] else 0 for i in range(region.width * region.height)), \
        "the changed pixels inside the selection, transparent outside it"
    assert written == result_layer_pixels(result, region.rgba, region.mask)
    assert bytes(src.pixels) == source_pixels, "the source layer is never written"
    doc.undo()
    assert doc.layer_names() == ["Background"]


def test_result_layer_pixels_hides_what_the_edit_left_alone():
    original = bytes([1, 2, 3, 255, 4, 5, 6, 128, 7, 8, 9, 0, 10, 11, 12, 255])
    result = bytes([1, 2, 3, 255, 4, 5, 7, 128, 7, 8, 9, 0, 99, 11, 12, 255])
    assert result_layer_pixels(result, original) == bytes([1, 2, 3, 0, 4, 5, 7, 128, 7, 8, 9, 0, 99, 11, 12, 255])
    assert result_layer_pixels(result, original, b"\xff\x00\xff\x80") == \
        bytes([1, 2, 3, 0, 4, 5, 7, 0, 7, 8, 9, 0, 99, 11, 12, 255]), "unselected: transparent even if changed"
    # against the plain per-pixel rule, on pixels that differ in one byte anywhere (the fold must not leak
    # between neighbouring pixels)
    rng = random.Random(7)
    n = 2000
    original = bytes(rng.choice((0, 1, 128, 255)) for _ in range(4 * n))
    result = bytearray(original)
    for i in rng.sample(range(4 * n), n // 2):
        result[i] = rng.choice((0, 1, 128, 255))
    mask = bytes(rng.choice((0, 0, 1, 200, 255)) for _ in range(n))
    for m in (None, mask):
        plain = bytearray(result)
        for p in range(n):
            if result[4 * p:4 * p + 4] == original[4 * p:4 * p + 4] or (m is not None and not m[p]):
                plain[4 * p + 3] = 0
        assert result_layer_pixels(bytes(result), original, m) == bytes(plain)
    with pytest.raises(ValueError, match="same whole number"):
        result_layer_pixels(result, original[:8])
    with pytest.raises(ValueError, match="mask has 3 pixels"):
        result_layer_pixels(result, original, b"\xff" * 3)


def _over(layer: tuple[int, ...], source: tuple[int, ...]) -> tuple[Fraction, ...]:
    """Normal blending of one straight-alpha 16-bit pixel (B, G, R, A) over another, exactly."""
    la, sa = Fraction(layer[3], 65535), Fraction(source[3], 65535)
    a = la + sa * (1 - la)
    if a == 0:
        return (Fraction(0),) * 4
    return tuple((layer[c] * la + source[c] * sa * (1 - la)) / a for c in range(3)) + (a * 65535,)


def test_apply_on_a_16bit_linear_semi_transparent_layer_keeps_every_unchanged_pixel_exact():
    """The wire is 8-bit; the document is not. Pixels the edit did not change, and every pixel outside the
    selection, must composite to the source's own 16-bit values (not an 8-bit copy laid over them)."""
    w, h = 48, 40
    doc = FakeDocument(w, h, depth="U16", profile="sRGB-elle-V2-g10.icc")
    src = doc.root.children[0]
    # 16-bit values no 8-bit code reproduces, half of them semi-transparent
    raw = struct.pack(f"={4 * w * h}H", *(v for i in range(w * h) for v in (
        (i * 977 + 13) % 65536, (i * 331 + 7) % 65536, (i * 4099 + 1) % 65536, 32768 if i % 2 else 65535)))
    src.setPixelData(raw, 0, 0, w, h)
    doc.undo_stack.clear()
    doc.select(12, 10, 24, 20)
    region = read_region(doc, src, 0.25)
    result = bytearray(region.rgba)
    changed = set()
    for j in range(0, region.width * region.height, 5):  # change every fifth pixel, in and out of the selection
        result[4 * j] = (result[4 * j] + 40) % 256
        changed.add(j)
    canvas = KritaCanvas(FakeKrita(doc), doc, src, region)
    canvas.show_preview(PreviewFrame(0, (0, 0, region.width, region.height), bytes(result), None))
    canvas.write_result(bytes(result), "edit")
    new = doc.root.children[1]
    fmt = krita_pixel_format("RGBA", "U16", "sRGB-elle-V2-g10.icc")
    rx, ry = region.rect.x, region.rect.y
    exact = kept = 0
    for j in range(region.width * region.height):
        x, y = rx + j % region.width, ry + j // region.width
        source = struct.unpack("=4H", src.pixelData(x, y, 1, 1))
        layer = struct.unpack("=4H", new.pixelData(x, y, 1, 1))
        if j in changed and region.mask[j]:
            assert to_rgba8(new.pixelData(x, y, 1, 1), 1, 1, fmt) == bytes(result[4 * j:4 * j + 4]), "the edit"
            kept += 1
        else:
            assert _over(layer, source) == tuple(Fraction(v) for v in source), f"pixel {x},{y} changed"
            exact += 1
    assert kept > 50 and exact > 500
    b = new.bounds()
    assert (b.x(), b.y(), b.width(), b.height()) == (12, 10, 24, 20), "only the selection's changed pixels"


def test_canvas_discard_restores_everything():
    doc = _painted_doc()
    src = doc.activeNode()
    region = read_region(doc, src)
    canvas = KritaCanvas(FakeKrita(doc), doc, src, region)
    canvas.show_preview(_frame((0, 0, 8, 8), 10))
    canvas.discard()
    assert doc.layer_names() == ["Background"] and doc.undo_stack == [] and not doc.modified()
    assert doc.activeNode() is src


def test_canvas_removes_the_preview_plainly_when_undo_is_not_ours():
    """If the undo action does not act on this document, the preview layer is removed the plain way."""
    doc = _painted_doc()
    other = _painted_doc()
    src = doc.activeNode()
    canvas = KritaCanvas(FakeKrita(other), doc, src, read_region(doc, src))
    canvas.show_preview(_frame((0, 0, 8, 8), 10))
    canvas.discard()
    assert doc.layer_names() == ["Background"] and other.layer_names() == ["Background"]


@pytest.mark.parametrize("adding_is_undoable", [True, False])
def test_removing_the_preview_never_takes_back_the_users_step(adding_is_undoable):
    """The user added a layer just before the dialog. Cancel removes the preview and nothing else, whether
    the preview's own step is undone or (a Krita whose adding leaves no step) the undo hit the user's
    step and is redone."""
    doc = _painted_doc()
    src = doc.activeNode()
    mine = doc.createNode("my layer", "paintlayer")
    src.parentNode().addChildNode(mine, src)
    doc.setActiveNode(src)
    history = [what for what, *_ in doc.undo_stack]
    doc.adding_is_undoable = adding_is_undoable
    canvas = KritaCanvas(FakeKrita(doc), doc, src, read_region(doc, src))
    canvas.show_preview(_frame((0, 0, 8, 8), 10))
    assert doc.layer_names() == ["Background", PREVIEW_LAYER_NAME, "my layer"]
    canvas.discard()
    assert doc.layer_names() == ["Background", "my layer"], "the user's layer stays"
    assert [what for what, *_ in doc.undo_stack] == history + (["remove " + PREVIEW_LAYER_NAME]
                                                               if not adding_is_undoable else [])
    if adding_is_undoable:
        doc.undo()
        assert doc.layer_names() == ["Background"], "the user's own step is still the one to undo"


# ---------------------------------------------------------------------------------------- controller + link


class SelectLoop:
    """The host event loop the controller needs, on select(): what Qt's notifiers and timers do in Krita."""

    def __init__(self):
        self.watches: dict[int, tuple[int, object]] = {}
        self.timers: list = []
        self._ids = itertools.count()
        self.links: list[BackendLink] = []

    def watch(self, fd, callback):
        token = next(self._ids)
        self.watches[token] = (fd, callback)
        return token

    def unwatch(self, token):
        self.watches.pop(token, None)

    def call_later(self, seconds, callback):
        heapq.heappush(self.timers, (time.monotonic() + seconds, next(self._ids), callback))

    def run_until(self, cond, timeout, what=""):
        deadline = time.monotonic() + timeout
        next_tick = 0.0
        while not cond():
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            while self.timers and self.timers[0][0] <= now:
                heapq.heappop(self.timers)[2]()
            if now >= next_tick:
                next_tick = now + 0.25
                for link in self.links:
                    link.tick()
            fds = {fd: cb for fd, cb in self.watches.values()}
            ready, _, _ = select.select(list(fds), [], [], 0.05) if fds else ([], [], time.sleep(0.05))
            for fd in ready:
                fds[fd]()


class RecordingCanvas:
    def __init__(self):
        self.previews: list[PreviewFrame] = []
        self.results: list[tuple[bytes, str]] = []
        self.discarded = 0

    def show_preview(self, frame):
        self.previews.append(frame)

    def write_result(self, rgba, name):
        self.results.append((rgba, name))

    def discard(self):
        self.discarded += 1


def _region(w=64, h=64) -> Region:
    rgba = bytes(v for i in range(w * h) for v in ((i * 5) % 256, (i * 9) % 256, (i * 13) % 256, 255))
    return Region(Rect(10, 20, w, h), rgba)


@pytest.fixture(scope="module")
def backend_files(tmp_path_factory, official_fixture):
    tmp = tmp_path_factory.mktemp("plugin")
    model = official_fixture / "generator.pt"
    return tmp, model, make_directions(model, tmp / "dirs.safetensors")


def _command(backend_files) -> list[str]:
    _, model, dirs = backend_files
    return [sys.executable, "-m", "anycost", "serve", "--model", str(model), "--directions", str(dirs), "--no-lpips"]


def test_child_environment_drops_the_hosts_python():
    env = BL.child_environment({"PYTHONPATH": "/krita/lib", "PYTHONHOME": "/krita", "HOME": "/h", "APPDIR": "/a",
                                "LD_LIBRARY_PATH": "/a/lib"})
    assert env == {"HOME": "/h", "APPDIR": "/a", "PYTHONUNBUFFERED": "1"}
    assert BL.parse_command("'/opt/my env/bin/python' -m anycost serve") == ["/opt/my env/bin/python", "-m",
                                                                             "anycost", "serve"]


def test_link_without_backend_or_command_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.delenv("ANYCOST_BACKEND_COMMAND", raising=False)
    loop = SelectLoop()
    link = BackendLink(loop, LinkSettings(host="test"))
    canvas = RecordingCanvas()
    c = EditController(link, _region(), canvas)
    c.start()
    assert link.state == LinkState.FAILED and "anycost serve" in c.message and "backend command" in c.message
    # the dialog stays open with Retry (start a backend, then press it): the edit has not failed
    assert c.can_retry and not c.finished and c.phase == Phase.CONNECTING
    assert c.status_text().count("No Anycost backend is running") == 1, c.status_text()
    c.retry()
    assert link.state == LinkState.FAILED and c.can_retry, "nothing to start: the same answer"
    c.cancel()
    assert c.phase == Phase.CANCELLED and canvas.discarded == 1


_STUBBORN_BACKEND = """
import json, os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
path = sys.argv[sys.argv.index("--connection-file") + 1]
with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:  # private, as clients demand
    json.dump({"endpoint": "tcp://127.0.0.1:1", "key": "00" * 32, "pid": os.getpid()}, f)
time.sleep(60)
"""


def test_a_backend_that_ignores_stop_is_killed_and_its_connection_file_removed(tmp_path):
    script = tmp_path / "stubborn.py"
    script.write_text(_STUBBORN_BACKEND)
    launcher = BL.BackendLauncher([sys.executable, str(script)], host="stubborn",
                                  connection_file=tmp_path / "run" / "backend.json", log_file=tmp_path / "log")
    launcher.start()
    assert launcher.wait_ready(timeout=30) == tmp_path / "run" / "backend.json"
    pid = launcher.pid
    assert launcher.stop(timeout=0.5) == -signal.SIGKILL
    assert not launcher.running() and launcher.pid == pid
    assert not (tmp_path / "run" / "backend.json").exists(), "a killed backend's file would mislead the next client"


def test_plugin_starts_the_backend_edits_applies_cancels_and_stops_it(monkeypatch, tmp_path, backend_files):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("PYTHONPATH", "/nonexistent/host/python")  # what Krita sets; the child must not see it
    loop = SelectLoop()
    link = BackendLink(loop, LinkSettings(backend_command=_command(backend_files), host="test",
                                          backend_args=["--preview-budget-ms", "80"]))
    loop.links.append(link)
    canvas = RecordingCanvas()
    changes: list[str] = []
    c = EditController(link, _region(), canvas, on_change=changes.append)
    try:
        c.start()
        assert link.state == LinkState.STARTING and link.owns_backend
        loop.run_until(lambda: c.phase == Phase.READY, 120, "ready")
        assert link.connection_file == tmp_path / "anycost" / "backend-test.json"
        assert "--preview-budget-ms" in link.launcher.argv and "--reuse-connection-file" in link.launcher.argv
        assert link.welcome["costs"]["preview_budget_ms"] == 80
        assert set(c.specs) == {"sefa_0", "sefa_1", "sefa_2"} and c.levels
        assert "sliders" in changes and "status" in changes

        for v in (0.1, 0.3, 0.5, 0.7, 0.9):  # a drag: latest wins, the last position is shown
            c.set_slider("sefa_0", v)
        loop.run_until(lambda: c.previews_shown and c._state.last_shown_seq == c._state.last_sent_seq
                       and not c._state.last_shown_draft, 60, "the full preview of the last position")
        assert canvas.previews[-1].box is not None and c.latency_ms is not None and c.latency_ms > 0
        assert c.preview_rgba != bytearray(c.region.rgba), "the thumbnail shows the preview"
        c.set_slider("sefa_0", 5.0)
        assert c.sliders["sefa_0"] == 1.0, "clamped to the direction's range"
        c.set_quality(c.levels[0])
        loop.run_until(lambda: c.preview_cost == c.levels[0], 60, "a preview at the fixed cost")
        with pytest.raises(ValueError, match="unknown preview quality"):
            c.set_quality("7:0.1")
        c.reset_slider("sefa_0")
        assert c.sliders["sefa_0"] == 0.0

        c.set_slider("sefa_1", -0.6)
        c.apply()
        loop.run_until(lambda: c.finished, 60, "the result")
        assert c.phase == Phase.DONE and changes[-1] == "done"
        rgba, name = canvas.results[0]
        assert len(rgba) == 64 * 64 * 4 and name == "Anycost Face Edit (sefa_1 -0.60)"
        assert rgba != c.region.rgba
        pid = link.launcher.pid
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert not any(e.startswith(b"PYTHONPATH=") for e in env), "the backend does not inherit PYTHONPATH"

        # a second dialog on the same link: previews, then Cancel
        canvas2 = RecordingCanvas()
        c2 = EditController(link, _region(), canvas2)
        c2.start()
        assert c2.phase == Phase.OPENING, "the link is up: the region goes out at once"
        loop.run_until(lambda: c2.phase == Phase.READY, 60, "ready")
        c2.set_slider("sefa_2", 0.5)
        loop.run_until(lambda: c2.previews_shown, 60, "preview")
        c2.cancel()
        assert c2.phase == Phase.CANCELLED and canvas2.discarded == 1 and not canvas2.results
        log = tmp_path / "state" / "anycost" / "backend-test.log"
        loop.run_until(lambda: log.read_text().count('"session_closed"') >= 2, 10, "both sessions closed")
    finally:
        link.shutdown()
    assert not link.launcher.running()
    assert not (tmp_path / "anycost" / "backend-test.json").exists(), "stopped cleanly"


def test_external_backend_restart_is_reported_and_the_edit_replayed(tmp_path, backend_files):
    """An external backend dies; a new one starts on the same endpoint and key: the link reports the
    loss, reconnects, the controller reopens its session with the kept region and resends its sliders."""
    tmp, model, dirs = backend_files
    conn = tmp_path / "conn.json"
    a = Backend(tmp_path, model, dirs, "--reuse-connection-file", conn=conn)
    loop = SelectLoop()
    link = BackendLink(loop, LinkSettings(connection_file=str(conn), ping_interval=0.3, pong_timeout=1.5))
    loop.links.append(link)
    canvas = RecordingCanvas()
    c = EditController(link, _region(), canvas)
    b = None
    try:
        c.start()
        loop.run_until(lambda: c.phase == Phase.READY, 60, "ready")
        c.set_slider("sefa_0", 0.7)
        loop.run_until(lambda: c.previews_shown, 60, "preview")
        first = canvas.previews[-1]
        a.stop(signal.SIGKILL)
        loop.run_until(lambda: link.state == LinkState.RECONNECTING, 20, "the loss")
        assert "reconnecting" in c.status_line()
        shown = c.previews_shown
        c.set_slider("sefa_1", 0.0)  # moving sliders meanwhile loses nothing
        b = Backend(tmp_path, model, dirs, "--reuse-connection-file", conn=conn)
        loop.run_until(lambda: c.previews_shown > shown, 60, "a preview from the new backend")
        assert c.sessions_opened == 2 and c.phase == Phase.READY and link.reconnects >= 1
        assert c.sliders["sefa_0"] == 0.7
        assert canvas.previews[-1].rgba == first.rgba and canvas.previews[-1].box == first.box, \
            "same region, same sliders, same preview"
        assert not canvas.results and canvas.discarded == 0, "nothing written meanwhile"
    finally:
        link.shutdown()
        a.stop()
        if b is not None:
            b.stop()


def test_projection_progress_rises_step_by_step_to_full(tmp_path, backend_files):
    """With refinement steps the dialog's progress bar follows the projection: fractions strictly between
    0 and 1 while refining, never going down, full once the session is ready."""
    _, model, dirs = backend_files
    b = Backend(tmp_path, model, dirs)
    loop = SelectLoop()
    link = BackendLink(loop, LinkSettings(connection_file=str(b.conn)))
    loop.links.append(link)
    seen: list[tuple[str, float | None, str]] = []
    c = EditController(link, _region(), RecordingCanvas(), refine_steps=5,
                       on_change=lambda what: seen.append((what, c.progress_fraction(), c.message)))
    try:
        c.start()
        assert c.progress_fraction() is None, "nothing known yet: the dialog shows a busy bar"
        loop.run_until(lambda: c.phase == Phase.READY, 120, "ready")
    finally:
        link.shutdown()
        b.stop()
    fractions = [f for _, f, _ in seen if f is not None]
    assert any(0 < f < 1 for f in fractions), f"no partial progress among {fractions}"
    assert fractions == sorted(fractions), f"progress went down: {fractions}"
    assert fractions[-1] == 1.0 and c.progress_fraction() == 1.0
    assert [f for what, f, _ in seen if what == "progress" and f is not None] == [0.2, 0.4, 0.6, 0.8, 1.0], \
        "one step of the bar per refinement step"
    assert any(m == "Refining the projection (5/5)…" for _, _, m in seen), [m for _, _, m in seen]


def test_the_one_shot_path_starts_a_backend_finds_it_and_refuses_another_model(monkeypatch, tmp_path, backend_files):
    """Calls that live one edit long (GIMP's plug-in processes, scripts) reach a backend through
    ``anycost_client.oneshot``: with none running it starts the configured command, in a session of its own
    (the host's signals do not reach it) and left running; the next call finds that backend instead of starting
    another, connects, and refuses it when it serves another model than the one asked for, naming both."""
    from anycost_client import oneshot

    _, model, _ = backend_files
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("ANYCOST_CONNECTION_FILE", raising=False)
    monkeypatch.setenv("ANYCOST_BACKEND_COMMAND", " ".join(_command(backend_files)))
    path, launcher = oneshot.ensure_backend("oneshot", timeout=120)
    info = json.loads(path.read_text())
    try:
        assert path == tmp_path / "anycost" / "backend-oneshot.json"
        assert launcher is not None and launcher.pid == info["pid"] and not launcher.die_with_host
        assert oneshot.ensure_backend("oneshot") == (path, None), "a running backend is found, not started twice"
        assert os.getpgid(info["pid"]) != os.getpgid(0), "its own session: the host's signals do not reach it"
        client = oneshot.connect_backend("oneshot", "test-script", model=str(model), timeout=30)
        try:  # the model asked for as a file: the backend serves it under the file's name
            assert client.ping()["server_time"] > 0
            assert oneshot.model_matches(str(model), oneshot.served_model(client.welcome))
        finally:
            client.close()
        served = oneshot.served_model(client.welcome)
        with pytest.raises(oneshot.BackendUnavailable,
                           match=rf"backend \(pid {info['pid']}\) serves model '{served}', not 'other-model'"):
            oneshot.connect_backend("oneshot", "test-script", model="other-model", timeout=30)
        assert json.loads(path.read_text())["pid"] == info["pid"], "refusing it leaves it running"
    finally:
        os.kill(info["pid"], signal.SIGTERM)
        deadline = time.monotonic() + 15
        while path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)


def test_plugin_imports_only_qt_krita_and_the_client():
    """Krita's Python has PyQt, the client package and the vendored pyzmq/msgpack: nothing else."""
    import ast

    allowed = {"krita", "PyQt5", "PyQt6", "anycost_client", "zmq", "msgpack", "__future__"}
    files = sorted((REPO / "plugin" / "krita" / "anycost_face_edit").glob("*.py"))
    files += sorted((REPO / "plugin" / "anycost_client").glob("*.py"))
    assert len(files) > 8
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top in allowed or top in sys.stdlib_module_names, f"{path.name} imports {name}"
    code = ("import sys; sys.path.insert(0, 'plugin/krita'); import anycost_face_edit.krita_canvas, "
            "anycost_face_edit.settings, anycost_client.backend_link, anycost_client.edit_controller, "
            "anycost_client.regions, anycost_client.backend_launcher\n"
            "print(','.join(sorted(m for m in ('numpy', 'torch', 'PIL', 'anycost') if m in sys.modules)))")
    import subprocess

    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode == 0 and r.stdout.strip() == "", r.stderr + r.stdout


class SlowCanvas(RecordingCanvas):
    """Drawing takes a while, as writing a large preview into a Krita layer does."""

    DRAW_S = 0.08

    def show_preview(self, frame):
        time.sleep(self.DRAW_S)
        super().show_preview(frame)


_RUNS_ONCE = """
import os, sys
marker = sys.argv[1]
if os.path.exists(marker):
    sys.exit(5)  # every later start fails: a backend that keeps dying
open(marker, "w").close()
os.execv(sys.executable, [sys.executable, "-m", "anycost", "serve", *sys.argv[2:]])
"""


def test_preview_choice_latency_stale_quality_and_finding_a_backend_after_giving_up(monkeypatch, tmp_path,
                                                                                    backend_files):
    """A remembered fixed cost this backend does not offer falls back to Auto; the dialog's text about the
    backend's preview choice comes from its real welcome; the latency includes drawing; once the link
    gave up on a backend that keeps dying, a backend started meanwhile is found and the edit goes on."""
    _, model, dirs = backend_files
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    script, marker = tmp_path / "once.py", tmp_path / "started"
    script.write_text(_RUNS_ONCE)
    command = [sys.executable, str(script), str(marker), "--model", str(model), "--directions", str(dirs), "--no-lpips"]
    loop = SelectLoop()
    link = BackendLink(loop, LinkSettings(backend_command=command, host="test", max_restarts=1, rediscover_every=0.3,
                                          backend_args=["--preview-budget-ms", "80"]))
    loop.links.append(link)
    canvas = SlowCanvas()
    changes: list[str] = []
    c = EditController(link, _region(), canvas, quality="512:0.125", on_change=changes.append)
    external = None
    try:
        assert c.preview_choice_text() == ""
        c.start()
        loop.run_until(lambda: c.phase == Phase.READY, 120, "ready")
        assert c.levels and "512:0.125" not in c.levels
        assert c.quality == AUTO and "quality" in changes, "a cost the backend does not offer: back to auto"

        costs = link.welcome["costs"]
        text = c.preview_choice_text()
        assert text.startswith(f"{costs['preview']} · "), text
        assert f"; {costs['preview_ms']:.0f} ms when the backend timed it" in text, text
        if costs["preview_predicted_ms"] is not None:  # a searched configuration has a prediction too
            assert f"timed it, {costs['preview_predicted_ms']:.0f} ms predicted" in text, text
        assert f"chosen for the 80 ms budget ({PREVIEW_SOURCES[costs['preview_source']]})" in text, text
        assert "FLOP" in text, text

        c.set_slider("sefa_0", 0.5)
        loop.run_until(lambda: c.previews_shown, 60, "a preview")
        assert c.draw_ms >= 1000 * SlowCanvas.DRAW_S, "the canvas's drawing time is measured"
        assert c.latency_ms >= c.draw_ms + (c.render_ms or 0.0), "the latency shown includes the drawing"
        assert f"drawing {c.draw_ms:.0f} ms" in c.latency_text() and "from slider to picture" in c.latency_text()

        # the backend dies and cannot be restarted: the link gives up, the dialog keeps its state
        os.kill(link.launcher.pid, signal.SIGKILL)
        loop.run_until(lambda: link.state == LinkState.FAILED, 60, "the link to give up")
        assert c.phase == Phase.READY and c.can_retry and "keeps stopping" in c.status_line()
        assert "(exit code 5; restarted 1 time in the last 10 minutes)" in c.status_text(), c.status_text()
        assert c.status_text().count("keeps stopping") == 1 and c.error is None, "said once"
        shown = c.previews_shown
        # a backend comes up meanwhile (started by hand): found while the dialog is open, the edit replayed
        external = Backend(tmp_path, model, dirs, conn=tmp_path / "anycost" / "backend-byhand.json")
        loop.run_until(lambda: c.previews_shown > shown, 60, "a preview from the backend found later")
        assert link.state == LinkState.CONNECTED and link.connection_file == external.conn
        assert c.sessions_opened == 2 and c.sliders["sefa_0"] == 0.5 and not c.can_retry
        assert not canvas.results and canvas.discarded == 0
    finally:
        link.shutdown()
        if external is not None:
            external.stop()


def test_preview_choice_text_follows_the_backends_choice_per_session(tmp_path):
    """The backend chooses the preview again when a session opens (here: a search table cached while it
    runs, whose entry beats the uniform ratio in use); the session's ready says so and the dialog's
    'Preview:' line follows, though the link's welcome still describes the old choice."""
    import torch

    from anycost.editing.preview_choice import parse_cost
    from anycost.editing.render import Cost
    from anycost.io.modelfile import save_model
    from anycost.models.generator import Generator
    from anycost.search.cache import cache_dir, machine_id, machine_info, weights_id
    from anycost.search.table import SearchTable, TableEntry

    torch.manual_seed(0)
    G = Generator(resolution=128, style_dim=32, n_mlp=1, channel_multiplier=2, channel_max=128).eval()
    model = save_model(tmp_path / "wide.safetensors", generator=G, info={"name": "wide", "face": False,
                                                                         "channel_configs": "flexible"})
    dirs = make_directions(model, tmp_path / "dirs.safetensors")
    cheap = [128, 128, 64, 32, 32, 16, 128, 128, 128, 128, 128, 128]  # 16 px, narrow per-layer widths
    # the backend's choice reads these times, not this machine's: the full generator misses the budget
    # and the cheap configuration fits it (about 1 ms), on any machine, however busy
    times, budget = RenderTimes(full_ms=40.0), 8.0
    assert times.measure_cost_ms(G, Cost(None, None)) > budget > times.measure_cost_ms(G, Cost(16, tuple(cheap)))
    backend = Backend(tmp_path, model, dirs, "--preview-budget-ms", f"{budget:g}", "--no-background-search",
                      env=times.env())
    loop = SelectLoop()
    link = BackendLink(loop, LinkSettings(connection_file=str(backend.conn), host="test"))
    loop.links.append(link)
    try:
        first = EditController(link, _region(), RecordingCanvas())
        first.start()
        loop.run_until(lambda: first.phase == Phase.READY, 60, "the first session")
        uniform = first.preview_choice["preview"]
        assert first.preview_choice["preview_source"] == "uniform"
        given = times.measure_cost_ms(G, parse_cost(uniform, G))
        assert first.preview_choice["preview_ms"] == pytest.approx(given, abs=1e-3), "the given times decided"
        assert first.preview_choice_text().startswith(f"{uniform} · ")
        assert f"chosen for the {budget:g} ms budget (uniform ratio)" in first.preview_choice_text()
        first.cancel()

        # what 'anycost search' leaves in the cache: an entry the search found more faithful than that ratio
        table = SearchTable({"2ms": TableEntry(
            res=16, channels=cheap, budget_ms=2.0, psnr=31.5, score=31.5, predicted_ms=3.0, fits=True,
            baseline={"label": uniform, "psnr": 25.0, "score": 25.0})},
            model={"name": "wide", "weights": weights_id(G)},
            machine_id=machine_id({**machine_info("cpu"), "threads": 1}))  # the backend runs one thread
        table.save(cache_dir() / "search" / f"{weights_id(G)}-{table.machine_id}.json")

        second = EditController(link, _region(), RecordingCanvas())
        second.start()
        assert second.preview_choice["preview"] == uniform, "before its session: the welcome's choice"
        loop.run_until(lambda: second.phase == Phase.READY, 60, "the second session")
        choice = second.preview_choice
        assert choice["preview"] == "16:flexible" and choice["preview_source"] == "search"
        assert choice["preview_channels"] == cheap and choice["preview_psnr"] == 31.5
        assert choice["levels"] and choice["preview_search"] == "off", "the welcome's other fields stay"
        text = second.preview_choice_text()
        assert text.startswith("16:flexible · ") and "FLOP" in text, text
        assert f"; {choice['preview_ms']:.0f} ms when the backend timed it, 3 ms predicted" in text, text
        assert f"chosen for the {budget:g} ms budget (searched)" in text, text
        assert link.welcome["costs"]["preview"] == uniform, "the welcome itself is not resent"
        second.set_slider("sefa_0", 0.5)
        loop.run_until(lambda: second.previews_shown, 60, "a preview")
        assert second.preview_cost == "16:flexible"
        second.cancel()
    finally:
        link.shutdown()
        backend.stop()


def test_restarts_count_per_time_window_and_retry_follows_a_give_up_while_resending_the_region(
        monkeypatch, tmp_path, backend_files):
    """``max_restarts`` counts the restarts of the last ``restart_window`` seconds: a backend that crashed
    long ago is restarted again. When the budget is spent while the region is being sent again, the edit
    does not fail: it keeps its region and sliders, offers Retry, and Retry carries it on."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    window = 15.0
    loop = SelectLoop()
    link = BackendLink(loop, LinkSettings(backend_command=_command(backend_files), host="test", max_restarts=1,
                                          restart_window=window))
    loop.links.append(link)
    canvas = RecordingCanvas()
    c = EditController(link, _region(), canvas, refine_steps=5)  # refining: the region takes a while
    try:
        c.start()
        loop.run_until(lambda: c.phase == Phase.READY, 120, "ready")
        c.set_slider("sefa_0", 0.5)
        loop.run_until(lambda: c.previews_shown, 60, "a preview")
        os.kill(link.launcher.pid, signal.SIGKILL)
        loop.run_until(lambda: link.restarts == 1, 30, "the first restart")
        restarted_at = time.monotonic()
        loop.run_until(lambda: c.phase == Phase.READY and c.sessions_opened == 2 and link.connected, 120, "back")
        # the first restart is older than the window: it no longer counts, a second crash is restarted too
        loop.run_until(lambda: time.monotonic() - restarted_at > window, window + 5, "the window to pass")
        os.kill(link.launcher.pid, signal.SIGKILL)
        loop.run_until(lambda: link.restarts == 2, 30, "the second restart")
        assert link.state == LinkState.RECONNECTING and len(link.restart_times) == 1
        # the restarted backend gets the region again; it crashes meanwhile, within the window: the link
        # gives up while the region is being sent again
        loop.run_until(lambda: c.sessions_opened == 3, 120, "the region sent again")
        assert c.phase == Phase.OPENING
        os.kill(link.launcher.pid, signal.SIGKILL)
        loop.run_until(lambda: link.state == LinkState.FAILED, 30, "the give-up")
        assert c.phase == Phase.OPENING and not c.finished and c.can_retry, "Retry, not only Close"
        text = c.status_text()
        assert "keeps stopping" in text and f"restarted 1 time in the last {window:g} s" in text, text
        assert text.count("keeps stopping") == 1
        assert canvas.discarded == 0 and not canvas.results, "previews kept, nothing written"
        # Retry: a new backend, the kept region and sliders, the edit goes on where it stopped
        shown = c.previews_shown
        c.retry()
        assert link.state == LinkState.STARTING and link.restarts == 0 and not link.restart_times
        loop.run_until(lambda: c.phase == Phase.READY and c.previews_shown > shown, 120, "the edit carried on")
        assert c.sliders["sefa_0"] == 0.5 and c.sessions_opened >= 4 and not c.can_retry
    finally:
        link.shutdown()


def test_a_hung_backend_is_named_within_seconds_and_retry_replaces_it(monkeypatch, tmp_path, backend_files):
    """A backend this plugin started stops answering but does not exit (SIGSTOP): its missed heartbeats
    say so within seconds, naming its pid, instead of reconnecting to it for ever; Retry stops it and starts
    a new one, and the edit goes on."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    loop = SelectLoop()
    link = BackendLink(loop, LinkSettings(backend_command=_command(backend_files), host="test",
                                          ping_interval=0.3, pong_timeout=1.5))
    loop.links.append(link)
    canvas = RecordingCanvas()
    c = EditController(link, _region(), canvas)
    hung = None
    try:
        c.start()
        loop.run_until(lambda: c.phase == Phase.READY, 120, "ready")
        c.set_slider("sefa_1", -0.5)
        loop.run_until(lambda: c.previews_shown, 60, "a preview")
        hung = link.launcher.pid
        os.kill(hung, signal.SIGSTOP)
        stopped = time.monotonic()
        loop.run_until(lambda: link.state != LinkState.CONNECTED, 20, "the silence to be noticed")
        took = time.monotonic() - stopped
        assert link.state == LinkState.FAILED and link.hung, link.message
        assert took < 1.5 + 2.0, f"noticed after {took:.1f} s"
        text = c.status_text()
        assert f"The backend does not answer (pid {hung}, stopped)" in text and "Retry" in text, text
        assert text.count("does not answer") == 1
        assert c.phase == Phase.READY and c.can_retry and canvas.discarded == 0
        shown = c.previews_shown
        c.retry()
        assert not _pid_running(hung), "the hung backend is stopped"
        assert link.launcher.pid != hung and link.state == LinkState.STARTING
        loop.run_until(lambda: c.phase == Phase.READY and c.previews_shown > shown, 120, "the edit carried on")
        assert c.sessions_opened == 2 and c.sliders["sefa_1"] == -0.5 and not link.hung
    finally:
        if hung is not None and _pid_running(hung):
            os.kill(hung, signal.SIGCONT)
        link.shutdown()


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_retry_starts_the_backend_again(monkeypatch, tmp_path):
    """After the link gave up, Retry starts the configured backend again (here one that fails at once)."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    loop = SelectLoop()
    link = BackendLink(loop, LinkSettings(backend_command=[sys.executable, "-c", "import sys; sys.exit(3)"],
                                          host="test"))
    loop.links.append(link)
    link.ensure()
    first = link.launcher.pid
    loop.run_until(lambda: link.state == LinkState.FAILED, 30, "the failed start")
    assert "exited with code 3" in link.message
    link.retry()
    assert link.state == LinkState.STARTING and link.launcher.pid != first, "started again"
    loop.run_until(lambda: link.state == LinkState.FAILED, 30, "the second failed start")
    log = (tmp_path / "state" / "anycost" / "backend-test.log").read_text()
    assert log.count("starting:") == 2
    link.shutdown()


_NEWER_THAN_38 = {"nextafter", "removeprefix", "removesuffix", "is_relative_to", "bit_count", "pairwise", "cache"}


def test_plugin_code_stays_python_3_8_compatible():
    """Official Krita 5.0/5.1 builds run Python 3.8: the plugin and the client package must parse and run
    there. Checks the 3.8 grammar and the newer runtime features that parse fine but fail at run time."""
    import ast

    files = sorted((REPO / "plugin" / "krita" / "anycost_face_edit").glob("*.py"))
    files += sorted((REPO / "plugin" / "anycost_client").glob("*.py"))
    for path in files:
        tree = ast.parse(path.read_text(), str(path), feature_version=(3, 8))
        for node in ast.walk(tree):
            where = f"{path.name}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if node.func.id in ("isinstance", "issubclass") and len(node.args) == 2:
                    assert not isinstance(node.args[1], ast.BinOp), f"{where}: isinstance(x, A | B) needs 3.10"
                if node.func.id == "zip":
                    assert not any(k.arg == "strict" for k in node.keywords), f"{where}: zip(strict=) needs 3.10"
                if node.func.id == "dataclass":
                    assert not any(k.arg in ("slots", "kw_only") for k in node.keywords), f"{where}: 3.10"
            if isinstance(node, ast.Attribute):
                assert node.attr not in _NEWER_THAN_38, f"{where}: .{node.attr} is newer than Python 3.8"
            if isinstance(node, ast.ImportFrom):
                names = {a.name for a in node.names}
                assert not names & _NEWER_THAN_38, f"{where}: imports {names & _NEWER_THAN_38}"
        assert "from __future__ import annotations" in path.read_text() or path.name == "__init__.py", \
            f"{path.name}: annotations like 'str | None' need the __future__ import on 3.8"


def test_dialog_notice_says_a_plain_stylegan2_previews_approximately(tmp_path, ada_fixture):
    """A network pickle served as it is: the controller's notice line carries the backend's model notice."""
    model = ada_fixture / "network-snapshot.pkl"
    backend = Backend(tmp_path, model, make_directions(model, tmp_path / "dirs.safetensors"))
    loop = SelectLoop()
    link = BackendLink(loop, LinkSettings(connection_file=str(backend.conn)))
    loop.links.append(link)
    c = EditController(link, _region(), RecordingCanvas())
    try:
        c.start()
        loop.run_until(lambda: c.phase == Phase.READY, 60, "ready")
        assert "not trained for consistency" in c.display_notice()
        assert c.levels and all(level.endswith(":1") for level in c.levels)
    finally:
        link.shutdown()
        backend.stop()
