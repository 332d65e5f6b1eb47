"""Face alignment: FFHQ construction, exact transforms, the centre-crop fallback and (if installed) dlib."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from anycost.editing import align
from anycost.editing.align import align_face, dlib_available, face_mask, ffhq_frame, normalize_landmarks
from anycost.editing.region import Region
from anycost.errors import InputError

S = 64


def _gradient_region(h=300, w=360) -> Region:
    """Smooth test pattern: bicubic resampling reproduces it closely, so the warp can be checked pointwise."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 40 + 170 * x / w
    g = 40 + 170 * y / h
    b = 128 + 60 * np.sin(x / 37.0) * np.cos(y / 29.0)
    return Region.from_array(np.dstack([r, g, b]).round().astype(np.uint8))


def _landmarks(center=(180.0, 140.0), eye_dist=40.0, mouth_drop=44.0, angle_deg=0.0) -> dict:
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    local = {
        "left_eye": (-eye_dist / 2, 0.0), "right_eye": (eye_dist / 2, 0.0),
        "mouth_left": (-eye_dist * 0.4, mouth_drop), "mouth_right": (eye_dist * 0.4, mouth_drop),
    }
    return {k: tuple(rot @ np.array(v) + np.array(center)) for k, v in local.items()}


def test_ffhq_frame_follows_the_recipe():
    lm = _landmarks(eye_dist=40.0, mouth_drop=44.0)
    c, x, y = ffhq_frame(lm["left_eye"], lm["right_eye"], normalize_landmarks(lm)["mouth"])
    # Upright face: x along the image x axis, y = x turned a quarter towards +y (down), half side =
    # max(2·|eye_to_eye|, 1.8·|eye_to_mouth|), centre 0.1·eye_to_mouth below the eye midpoint.
    half = max(2 * 40.0, 1.8 * 44.0)
    np.testing.assert_allclose(x, [half, 0.0], atol=1e-9)
    np.testing.assert_allclose(y, [0.0, half], atol=1e-9)
    np.testing.assert_allclose(c, [180.0, 140.0 + 4.4], atol=1e-9)
    # A long face: the eye-to-mouth term wins.
    _, x2, _ = ffhq_frame((0, 0), (20, 0), (10, 60))
    assert np.hypot(*x2) == pytest.approx(1.8 * 60)


@pytest.mark.parametrize("angle", [0.0, 27.0, -140.0])
def test_transform_round_trip_and_levelled_eyes(angle):
    region = _gradient_region()
    lm = _landmarks(angle_deg=angle)
    al = align_face(region, S, landmarks=lm)
    assert al.method == "landmarks" and al.notice is None
    assert al.image.shape == (S, S, 3) and al.image.dtype == np.uint8
    np.testing.assert_allclose(al.matrix @ al.inverse, np.eye(3), atol=1e-12)
    pts = np.array(list(lm.values()))
    np.testing.assert_allclose(al.to_region(al.to_aligned(pts)), pts, atol=1e-6)
    # The whole grid of crop pixels maps back and forth too.
    grid = np.stack(np.meshgrid(np.arange(S), np.arange(S)), -1).reshape(-1, 2).astype(float)
    np.testing.assert_allclose(al.to_aligned(al.to_region(grid)), grid, atol=1e-6)
    # Whatever the roll of the face, the crop has the eyes level and symmetric about the centre line.
    le, re = al.to_aligned([lm["left_eye"], lm["right_eye"]])
    assert abs(le[1] - re[1]) < 1e-6
    assert (le[0] + re[0]) / 2 == pytest.approx((S - 1) / 2, abs=1e-6)
    assert le[0] < re[0]
    # Eye distance is a quarter of the crop side (half side = 2·|eye_to_eye| for this face).
    assert re[0] - le[0] == pytest.approx(S / 4, rel=1e-9)


