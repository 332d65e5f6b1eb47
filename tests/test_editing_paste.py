"""Paste-back: exact region size, untouched pixels bit-identical, masks honoured, seamless feather and
colour matching, and a faithful round trip of an unedited crop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anycost.data.synth_faces import render_index
from anycost.editing.align import align_face
from anycost.editing.paste import blend_weight, paste_back
from anycost.editing.region import Region
from anycost.errors import InputError

# Eye and mouth positions of synthetic face (seed 0, index 2) at 512 px, as dlib's 68-point model finds them.
LANDMARKS = {"left_eye": (198.3, 226.5), "right_eye": (280.7, 216.2), "mouth": (241.0, 327.0)}


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    img, _ = render_index(0, 2, 512)
    return img


def _region(face, alpha=True, mask=None) -> Region:
    rgba = np.dstack([face, np.full(face.shape[:2], 255, np.uint8)])
    if alpha:
        rgba[..., 3] = np.random.default_rng(3).integers(1, 256, face.shape[:2], dtype=np.uint8)
    return Region(rgba, mask)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def test_round_trip_of_the_unedited_crop(face):
    region = _region(face)
    al = align_face(region, 256, landmarks=LANDMARKS)
    out = paste_back(region, al, al.image)
    assert out.shape == region.rgba.shape and out.dtype == np.uint8
    w = blend_weight(region, al)
    inner = w > 0.99
    assert inner.sum() > 0.15 * inner.size
    assert _psnr(out[inner][:, :3], face[inner]) > 35.0
    np.testing.assert_array_equal(out[..., 3], region.rgba[..., 3])  # alpha is never touched
    # Colour matching an unedited crop is (almost) a no-op.
    plain = paste_back(region, al, al.image, color_match=False)
    assert np.abs(plain.astype(int) - out.astype(int)).max() <= 2


def test_zero_weight_pixels_are_bit_identical(face):
    region = _region(face)
    before = region.rgba.copy()
    al = align_face(region, 128, landmarks=LANDMARKS)
    edited = np.full((128, 128, 3), 255, np.uint8)
    edited[::2] = 0  # something very different from the input
    out = paste_back(region, al, edited)
    np.testing.assert_array_equal(region.rgba, before)  # the input is not modified
    w = blend_weight(region, al)
    zero = w == 0
    assert 0.2 < zero.mean() < 0.9
    np.testing.assert_array_equal(out[zero], before[zero])
    changed = np.any(out != before, axis=-1)
    assert changed[w > 0.5].mean() > 0.95
    # Only pixels inside the crop's square can have weight.
    ys, xs = np.nonzero(~zero)
    uv = al.to_aligned(np.stack([xs, ys], -1).astype(float))
    assert uv.min() > -0.5 and uv.max() < 127.5


def test_selection_mask_is_respected(face):
    white = np.full((128, 128, 3), 255, np.uint8)
    empty = _region(face, mask=np.zeros(face.shape[:2], np.uint8))
    al = align_face(empty, 128, landmarks=LANDMARKS)
    np.testing.assert_array_equal(paste_back(empty, al, white), empty.rgba)
    # Left half selected: the right half stays exactly as it was, the left half changes.
    mask = np.zeros(face.shape[:2], np.uint8)
    mask[:, :240] = 255
    mask[:, 240:250] = 128  # half-selected column band blends half as strongly
    half = _region(face, mask=mask)
    out = paste_back(half, al, white, color_match=False, selection_feather=0.0)  # the mask as given, no fall-off
    np.testing.assert_array_equal(out[:, 250:], half.rgba[:, 250:])
    assert np.all(out[200:300, 200:240, :3] >= half.rgba[200:300, 200:240, :3])
    assert (out[200:300, 200:240, :3] > half.rgba[200:300, 200:240, :3]).mean() > 0.9
    full_w = blend_weight(_region(face), al)
    np.testing.assert_allclose(blend_weight(half, al, selection_feather=0.0)[:, 240:250],
                               full_w[:, 240:250] * (128 / 255), atol=1e-6)


def test_hard_selection_edge_through_the_face_shows_no_step(face):
    """A rectangle selection cutting the face: the edit fades out inside the selection's edge instead of
    stopping at it, and nothing outside the selection changes."""
    mask = np.zeros(face.shape[:2], np.uint8)
    mask[100:420, 120:260] = 255  # the right edge runs down the middle of the face
    region = _region(face, alpha=False, mask=mask)
    al = align_face(region, 256, landmarks=LANDMARKS)
    brighter = np.clip(al.image.astype(int) + 60, 0, 255).astype(np.uint8)  # a strong, even edit

    def step_at_edge(out: np.ndarray) -> float:
        change = out[150:380, :, :3].astype(int) - face[150:380, :, :3].astype(int)
        return float(np.abs(change[:, 259] - change[:, 260]).mean())  # last selected column vs first outside

    hard = paste_back(region, al, brighter, reference=al.image, blend="delta", selection_feather=0.0)
    soft = paste_back(region, al, brighter, reference=al.image, blend="delta")
    assert step_at_edge(hard) > 30, "without the fall-off the edit stops dead at the edge: the check can fail"
    assert step_at_edge(soft) < 2
    outside = mask == 0
    np.testing.assert_array_equal(soft[outside], region.rgba[outside])
    change = np.abs(soft[..., :3].astype(int) - face.astype(int)).max(-1)
    assert change[200:300, 150:200].mean() > 40, "deeper inside the selection the edit is whole"
    # the ramp is smooth: no jump between neighbouring columns anywhere along the way in
    assert np.abs(np.diff(change[150:380, 120:261].astype(float), axis=1)).mean(0).max() < 12
    # the fall-off stays inside the selection: a selection covering the whole region changes nothing
    full = _region(face, alpha=False, mask=np.full(face.shape[:2], 255, np.uint8))
    np.testing.assert_array_equal(blend_weight(full, al), blend_weight(_region(face, alpha=False), al))
    with pytest.raises(InputError, match="selection_feather"):
        paste_back(region, al, brighter, selection_feather=0.9)


def test_feather_has_no_seam_at_the_crop_border():
    black = Region.from_array(np.zeros((400, 400, 3), np.uint8))
    lm = {"left_eye": (180.0, 190.0), "right_eye": (220.0, 190.0), "mouth": (200.0, 234.0)}
    al = align_face(black, 128, landmarks=lm)
    white = np.full((128, 128, 3), 255, np.uint8)
    feather = 0.1
    out = paste_back(black, al, white, use_face_mask=False, color_match=False, feather=feather)[..., 0].astype(int)
    px_per_crop_px = 1.0 / np.sqrt(abs(np.linalg.det(al.matrix[:2, :2])))
    width = feather * 128 * px_per_crop_px  # feather width in region pixels
    bound = 255 * 1.5 / width + 2  # steepest slope of the smoothstep, plus rounding
    step = max(np.abs(np.diff(out, axis=0)).max(), np.abs(np.diff(out, axis=1)).max())
    assert step <= bound
    assert out.max() == 255 and out[0, 0] == 0
    hard = paste_back(black, al, white, use_face_mask=False, color_match=False, feather=0.0)[..., 0].astype(int)
    assert np.abs(np.diff(hard, axis=1)).max() > 200  # without a feather there is a seam: the check can fail


def test_colour_matching_removes_a_cast(face):
    region = _region(face, alpha=False)
    al = align_face(region, 256, landmarks=LANDMARKS)
    cast = al.image.astype(int) + np.array([40, 0, -30])
    cast = np.clip(cast, 0, 255).astype(np.uint8)
    w = blend_weight(region, al)
    sel = w > 0
    raw = paste_back(region, al, cast, color_match=False)
    matched = paste_back(region, al, cast, color_match=True)
    orig_mean = face[sel].mean(0)
    err_raw = np.abs(raw[sel][:, :3].mean(0) - orig_mean)
    err_matched = np.abs(matched[sel][:, :3].mean(0) - orig_mean)
    assert err_raw[0] > 10 and err_raw[2] > 8
    assert np.all(err_matched < 0.3 * err_raw + 0.5)
    # Weaker strength corrects less.
    half = paste_back(region, al, cast, color_match=True, color_strength=0.5)
    err_half = np.abs(half[sel][:, :3].mean(0) - orig_mean)
    assert err_matched[0] < err_half[0] < err_raw[0]
    # Only blended pixels change.
    np.testing.assert_array_equal(matched[~sel], region.rgba[~sel])


def test_colour_matching_on_a_reference_keeps_deliberate_edits(face):
    region = _region(face, alpha=False)
    al = align_face(region, 256, landmarks=LANDMARKS)
    recon = np.clip(al.image.astype(int) + np.array([30, -10, -25]), 0, 255)  # reconstruction with a cast
    edit = recon + np.array([50, 0, 0])  # the user's edit: redder everywhere in the crop
    recon, edit = recon.clip(0, 255).astype(np.uint8), edit.clip(0, 255).astype(np.uint8)
    core = blend_weight(region, al) > 0.99
    base = face[core].astype(float).mean(0)
    with_ref = paste_back(region, al, edit, reference=recon)[core][:, :3].mean(0) - base
    self_fit = paste_back(region, al, edit)[core][:, :3].mean(0) - base
    # The cast is gone, the edit's red shift stays (up to clipping at 255).
    assert 35 < with_ref[0] < 55 and abs(with_ref[1]) < 3 and abs(with_ref[2]) < 3
    # Fitting on the edited crop itself undoes most of the edit: the reason to pass a reference.
    assert self_fit[0] < 0.5 * with_ref[0]
    with pytest.raises(InputError, match="reference"):
        paste_back(region, al, edit, reference=np.zeros((4, 4), np.uint8))


def test_edited_image_forms(face):
    region = _region(face)
    al = align_face(region, 256, landmarks=LANDMARKS)
    ref = paste_back(region, al, al.image, color_match=False)
    t = torch.from_numpy(al.image).permute(2, 0, 1).float() / 127.5 - 1.0
    big = torch.nn.functional.interpolate(t[None], size=(512, 512), mode="bicubic", align_corners=False)
    small = torch.nn.functional.interpolate(t[None], size=(128, 128), mode="bilinear", antialias=True)
    w = blend_weight(region, al) > 0.99
    for edited, min_psnr in [
        (t, 45.0),  # (3, H, W) in [-1, 1]
        (t[None], 45.0),  # (1, 3, H, W)
        (big, 38.0),  # larger than the crop
        (small, 28.0),  # smaller than the crop (lost detail)
        (np.dstack([al.image, np.zeros((256, 256), np.uint8)]), 100.0),  # RGBA uint8: alpha ignored
        (t.permute(1, 2, 0).numpy(), 45.0),  # float HWC in [-1, 1]
        (torch.from_numpy(al.image).permute(2, 0, 1).contiguous(), 100.0),  # uint8 tensor
    ]:
        out = paste_back(region, al, edited, color_match=False)
        assert out.shape == region.rgba.shape
        assert _psnr(out[w], ref[w]) > min_psnr


def test_face_near_the_region_border(face):
    # Crop hanging over the top-left corner: still the exact region size, outside pixels untouched.
    region = _region(face[150:, 120:])
    lm = {k: (v[0] - 120, v[1] - 150) for k, v in LANDMARKS.items()}
    al = align_face(region, 128, landmarks=lm)
    out = paste_back(region, al, np.full((128, 128, 3), 255, np.uint8))
    assert out.shape == region.rgba.shape
    zero = blend_weight(region, al) == 0
    np.testing.assert_array_equal(out[zero], region.rgba[zero])
    assert (out[:5, :5, :3] != region.rgba[:5, :5, :3]).any()  # the face reaches the corner


def test_bad_inputs(face):
    region = _region(face)
    al = align_face(region, 64, landmarks=LANDMARKS)
    other = _region(face[:400])
    with pytest.raises(InputError, match="alignment was made"):
        paste_back(other, al, al.image)
    bad = al.image.astype(np.float32) / 127.5 - 1
    bad[3, 3, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        paste_back(region, al, bad)
    with pytest.raises(InputError, match="edited image"):
        paste_back(region, al, al.image[..., 0])
    with pytest.raises(InputError, match="edited image"):
        paste_back(region, al, torch.zeros(2, 3, 64, 64))
    with pytest.raises(InputError, match="uint8 or float"):
        paste_back(region, al, al.image.astype(np.int32))
    for f in (-0.1, 0.6, float("nan")):
        with pytest.raises(InputError, match="feather"):
            paste_back(region, al, al.image, feather=f)
    with pytest.raises(InputError, match="color_strength"):
        paste_back(region, al, al.image, color_strength=2.0)


def test_delta_blend_adds_only_the_edit(face):
    region = _region(face)
    al = align_face(region, 128, landmarks=LANDMARKS)
    rng = np.random.default_rng(5)
    reference = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)  # a poor reconstruction
    # No edit: every pixel stays bit-identical, however far the reconstruction is from the region.
    same = paste_back(region, al, reference, reference=reference, blend="delta")
    np.testing.assert_array_equal(same, region.rgba)
    # A uniform edit (+40 in red) arrives as +40 × blend weight on the original pixels, detail kept.
    edited = reference.astype(np.int16)
    edited[..., 0] += 40
    edited = edited.clip(0, 255).astype(np.uint8)
    shift = edited.astype(np.float32) - reference  # exactly what clipping left of the +40
    assert shift[..., 0].min() >= 0 and shift[..., 1:].max() == 0
    out = paste_back(region, al, edited, reference=reference, blend="delta")
    w = blend_weight(region, al)
    inner = w > 0.999
    assert inner.sum() > 0.1 * inner.size
    gained = out[..., 0].astype(int) - face[..., 0]
    room = 255 - face[..., 0].astype(int)
    assert (gained[inner] <= np.minimum(room[inner], 40)).all() and (gained >= 0).all()
    assert np.median(gained[inner & (room >= 40)]) >= 20  # clipped reference pixels add less
    np.testing.assert_array_equal(out[..., 1:], region.rgba[..., 1:])  # green, blue, alpha untouched
    np.testing.assert_array_equal(out[w <= 0], region.rgba[w <= 0])
    with pytest.raises(InputError, match="reference"):
        paste_back(region, al, edited, blend="delta")
    with pytest.raises(InputError, match="blend"):
        paste_back(region, al, edited, reference=reference, blend="overlay")


def test_read_only_pixels_and_mask_paste_without_warnings(face):
    import warnings

    mask = np.zeros(face.shape[:2], np.uint8)
    mask[:, :256] = 255
    region = _region(face, mask=mask)
    writable = paste_back(region, align_face(region, 128, landmarks=LANDMARKS), np.full((128, 128, 3), 255, np.uint8),
                          color_match=False)
    region.rgba.setflags(write=False)  # as a buffer from Pillow or a host arrives
    region.mask.setflags(write=False)
    al = align_face(region, 128, landmarks=LANDMARKS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when it wraps a read-only array
        out = paste_back(region, al, np.full((128, 128, 3), 255, np.uint8), color_match=False)
        blend_weight(region, al)
    np.testing.assert_array_equal(out, writable)
    np.testing.assert_array_equal(out[:, 256:], region.rgba[:, 256:])


def test_paste_stops_between_stages_when_asked(face):
    """A preview paste nobody waits for any more stops early (RenderCancelled); a check that always says no
    changes nothing."""
    from anycost.errors import RenderCancelled

    region = _region(face, alpha=False)
    al = align_face(region, 256, landmarks=LANDMARKS)
    edited = np.clip(al.image.astype(int) + 40, 0, 255).astype(np.uint8)
    for blend in ("delta", "replace"):
        plain = paste_back(region, al, edited, reference=al.image, blend=blend)
        np.testing.assert_array_equal(paste_back(region, al, edited, reference=al.image, blend=blend,
                                                 cancel=lambda: False), plain)
        for stop_at in (1, 2):  # the first check (after the weight), the second (after the warp)
            asked: list[int] = []

            def check(asked=asked, stop_at=stop_at) -> bool:
                asked.append(1)
                return len(asked) >= stop_at

            with pytest.raises(RenderCancelled):
                paste_back(region, al, edited, reference=al.image, blend=blend, cancel=check)
            assert len(asked) == stop_at, "stopped at once when told"


def test_selection_falloff_is_computed_once_per_selection(face):
    """Every preview of a session pastes through the same selection: its fall-off is kept, and a new
    selection (even at the same address) gets its own."""
    from anycost.editing import paste

    mask = np.zeros(face.shape[:2], np.uint8)
    mask[100:420, 120:260] = 255
    region = _region(face, alpha=False, mask=mask)
    al = align_face(region, 256, landmarks=LANDMARKS)
    first = blend_weight(region, al)
    kept = {key: value for key, (_, value) in paste._FALLOFFS.items()}
    assert kept, "a selection with an edge has a fall-off"
    np.testing.assert_array_equal(blend_weight(region, al), first)
    assert all(paste._FALLOFFS[key][1] is value for key, value in kept.items()), "reused, not computed again"
    other = mask.copy()
    other[:, 200:] = 0  # a narrower selection
    narrower = blend_weight(_region(face, alpha=False, mask=other), al)
    assert (narrower[:, 200:] == 0).all() and narrower[:, 120:200].max() > 0.5
    np.testing.assert_array_equal(blend_weight(region, al), first)


def test_paste_geometry_is_kept_per_region_and_alignment(face):
    """Every preview of a session pastes with the same region and alignment: the sampling grid and the blend
    weight are kept (the result is bit-identical to computing them again), while another selection or
    another alignment gets its own; and nothing outside ``paste_bounds`` ever changes."""
    from anycost.editing import paste
    from anycost.service.worker import changed_box

    mask = np.zeros(face.shape[:2], np.uint8)
    mask[100:420, 120:300] = 255
    region = _region(face, alpha=False, mask=mask)
    al = align_face(region, 128, landmarks=LANDMARKS)
    edited = np.full((128, 128, 3), 255, np.uint8)
    edited[::2] = 0
    paste._GEOMETRIES.clear()
    first = paste_back(region, al, edited)
    kept = [value for _, _, value in paste._GEOMETRIES.values()]
    assert len(kept) == 1
    np.testing.assert_array_equal(paste_back(region, al, edited), first)
    assert [value for _, _, value in paste._GEOMETRIES.values()][0] is kept[0], "reused, not computed again"

    narrower_mask = mask.copy()
    narrower_mask[:, 200:] = 0
    narrower = paste_back(_region(face, alpha=False, mask=narrower_mask), al, edited)
    assert (narrower[:, 200:, :3] == face[:, 200:]).all() and (narrower[:, 120:200, :3] != face[:, 120:200]).any()
    shifted = align_face(region, 128, landmarks={k: (x + 20, y) for k, (x, y) in LANDMARKS.items()})
    assert not np.array_equal(paste_back(region, shifted, edited), first)

    x0, y0, x1, y1 = paste.paste_bounds(region, al)
    outside = np.ones(face.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    np.testing.assert_array_equal(first[outside], region.rgba[outside])
    assert changed_box(first, region.rgba, (x0, y0, x1, y1)) == changed_box(first, region.rgba) is not None


def test_changed_box_finds_every_changed_pixel():
    from anycost.service.worker import changed_box

    rng = np.random.default_rng(5)
    a = rng.integers(0, 255, (64, 80, 4), dtype=np.uint8)
    assert changed_box(a.copy(), a) is None
    for y, x, c in [(0, 0, 0), (63, 79, 3), (10, 41, 2), (33, 7, 1)]:
        b = a.copy()
        b[y, x, c] ^= 1  # one bit of one channel of one pixel, alpha included
        assert changed_box(b, a) == (x, y, 1, 1)
        assert changed_box(b, a, (x, y, x + 1, y + 1)) == (x, y, 1, 1)
        assert changed_box(np.asfortranarray(b), a) == (x, y, 1, 1), "any memory layout"
    b = a.copy()
    b[5:9, 20:31, 0] += 1
    assert changed_box(b, a) == changed_box(b, a, (10, 0, 40, 64)) == (20, 5, 11, 4)
