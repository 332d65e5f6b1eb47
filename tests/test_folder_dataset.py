"""Image-folder and synthetic-stream datasets: formats, pyramids, flips, caching and errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from anycost.data.folder import (
    EmptyFolderError,
    ImageFolderDataset,
    SynthFaceStream,
    pyramid_resolutions,
    scan_images,
)
from anycost.data.synth_faces import ATTRIBUTES, render_batch
from anycost.errors import InputError


def _halves(w: int, h: int) -> Image.Image:
    """Left half black, right half white: shows a flip at every resolution."""
    a = np.zeros((h, w, 3), np.uint8)
    a[:, w // 2 :] = 255
    return Image.fromarray(a)


@pytest.fixture()
def mixed(tmp_path):
    root = tmp_path / "imgs"
    (root / "sub" / "deeper").mkdir(parents=True)
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[10:30, 10:30] = (255, 0, 0, 255)  # opaque red square on a transparent field
    Image.fromarray(rgba, "RGBA").save(root / "a_rgba.png")
    Image.fromarray(np.full((30, 50), 100, np.uint8), "L").save(root / "b_gray.jpg", quality=95)
    g16 = np.tile(np.linspace(0, 65535, 32).astype(np.uint16), (32, 1))
    Image.fromarray(g16).save(root / "c_16bit.png")
    pal = Image.new("P", (20, 20), 0)
    pal.putpalette([0, 0, 255] + [0, 255, 0] * 255)
    pal.save(root / "sub" / "d_palette.gif")
    Image.new("RGB", (1, 1), (10, 200, 30)).save(root / "sub" / "e_tiny.bmp")
    _halves(64, 48).save(root / "sub" / "deeper" / "f_wide.webp", lossless=True)
    _halves(32, 32).save(root / "sub" / "g.TIFF")
    (root / "notes.txt").write_text("not an image")
    (root / "h_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    return root


def test_pyramid_resolutions():
    assert pyramid_resolutions(64, 8) == [64, 32, 16, 8]
    assert pyramid_resolutions(32, 32) == [32]
    with pytest.raises(InputError):
        pyramid_resolutions(16, 32)


def test_explicit_resolution_list(mixed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = ImageFolderDataset(mixed, resolutions=[8, 32, 12], flip=False)
    assert ds.resolutions == [32, 12, 8]
    assert {r: tuple(t.shape) for r, t in ds[0].items()} == {32: (3, 32, 32), 12: (3, 12, 12), 8: (3, 8, 8)}
    stream = SynthFaceStream(resolutions=[16, 8], length=1)
    assert sorted(next(iter(stream))[0]) == [8, 16]
    with pytest.raises(InputError):
        ImageFolderDataset(mixed, 64, resolutions=[32, 16])
    with pytest.raises(InputError):
        ImageFolderDataset(mixed)


def test_scan_is_recursive_sorted_and_filters_extensions(mixed):
    found = scan_images(mixed)
    rel = [p.relative_to(mixed).as_posix() for p in found]
    assert rel == sorted(rel)
    names = [p.name for p in found]
    assert "notes.txt" not in names and "g.TIFF" in names and "f_wide.webp" in names
    assert len(names) == 8


def test_mixed_formats_pyramids_and_one_warning_per_corrupt_file(mixed):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = ImageFolderDataset(mixed, 32, 8, flip=False)
    corrupt = [w for w in caught if "h_corrupt.png" in str(w.message)]
    assert len(corrupt) == 1
    assert len(ds) == 7 and [p.name for p, _ in ds.skipped] == ["h_corrupt.png"]
    for i in range(len(ds)):
        item = ds[i]
        assert sorted(item) == [8, 16, 32]
        for r, t in item.items():
            assert t.shape == (3, r, r) and t.dtype == torch.float32
            assert t.min() >= -1.0 and t.max() <= 1.0
    by_name = {p.name: i for i, p in enumerate(ds.files)}
    rgba = ds[by_name["a_rgba.png"]][32]
    assert torch.allclose(rgba[:, 1, 1], torch.ones(3))  # transparent → white
    assert rgba[0, 16, 16] > 0.9 and rgba[1, 16, 16] < -0.9  # the red square
    g16 = ds[by_name["c_16bit.png"]][32]
    assert g16[0, 16, 0] < -0.95 and g16[0, 16, -1] > 0.95  # full 16-bit range → full 8-bit range
    assert torch.allclose(g16[0], g16[1]) and torch.allclose(g16[1], g16[2])
    assert abs(float(g16[0, 16, 15]) - (2 * 15 / 31 - 1)) < 0.05
    gray = ds[by_name["b_gray.jpg"]][16]
    assert abs(float(gray.mean()) - (100 / 127.5 - 1)) < 0.03
    pal = ds[by_name["d_palette.gif"]][8]
    assert pal[2].mean() > 0.9 and pal[0].mean() < -0.9  # the palette's blue
    tiny = ds[by_name["e_tiny.bmp"]][32]
    assert torch.allclose(tiny[:, 0, 0], torch.tensor([10, 200, 30]) / 127.5 - 1, atol=0.02)


@pytest.mark.filterwarnings("ignore:skipping unreadable image")
def test_same_flip_across_the_pyramid(mixed):
    ds = ImageFolderDataset(mixed, 32, 8, flip=True)
    idx = [p.name for p in ds.files].index("g.TIFF")
    torch.manual_seed(0)
    seen = set()
    for _ in range(24):
        item = ds[idx]
        states = {bool(t[:, :, : r // 2].mean() > t[:, :, r // 2 :].mean()) for r, t in item.items()}
        assert len(states) == 1  # every level flipped the same way
        seen |= states
    assert seen == {True, False}


@pytest.mark.filterwarnings("ignore:skipping unreadable image")
def test_crop_and_pad(mixed):
    crop = ImageFolderDataset(mixed, 16, 16, flip=False, fit="crop")
    pad = ImageFolderDataset(mixed, 16, 16, flip=False, fit="pad", background=(0, 0, 0))
    i = [p.name for p in crop.files].index("f_wide.webp")
    c, p = crop[i][16], pad[i][16]
    # 64×48 halves: the centred 48×48 crop is still half black, half white
    assert c[:, :, :6].max() < -0.9 and c[:, :, 10:].min() > 0.9
    # padding adds black bands above and below
    assert p[:, 0, 12].max() < -0.9 and p[:, 8, 12].min() > 0.9
    with pytest.raises(InputError):
        ImageFolderDataset(mixed, 16, fit="stretch")


def test_cache_gives_the_same_tensors(mixed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = ImageFolderDataset(mixed, 16, 8, flip=False)
        cached = ImageFolderDataset(mixed, 16, 8, flip=False, cache=True)
    assert plain.files == cached.files
    for i in range(len(plain)):
        a, b = plain[i], cached[i]
        assert all(torch.equal(a[r], b[r]) for r in a)


def test_truncated_file_is_replaced_with_a_warning(tmp_path):
    Image.new("RGB", (16, 16), (255, 0, 0)).save(tmp_path / "a.png")
    buf = tmp_path / "b.png"
    _halves(64, 64).save(buf)
    buf.write_bytes(buf.read_bytes()[:60])  # header intact, pixels cut off
    ds = ImageFolderDataset(tmp_path, 8, 8, flip=False)
    assert len(ds) == 2  # the header looked fine
    with pytest.warns(UserWarning, match="b.png"):
        item = ds[1]
    assert item[8][0].mean() > 0.9  # the next readable image (red) stands in
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds[1]  # warned only once


def test_empty_and_all_corrupt_folders_name_the_folder(tmp_path):
    empty = tmp_path / "nothing_here"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(EmptyFolderError, match="nothing_here") as e:
        ImageFolderDataset(empty, 16)
    assert isinstance(e.value, InputError)
    bad = tmp_path / "all_bad"
    bad.mkdir()
    (bad / "x.jpg").write_bytes(b"nope")
    with pytest.warns(UserWarning), pytest.raises(EmptyFolderError, match="all_bad"):
        ImageFolderDataset(bad, 16)
    with pytest.raises(InputError, match="missing_folder"):
        ImageFolderDataset(tmp_path / "missing_folder", 16)


def test_decompression_bomb_limit_stays(tmp_path, monkeypatch):
    Image.new("RGB", (64, 64)).save(tmp_path / "big.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "small.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64² is over twice this
    with pytest.warns(UserWarning, match="big.png"):
        ds = ImageFolderDataset(tmp_path, 8, 8, cache=True)
    assert [p.name for p in ds.files] == ["small.png"]


def test_synth_stream_matches_render_batch_and_mirrors_labels():
    images, labels = render_batch(3, 4, 32)
    stream = SynthFaceStream(32, 8, seed=3, length=4)
    items = list(stream)
    assert len(items) == 4
    for k, (pyr, lab) in enumerate(items):
        assert sorted(pyr) == [8, 16, 32] and pyr[16].shape == (3, 16, 16)
        top = ((pyr[32] + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
        assert np.array_equal(top, images[k])
        assert torch.allclose(lab, torch.from_numpy(labels[k]))
    flipped = SynthFaceStream(32, 32, seed=3, length=1)
    pyr, lab = flipped.item(0, flip=True)
    assert torch.equal(pyr[32], items[0][0][32].flip(-1))
    for name in ATTRIBUTES:
        j = ATTRIBUTES.index(name)
        want = 1 - labels[0, j] if name in ("yaw", "roll", "lighting") else labels[0, j]
        assert abs(float(lab[j]) - want) < 1e-6
    plain = next(iter(SynthFaceStream(16, 8, seed=3, length=1, with_labels=False)))
    assert sorted(plain) == [8, 16]


def test_synth_stream_splits_indices_between_workers():
    stream = SynthFaceStream(16, 16, seed=1, length=6)
    loader = DataLoader(stream, batch_size=None, num_workers=2)
    got = sorted(tuple(lab.tolist()) for _, lab in loader)
    _, labels = render_batch(1, 6, 16)
    assert got == sorted(tuple(row.tolist()) for row in torch.from_numpy(labels))


def test_symlink_loop_does_not_hang(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "sub").mkdir()
    try:
        (tmp_path / "sub" / "loop").symlink_to(tmp_path, target_is_directory=True)
    except OSError:
        pytest.skip("symlinks are not available here")
    assert [p.name for p in scan_images(tmp_path)] == ["a.png"]