def test_warp_samples_the_region_where_the_transform_says():
    region = _gradient_region()
    al = align_face(region, S, landmarks=_landmarks(angle_deg=20.0, eye_dist=60.0))
    src = al.to_region(np.stack(np.meshgrid(np.arange(S), np.arange(S)), -1).reshape(-1, 2).astype(float))
    # Nearest-neighbour lookup of the smooth source at the mapped positions (bilinear would be closer;
    # nearest keeps the check independent of the warp's own interpolation).
    xi = np.clip(np.rint(src[:, 0]).astype(int), 0, region.width - 1)
    yi = np.clip(np.rint(src[:, 1]).astype(int), 0, region.height - 1)
    inside = (src[:, 0] > 2) & (src[:, 0] < region.width - 3) & (src[:, 1] > 2) & (src[:, 1] < region.height - 3)
    assert inside.mean() > 0.9
    expected = region.rgb[yi, xi].astype(float)
    got = al.image.reshape(-1, 3).astype(float)
    err = np.abs(got - expected)[inside]
    assert err.mean() < 2.0 and err.max() < 12.0


def test_large_reduction_is_antialiased():
    # A 1-px checkerboard shrunk ~10× must come out as flat grey, not moiré.
    h = w = 800
    checker = ((np.indices((h, w)).sum(0) % 2) * 255).astype(np.uint8)
    region = Region.from_array(np.dstack([checker] * 3))
    al = align_face(region, S, landmarks=_landmarks(center=(400, 380), eye_dist=160, mouth_drop=170, angle_deg=10))
    assert abs(al.image.mean() - 127.5) < 3
    assert al.image.std() < 6


def test_centre_crop_when_alignment_is_off():
    region = _gradient_region(h=200, w=320)
    al = align_face(region, S, use_landmarks=False)
    assert al.method == "center-crop" and al.notice
    assert al.landmarks is None
    # Exactly the largest centred square: its corners map onto the crop's corners.
    np.testing.assert_allclose(
        al.corners(), [[59.5, -0.5], [259.5, -0.5], [259.5, 199.5], [59.5, 199.5]], atol=1e-9
    )
    expected = np.asarray(Image.fromarray(region.rgb[:, 60:260]).resize((S, S), Image.Resampling.LANCZOS))
    assert np.abs(al.image.astype(int) - expected).mean() < 2.0


def test_fallback_without_a_face_says_why():
    # A flat image has no face for any detector; without dlib the notice says dlib is missing.
    region = Region.from_array(np.full((120, 90, 3), 128, np.uint8))
    al = align_face(region, S)
    assert al.method == "center-crop"
    assert "fell back" in al.notice
    assert ("no face" in al.notice) if dlib_available() else ("dlib" in al.notice)


def test_bad_landmarks_and_sizes():
    region = _gradient_region()
    lm = _landmarks()
    with pytest.raises(InputError, match="missing"):
        align_face(region, S, landmarks={k: v for k, v in lm.items() if k != "right_eye"})
    with pytest.raises(InputError, match="finite"):
        align_face(region, S, landmarks={**lm, "left_eye": (np.nan, 3.0)})
    with pytest.raises(InputError, match="degenerate"):
        align_face(region, S, landmarks={"left_eye": (5, 5), "right_eye": (5, 5), "mouth": (5, 5)})
    with pytest.raises(InputError, match="array"):
        align_face(region, S, landmarks=np.zeros((7, 2)))
    for bad in (0, 4, 10_000, 12.5, True):
        with pytest.raises(InputError, match="aligned size"):
            align_face(region, bad, landmarks=lm)
    # A 'mouth' centre alone is accepted in place of the corners.
    only_centre = {"left_eye": lm["left_eye"], "right_eye": lm["right_eye"], "mouth": (180.0, 184.0)}
    np.testing.assert_allclose(align_face(region, S, landmarks=only_centre).matrix,
                               align_face(region, S, landmarks=lm).matrix, atol=1e-12)


