"""Region input: raw host bytes and image files become one validated RGBA + mask, bad input a clear error."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from anycost.editing.region import DEFAULT_MAX_PIXELS, MIN_SIDE, Region, encode_rgba
from anycost.errors import InputError


def _pixels(h=40, w=50, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 4), dtype=np.uint8)


# ----------------------------------------------------------------------------------------------------
# raw bytes


def test_bgra_with_padded_stride_is_exact():
    rgba = _pixels()
    h, w = rgba.shape[:2]
    stride = w * 4 + 12
    raw = np.full((h, stride), 0xAB, np.uint8)  # padding bytes must be ignored
    raw[:, : w * 4] = rgba[..., [2, 1, 0, 3]].reshape(h, w * 4)
    mask = np.random.default_rng(1).integers(0, 256, (h, w), dtype=np.uint8)
    mask_stride = w + 3
    raw_mask = np.zeros((h, mask_stride), np.uint8)
    raw_mask[:, :w] = mask
    r = Region.from_rgba_bytes(raw.tobytes(), w, h, stride, "BGRA", raw_mask.tobytes(), mask_stride)
    assert r.rgba.dtype == np.uint8 and r.rgba.shape == (h, w, 4)
    np.testing.assert_array_equal(r.rgba, rgba)
    np.testing.assert_array_equal(r.mask, mask)
    assert r.rgba.flags.writeable and r.rgba.flags.c_contiguous
    assert r.to_bytes("BGRA") == rgba[..., [2, 1, 0, 3]].tobytes()
    assert encode_rgba(r.rgba, "rgba") == rgba.tobytes()


def test_rgba_default_and_buffer_types():
    rgba = _pixels()
    h, w = rgba.shape[:2]
    for data in (rgba.tobytes(), bytearray(rgba.tobytes()), memoryview(rgba.tobytes())):
        r = Region.from_rgba_bytes(data, w, h)
        np.testing.assert_array_equal(r.rgba, rgba)
        assert r.mask is None


@pytest.mark.parametrize("delta", [-1, 1, -40 * 4])
def test_wrong_byte_count_is_rejected(delta):
    rgba = _pixels()
    h, w = rgba.shape[:2]
    data = rgba.tobytes()
    data = data[:delta] if delta < 0 else data + b"\0" * delta
    with pytest.raises(InputError, match="expected exactly"):
        Region.from_rgba_bytes(data, w, h)


def test_bad_stride_order_mask_and_buffer():
    rgba = _pixels()
    h, w = rgba.shape[:2]
    with pytest.raises(InputError, match="less than one row"):
        Region.from_rgba_bytes(rgba.tobytes(), w, h, stride=w * 4 - 4)
    with pytest.raises(InputError, match="channel order"):
        Region.from_rgba_bytes(rgba.tobytes(), w, h, channel_order="ARGB")
    with pytest.raises(InputError, match="selection mask"):
        Region.from_rgba_bytes(rgba.tobytes(), w, h, mask_bytes=b"\0" * (w * h - 1))
    with pytest.raises(InputError, match="bytes-like"):
        Region.from_rgba_bytes("not bytes", w, h)


@pytest.mark.parametrize("w,h", [(0, 10), (10, 0), (0, 0), (-5, 40)])
def test_zero_size_is_rejected(w, h):
    with pytest.raises(InputError, match="empty"):
        Region.from_rgba_bytes(b"", w, h)


def test_too_large_is_rejected_before_allocating():
    # No pixel data at all: the size check must fire before the length check.
    with pytest.raises(InputError, match="too large"):
        Region.from_rgba_bytes(b"", 100_000, 100_000)
    rgba = _pixels(64, 64)
    with pytest.raises(InputError, match="too large"):
        Region.from_rgba_bytes(rgba.tobytes(), 64, 64, max_pixels=64 * 63)
    assert Region.from_rgba_bytes(rgba.tobytes(), 64, 64, max_pixels=64 * 64).width == 64
    assert DEFAULT_MAX_PIXELS >= 8192 * 8192


@pytest.mark.parametrize("w,h", [(MIN_SIDE - 1, 64), (64, MIN_SIDE - 1), (1, 1)])
def test_too_small_is_rejected(w, h):
    with pytest.raises(InputError, match="too small"):
        Region.from_rgba_bytes(b"\0" * (w * h * 4), w, h)
    with pytest.raises(InputError, match="too small"):
        Region.from_array(np.zeros((h, w, 3), np.uint8))


# ----------------------------------------------------------------------------------------------------
# arrays


def test_from_array_shapes_and_masks():
    rgb = _pixels()[..., :3]
    r = Region.from_array(rgb)
    np.testing.assert_array_equal(r.rgba[..., :3], rgb)
    assert (r.rgba[..., 3] == 255).all()
    grey = rgb[..., 0]
    g = Region.from_array(grey, mask=grey > 100)
    np.testing.assert_array_equal(g.rgba[..., 1], grey)
    assert set(np.unique(g.mask)) <= {0, 255}
    np.testing.assert_array_equal(g.mask == 255, grey > 100)
    with pytest.raises(InputError, match="same size"):
        Region.from_array(rgb, mask=np.zeros((40, 49), np.uint8))
    with pytest.raises(InputError, match="uint8"):
        Region.from_array(rgb.astype(np.float32))
    with pytest.raises(InputError):
        Region(np.zeros((40, 40, 3), np.uint8))
    with pytest.raises(InputError, match="same size"):
        Region(np.zeros((40, 40, 4), np.uint8), np.zeros((40, 41), np.uint8))


# ----------------------------------------------------------------------------------------------------
# files


def _save(tmp_path, im: Image.Image, name: str, **kw):
    p = tmp_path / name
    im.save(p, **kw)
    return p


def test_file_modes_convert_to_rgba(tmp_path):
    base = _pixels(48, 64)
    rgb = Image.fromarray(base[..., :3])
    cases = {
        "rgb.png": rgb,
        "rgba.png": Image.fromarray(base, "RGBA"),
        "la.png": Image.fromarray(base[..., :2].copy(), "LA"),
        "l.png": rgb.convert("L"),
        "p.png": rgb.convert("P"),
        "one.png": rgb.convert("1"),
        "cmyk.tif": rgb.convert("CMYK"),
        "i16.png": Image.fromarray(base[..., 0].astype(np.uint16) * 257),
        "f.tif": Image.fromarray(base[..., 0].astype(np.float32) / 255.0),
    }
    for name, im in cases.items():
        r = Region.from_file(_save(tmp_path, im, name))
        assert r.rgba.shape == (48, 64, 4) and r.rgba.dtype == np.uint8, name
    np.testing.assert_array_equal(Region.from_file(tmp_path / "rgb.png").rgba[..., :3], base[..., :3])
    np.testing.assert_array_equal(Region.from_file(tmp_path / "rgba.png").rgba, base)
    la = Region.from_file(tmp_path / "la.png").rgba
    np.testing.assert_array_equal(la[..., 0], base[..., 0])
    np.testing.assert_array_equal(la[..., 3], base[..., 1])
    # 16-bit grey is scaled, not clipped: 257 * k → k.
    i16 = Region.from_file(tmp_path / "i16.png").rgba
    np.testing.assert_array_equal(i16[..., 0], base[..., 0])
    np.testing.assert_array_equal(i16[..., 2], base[..., 0])
    f = Region.from_file(tmp_path / "f.tif").rgba
    assert np.abs(f[..., 0].astype(int) - base[..., 0]).max() <= 1
    cmyk = Region.from_file(tmp_path / "cmyk.tif").rgba
    np.testing.assert_array_equal(cmyk[..., :3], base[..., :3])  # Pillow's CMYK round trip is lossless
    p = Region.from_file(tmp_path / "p.png").rgba
    assert np.abs(p[..., :3].astype(int) - base[..., :3]).mean() < 40  # palette quantisation


def test_palette_transparency_becomes_alpha(tmp_path):
    pal = Image.new("P", (40, 40), 0)
    pal.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    pal.paste(1, (0, 0, 20, 40))
    r = Region.from_file(_save(tmp_path, pal, "t.png", transparency=0))
    assert (r.rgba[:, :20, 3] == 255).all() and (r.rgba[:, 20:, 3] == 0).all()
    assert (r.rgba[:, :20, 1] == 255).all()


def test_exif_orientation_is_applied(tmp_path):
    base = _pixels(40, 64)[..., :3]
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    r = Region.from_file(_save(tmp_path, Image.fromarray(base), "o.png", exif=exif))
    np.testing.assert_array_equal(r.rgba[..., :3], np.rot90(base, k=-1))


def test_mask_file(tmp_path):
    base = _pixels(40, 50)
    mask = (np.arange(50)[None, :] * 5 + np.zeros((40, 1))).astype(np.uint8)
    img = _save(tmp_path, Image.fromarray(base, "RGBA"), "img.png")
    r = Region.from_file(img, _save(tmp_path, Image.fromarray(mask), "mask.png"))
    np.testing.assert_array_equal(r.mask, mask)
    rgb_mask = _save(tmp_path, Image.fromarray(np.dstack([mask] * 3)), "mask_rgb.png")
    np.testing.assert_array_equal(Region.from_file(img, rgb_mask).mask, mask)
    small = _save(tmp_path, Image.fromarray(mask[:, :40]), "small.png")
    with pytest.raises(InputError, match="same size"):
        Region.from_file(img, small)


def test_unreadable_files_name_the_file(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("this is not an image\n")
    with pytest.raises(InputError, match="notes.png"):
        Region.from_file(text)
    with pytest.raises(InputError, match="not found"):
        Region.from_file(tmp_path / "missing.png")
    with pytest.raises(InputError, match="directory"):
        Region.from_file(tmp_path)
    good = _save(tmp_path, Image.fromarray(_pixels(64, 64)[..., :3]), "good.png")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InputError, match="truncated.png"):
        Region.from_file(truncated)
    with pytest.raises(InputError, match="missing_mask.png"):
        Region.from_file(good, tmp_path / "missing_mask.png")


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` × ``height`` but whose data is a few bytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [100_000, 9_000])  # far above Pillow's hard limit; just above our limit
def test_decompression_bomb_is_rejected(tmp_path, side):
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_claiming(side, side))
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(InputError, match="megapixels"):
        Region.from_file(p)
    assert Image.MAX_IMAGE_PIXELS == before  # Pillow's global limit is restored


def test_file_pixel_limit_is_configurable(tmp_path):
    p = _save(tmp_path, Image.fromarray(_pixels(64, 64)[..., :3]), "px.png")
    with pytest.raises(InputError, match="too large|megapixels"):
        Region.from_file(p, max_pixels=64 * 64 - 1)
    assert Region.from_file(p, max_pixels=64 * 64).width == 64
    tiny = _save(tmp_path, Image.fromarray(_pixels(20, 64)[..., :3]), "tiny.png")
    with pytest.raises(InputError, match="too small"):
        Region.from_file(tiny)


def test_file_pixels_and_masks_are_writable_copies(tmp_path):
    base = _pixels(40, 50)
    mask = np.zeros((40, 50), np.uint8)
    mask[10:30, 5:25] = 255
    img = _save(tmp_path, Image.fromarray(base, "RGBA"), "img.png")
    mpath = _save(tmp_path, Image.fromarray(mask), "mask.png")
    r = Region.from_file(img, mpath)
    assert r.rgba.flags.writeable and r.mask.flags.writeable
    np.testing.assert_array_equal(r.rgba, base)
    # with_mask reads a mask file, takes an array, or drops the selection
    plain = Region.from_array(base)
    np.testing.assert_array_equal(plain.with_mask(mpath).mask, mask)
    np.testing.assert_array_equal(plain.with_mask(mask > 0).mask, mask)
    assert r.with_mask(None).mask is None
    with pytest.raises(InputError, match="same size"):
        Region.from_array(_pixels(40, 60)).with_mask(mpath)


def test_a_low_pixel_limit_is_stated_in_pixels(tmp_path):
    p = _save(tmp_path, Image.fromarray(_pixels(64, 64)[..., :3]), "px.png")
    with pytest.raises(InputError, match=r"too large.*2000 pixels"):
        Region.from_file(p, max_pixels=2000)
    with pytest.raises(InputError, match=r"too large: 64 × 64 = 4096 pixels, the limit is 4000 pixels"):
        Region.from_array(_pixels(64, 64), max_pixels=4000)
