"""The synthetic face generator: determinism, labels, attribute effects, the dataset writer and CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anycost.data.synth_faces import (
    ATTRIBUTES,
    LABELS_FILE,
    FaceAttributes,
    face_attributes,
    generate_dataset,
    load_labels,
    render_batch,
    render_face,
    render_index,
    sample_attributes,
)
from anycost.errors import InputError

REPO = Path(__file__).resolve().parents[1]


def test_attribute_names_are_stable_and_labels_in_range():
    assert ATTRIBUTES[:7] == ("smile", "mouth_open", "age", "hair_length", "bangs", "eyeglasses", "beard")
    assert len(set(ATTRIBUTES)) == len(ATTRIBUTES)
    _, labels = render_batch(3, 24, 16)
    assert labels.shape == (24, len(ATTRIBUTES)) and labels.dtype == np.float32
    assert labels.min() >= 0.0 and labels.max() <= 1.0
    assert set(np.unique(labels[:, ATTRIBUTES.index("eyeglasses")])) <= {0.0, 1.0}
    # independent sampling: every attribute actually varies
    assert (labels.std(axis=0) > 0.05).all()


def test_same_seed_same_bytes_and_different_seed_differs():
    a, la = render_batch(11, 3, 32)
    b, lb = render_batch(11, 3, 32)
    c, _ = render_batch(12, 3, 32)
    assert a.dtype == np.uint8 and a.shape == (3, 32, 32, 3)
    assert a.tobytes() == b.tobytes() and np.array_equal(la, lb)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a[0], a[1])


def test_any_subset_in_any_order_gives_the_same_images():
    full, labels = render_batch(5, 6, 24)
    for i in (5, 2, 4):
        img, lab = render_index(5, i, 24)
        assert np.array_equal(img, full[i]) and np.array_equal(lab, labels[i])
    part, _ = render_batch(5, 2, 24, start=3)
    assert np.array_equal(part, full[3:5])


def test_render_face_sizes_and_errors():
    attrs = face_attributes(0, 0)
    for res in (32, 64, 256):
        img = render_face(attrs, res)
        assert img.mode == "RGB" and img.size == (res, res)
    with pytest.raises(InputError):
        render_face(attrs, 4)
    with pytest.raises(InputError):
        face_attributes(-1, 0)
    with pytest.raises(InputError, match="style"):
        render_face(FaceAttributes(style=(0.5,) * 3), 32)
    assert render_face(FaceAttributes(), 32).size == (32, 32)  # the defaults draw a face


def _frontal(seed: int) -> FaceAttributes:
    base = sample_attributes(np.random.default_rng(seed))
    return base.replace(
        yaw=0.5,
        roll=0.5,
        lighting=0.5,
        smile=0.3,
        mouth_open=0.0,
        age=0.2,
        hair_length=0.1,
        bangs=0.0,
        eyeglasses=0.0,
        beard=0.0,
        hair_darkness=0.9,
        hair_redness=0.0,
        skin_tone=0.3,
    )


def _diff(attrs: FaceAttributes, res: int = 64, **change: float) -> np.ndarray:
    a = np.asarray(render_face(attrs, res), dtype=np.float64)
    b = np.asarray(render_face(attrs.replace(**change), res), dtype=np.float64)
    return np.abs(a - b).sum(axis=2)


def _share(diff: np.ndarray, y0: float, y1: float, x0: float = 0.0, x1: float = 1.0) -> float:
    n = diff.shape[0]
    box = diff[int(y0 * n) : int(y1 * n), int(x0 * n) : int(x1 * n)].sum()
    return box / max(diff.sum(), 1e-9)


# attribute, change from the frontal base, region (y0, y1, x0, x1) that must hold most of the change
REGIONS = [
    ("eyeglasses", {"eyeglasses": 1.0}, (0.33, 0.56, 0.15, 0.85)),
    ("smile", {"smile": 1.0}, (0.38, 0.8, 0.2, 0.8)),
    ("mouth_open", {"mouth_open": 1.0}, (0.55, 0.8, 0.25, 0.75)),
    ("beard", {"beard": 1.0}, (0.45, 0.9, 0.15, 0.85)),
    ("bangs", {"bangs": 1.0}, (0.15, 0.45, 0.2, 0.8)),
    ("hair_length", {"hair_length": 1.0}, (0.3, 1.0, 0.0, 1.0)),
    ("age", {"age": 1.0}, (0.05, 0.85, 0.1, 0.9)),
    ("skin_tone", {"skin_tone": 0.95}, (0.15, 1.0, 0.15, 0.85)),
    ("hair_darkness", {"hair_darkness": 0.05}, (0.0, 0.5, 0.0, 1.0)),
    ("hair_redness", {"hair_redness": 1.0}, (0.0, 0.5, 0.0, 1.0)),
    ("yaw", {"yaw": 1.0}, (0.1, 0.9, 0.1, 0.9)),
    ("roll", {"roll": 1.0}, (0.0, 1.0, 0.0, 1.0)),
    ("lighting", {"lighting": 0.0}, (0.0, 1.0, 0.0, 1.0)),
]


@pytest.mark.parametrize("name,change,region", REGIONS, ids=[r[0] for r in REGIONS])
def test_each_attribute_changes_its_region(name, change, region):
    assert name in ATTRIBUTES
    for seed in (1, 2):
        diff = _diff(_frontal(seed), **change)
        assert diff.mean() > 0.5, f"{name} changed almost nothing"
        share = _share(diff, *region)
        assert share > 0.7, f"{name}: only {share:.0%} of the change lies in the expected region"


def test_lighting_direction_brightens_the_lit_side():
    base = _frontal(3)
    left = np.asarray(render_face(base.replace(lighting=0.0), 64), dtype=np.float64).mean(axis=2)
    right = np.asarray(render_face(base.replace(lighting=1.0), 64), dtype=np.float64).mean(axis=2)
    face = slice(20, 44)
    assert left[face, 16:30].mean() > right[face, 16:30].mean() + 5  # image-left part of the face
    assert right[face, 34:48].mean() > left[face, 34:48].mean() + 5


def test_yaw_moves_the_features_towards_the_turned_side():
    # locate the mouth as the change made by opening it, at three head turns
    xs = np.arange(64)
    for seed in (4, 6):
        centre = []
        for yaw in (0.0, 0.5, 1.0):
            d = _diff(_frontal(seed).replace(yaw=yaw), mouth_open=1.0)
            centre.append((d.sum(axis=0) * xs).sum() / d.sum())
        assert centre[0] + 2 < centre[1] < centre[2] - 2, centre


def test_generate_dataset_writes_images_and_consistent_labels(tmp_path):
    out = tmp_path / "faces"
    path = generate_dataset(out, 5, 32, seed=9, workers=2, progress=False)
    assert path == out / LABELS_FILE
    meta = json.loads(path.read_text())
    assert meta["attributes"] == list(ATTRIBUTES) and meta["count"] == 5 and meta["resolution"] == 32
    files, names, labels = load_labels(out)
    assert files == [f"{i:06d}.png" for i in range(5)] and names == ATTRIBUTES
    images, expected = render_batch(9, 5, 32)
    np.testing.assert_allclose(labels, expected, atol=1e-6)
    for i, f in enumerate(files):
        with Image.open(out / f) as im:
            assert np.array_equal(np.asarray(im.convert("RGB")), images[i])
    assert sorted(os.listdir(out)) == sorted(files + [LABELS_FILE])  # no temporary files left
    # a single worker writes the same thing
    generate_dataset(tmp_path / "one", 5, 32, seed=9, workers=1, progress=False)
    for f in files:
        assert (tmp_path / "one" / f).read_bytes() == (out / f).read_bytes()


def test_generate_dataset_refuses_bad_input(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(InputError, match="not empty"):
        generate_dataset(tmp_path / "full", 2, 16, progress=False)
    with pytest.raises(InputError):
        generate_dataset(tmp_path / "x", 0, 16, progress=False)
    with pytest.raises(InputError):
        generate_dataset(tmp_path / "x", 2, 2, progress=False)
    with pytest.raises(InputError):
        load_labels(tmp_path / "full")


def test_throughput_at_128(capsys):
    attrs = [face_attributes(0, i) for i in range(12)]
    t0 = time.perf_counter()
    for a in attrs:
        render_face(a, 128)
    dt = (time.perf_counter() - t0) / len(attrs)
    with capsys.disabled():
        print(f"\nsynthetic faces at 128 px: {dt * 1000:.1f} ms each, {60 / dt:.0f}/min on one core")
    assert dt > 0


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "backend"))
    return subprocess.run(
        [sys.executable, "-m", "anycost", "data", *args], capture_output=True, text=True, env=env, timeout=180
    )


def test_cli_end_to_end(tmp_path):
    out = tmp_path / "set"
    r = _cli("synth-faces", "--n", "6", "--res", "32", "-o", str(out), "--seed", "4", "--workers", "2")
    assert r.returncode == 0, r.stderr
    files, names, labels = load_labels(out)
    assert len(files) == 6 and labels.shape == (6, len(ATTRIBUTES))
    images, _ = render_batch(4, 6, 32)
    with Image.open(out / "000005.png") as im:
        assert np.array_equal(np.asarray(im), images[5])

    r = _cli("check", str(out))
    assert r.returncode == 0, r.stderr
    assert "6 image files, 6 readable, 0 unreadable" in r.stdout and "labels.json" in r.stdout

    sheet = tmp_path / "sheet.png"
    r = _cli("preview", str(out), "-o", str(sheet), "--count", "4", "--columns", "2", "--size", "32")
    assert r.returncode == 0, r.stderr
    with Image.open(sheet) as im:
        assert im.size == (2 * 34 + 2, 2 * 34 + 2)

    r = _cli("synth-faces", "--n", "2", "--res", "32", "-o", str(out))
    assert r.returncode == 2 and "not empty" in r.stderr