def test_dlib_point_layouts():
    pts68 = np.zeros((68, 2))
    pts68[36:42] = (10.0, 20.0)
    pts68[42:48] = (30.0, 20.0)
    pts68[48], pts68[54] = (12.0, 40.0), (28.0, 40.0)
    lm = normalize_landmarks(pts68)
    assert lm["left_eye"] == (10.0, 20.0) and lm["right_eye"] == (30.0, 20.0) and lm["mouth"] == (20.0, 40.0)
    # 5-point layout, eyes listed right-then-left: ordering comes from the nose side, not the list order.
    pts5 = np.array([[32.0, 20.0], [28.0, 20.0], [8.0, 20.0], [12.0, 20.0], [20.0, 32.0]])
    lm5 = normalize_landmarks(pts5)
    assert lm5["left_eye"] == (10.0, 20.0) and lm5["right_eye"] == (30.0, 20.0)
    assert lm5["mouth"][1] == pytest.approx(20.0 + align.NOSE_TO_MOUTH_RATIO * 12.0)


def test_face_mask_shape_and_range():
    m = face_mask(128)
    assert m.shape == (128, 128) and m.dtype == np.float32
    assert m.min() == 0.0 and m.max() == 1.0
    assert m[64, 64] == 1.0 and m[0, 0] == 0.0 and m[0, 127] == 0.0 and m[127, 0] == 0.0
    assert np.abs(np.diff(m, axis=1)).max() < 0.15  # soft, no hard edge


# ----------------------------------------------------------------------------------------------------
# dlib (optional extra)

needs_dlib = pytest.mark.skipif(
    not dlib_available(), reason="dlib or its landmark model is not installed (extra 'align')"
)


def _synth_face(res=512):
    synth = pytest.importorskip("anycost.data.synth_faces")
    img, _ = synth.render_index(0, 2, res)  # a face dlib's HOG detector finds
    return img


@needs_dlib
def test_dlib_aligns_a_synthetic_face():
    img = _synth_face()
    region = Region.from_array(img)
    al = align_face(region, 256)
    assert al.method == "landmarks", al.notice
    assert al.notice is None
    le, re = al.to_aligned([al.landmarks["left_eye"], al.landmarks["right_eye"]])
    # Near level: the FFHQ axis also leans on the eye→mouth line, so the eyes are level only for a
    # perfectly symmetric face.
    assert abs(le[1] - re[1]) < 0.03 * 256
    assert 0.2 * 256 < re[0] - le[0] < 0.3 * 256
    mouth = al.to_aligned([al.landmarks["mouth"]])[0]
    assert 0.35 * 256 < le[1] < 0.55 * 256 < mouth[1] < 0.85 * 256
    # Landmarks survive a paste into a bigger canvas (the face is found wherever it is).
    canvas = np.full((700, 900, 3), 90, np.uint8)
    canvas[100:612, 300:812] = img
    al2 = align_face(Region.from_array(canvas), 256)
    assert al2.method == "landmarks"
    # Same face, same crop up to the detector's jitter (its boxes differ with the surroundings).
    corners = np.array([[0, 0], [255, 0], [0, 255], [255, 255]], float)
    side = np.hypot(*(al.to_region(corners[1:2]) - al.to_region(corners[:1]))[0])
    drift = np.abs(al2.to_region(corners) - (al.to_region(corners) + [300, 100])).max()
    assert drift < 0.05 * side
    assert np.abs(al2.image.astype(int) - al.image.astype(int)).mean() < 12


@needs_dlib
def test_dlib_prefers_the_selected_face():
    img = _synth_face()
    canvas = np.full((512, 1100, 3), 90, np.uint8)
    canvas[:, :512] = img
    canvas[:, 588:] = img
    for side in (0, 1):
        mask = np.zeros(canvas.shape[:2], np.uint8)
        mask[:, 550 * side: 550 * (side + 1)] = 255
        al = align_face(Region.from_array(canvas, mask), 128)
        assert al.method == "landmarks"
        assert (al.landmarks["left_eye"][0] > 588) == bool(side)


@needs_dlib
def test_five_point_model_agrees_with_68_points(monkeypatch):
    path68 = align.predictor_path()
    path5 = path68.with_name("shape_predictor_5_face_landmarks.dat")
    if not path5.is_file():
        pytest.skip("the 5-point landmark model is not installed")
    region = Region.from_array(_synth_face())
    a68 = align_face(region, 256)
    monkeypatch.setenv(align.PREDICTOR_ENV, str(path5))
    a5 = align_face(region, 256)
    assert a5.method == "landmarks" and "nose" in a5.landmarks
    # Same face, different points (eye corners and an estimated mouth): the crops roughly agree.
    corners = np.array([[0, 0], [255, 0], [0, 255], [255, 255]], float)
    side = np.hypot(*(a68.to_region(corners[1:2]) - a68.to_region(corners[:1]))[0])
    drift = np.abs(a5.to_region(corners) - a68.to_region(corners)).max()
    assert drift < 0.15 * side


def test_missing_predictor_file_falls_back(monkeypatch, tmp_path):
    monkeypatch.setenv(align.PREDICTOR_ENV, str(tmp_path / "nope.dat"))
    al = align_face(_gradient_region(), S)
    assert al.method == "center-crop"
    assert "fell back" in al.notice and ("nope.dat" in al.notice or "dlib" in al.notice)


@pytest.mark.parametrize("angle", [0.0, 15.0])
def test_a_measured_framing_crops_a_face_the_way_its_image_did(angle):
    # The image's own square is what a model trained on such images expects; the framing measured
    # from its landmarks must reproduce it from the landmarks alone (up to the face's roll).
    region = _gradient_region(h=300, w=300)
    lm = _landmarks(center=(160.0, 120.0), eye_dist=40.0, mouth_drop=44.0)
    f = align.Framing.of_image(lm, 300, 300)
    plain = align_face(region, S, landmarks=lm)
    framed = align_face(region, S, landmarks=lm, framing=f)
    corners = framed.corners()
    np.testing.assert_allclose(corners, [[-0.5, -0.5], [299.5, -0.5], [299.5, 299.5], [-0.5, 299.5]], atol=1e-6)
    assert f.scale == pytest.approx(150 / max(2 * 40, 1.8 * 44))
    assert np.hypot(*(plain.corners()[1] - plain.corners()[0])) < 300
    # The same framing follows a rolled face: scale and offsets turn with it, eyes stay level.
    rolled = _landmarks(center=(150.0, 150.0), angle_deg=angle)
    al = align_face(region, S, landmarks=rolled, framing=f)
    side = np.hypot(*(al.corners()[1] - al.corners()[0]))
    assert side == pytest.approx(300, rel=1e-9)
    le, re = al.to_aligned([rolled["left_eye"], rolled["right_eye"]])
    assert abs(le[1] - re[1]) < 1e-6
    np.testing.assert_allclose(al.matrix @ al.inverse, np.eye(3), atol=1e-12)


def test_framing_records_are_checked_and_the_median_is_robust():
    fs = [align.Framing(1.4, (0.0, 0.1)), align.Framing(1.5, (0.05, 0.08)), align.Framing(3.0, (1.0, -1.0))]
    m = align.Framing.median(fs)
    assert m.scale == 1.5 and m.shift == (0.05, 0.08)
    assert align.Framing.from_info({"framing": m.to_info()}) == m
    assert align.Framing.from_info({}) is None
    for bad in ({"scale": "x", "shift": [0, 0]}, {"scale": 1.0}, {"scale": 9.0, "shift": [0, 0]},
                {"scale": 1.0, "shift": [float("nan"), 0]}):
        with pytest.raises(InputError):
            align.Framing.from_info({"framing": bad})
    with pytest.raises(InputError):
        align.Framing.median([])
