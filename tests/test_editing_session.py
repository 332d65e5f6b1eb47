"""The headless editor end to end on a real (small) generator: open → project → edit → result."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import anycost
from anycost.directions import save_directions_file, sefa_directions
from anycost.editing.session import Editor
from anycost.errors import InputError
from anycost.imageio import tensor_to_uint8


@pytest.fixture(scope="module")
def model_path(official_fixture):
    return official_fixture / "generator.pt"


@pytest.fixture(scope="module")
def directions_file(model_path, tmp_path_factory):
    G = anycost.load_generator(model_path)
    path = tmp_path_factory.mktemp("dirs") / "sefa.safetensors"
    save_directions_file(path, sefa_directions(G, k=3))
    return path


@pytest.fixture(scope="module")
def canvas(model_path, tmp_path_factory):
    """A 160×120 picture with a generated face (upscaled to 96 px) off-centre, saved as PNG."""
    G = anycost.load_generator(model_path)
    with torch.no_grad():
        face = tensor_to_uint8(G.synthesize(G.styles_from_seed(11, truncation=0.6)))[0]
    img = np.zeros((120, 160, 3), np.uint8)
    img[:] = (40, 90, 160)
    img[12:108, 40:136] = np.asarray(Image.fromarray(face).resize((96, 96), Image.BICUBIC))
    path = tmp_path_factory.mktemp("canvas") / "canvas.png"
    Image.fromarray(img).save(path)
    return path


def test_session_flow(model_path, directions_file, canvas):
    ed = Editor(model_path, use_lpips=False, directions=directions_file)
    assert list(ed.directions) == ["sefa_0", "sefa_1", "sefa_2"]
    s = ed.open(canvas)
    assert s.notice  # no landmarks for this generator's faces: centred crop, said so
    first = s.project(0)
    refined = s.project(30)
    assert refined.psnr > first.psnr
    base = s.render("full")
    s.set(sefa_0=1.0)
    edited = s.render("full")
    assert (edited - base).abs().mean() > 0.01
    assert s.render("32:0.5").shape == (1, 3, 32, 32)
    s.reset()
    assert torch.equal(s.render("full"), base)
    s.set(sefa_0=0.5, sefa_1=-0.5)
    rgba = s.result("full")
    orig = np.asarray(Image.open(canvas).convert("RGBA"))
    assert rgba.shape == orig.shape and rgba.dtype == np.uint8
    changed = np.any(rgba != orig, axis=-1)
    assert changed.any()
    ys, xs = np.nonzero(changed)
    # only the centred square crop (x 20..140) can change
    assert xs.min() >= 20 and xs.max() < 140


def test_blend_modes(model_path, directions_file, canvas):
    orig = np.asarray(Image.open(canvas).convert("RGBA"))
    ed = Editor(model_path, use_lpips=False, directions=directions_file)
    assert ed.blend == "delta"
    s = ed.open(canvas)
    # delta (default): sliders at zero leave every pixel as it was, whatever the reconstruction
    np.testing.assert_array_equal(s.result("full"), orig)
    s.set(sefa_0=1.0)
    delta = s.result("full")
    replace = s.result("full", blend="replace")
    moved = np.any(delta != orig, axis=-1)
    assert moved.sum() > 200
    # the edit is the same in both modes: where the render moves pixels, delta moves them too
    change_d = delta[..., :3].astype(int) - orig[..., :3]
    s.reset()
    unedited = s.result("full", blend="replace")
    change_r = replace[..., :3].astype(int) - unedited[..., :3]
    big = np.abs(change_r) > 20  # per channel
    assert big.sum() > 50
    # (not identical: the replace path is colour-matched and both clip at 0 and 255)
    corr = np.corrcoef(change_d[big], change_r[big])[0, 1]
    assert corr > 0.7, corr
    with pytest.raises(InputError, match="blend"):
        Editor(model_path, use_lpips=False, blend="multiply")


def test_bad_sliders_and_latents(model_path, directions_file, canvas, tmp_path):
    ed = Editor(model_path, use_lpips=False, directions=directions_file)
    s = ed.open(canvas)
    with pytest.raises(InputError, match="valid sliders: sefa_0, sefa_1, sefa_2"):
        s.set(smile=0.5)
    with pytest.raises(InputError, match=r"must be in \[-1, 1\]"):
        s.set(sefa_0=3)
    lat = tmp_path / "w.npy"
    s.save_latent(lat)
    s2 = ed.open(canvas)
    s2.load_latent(lat)
    assert torch.equal(s2.w_base, s.w_base)
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 4), np.float32))
    with pytest.raises(InputError, match="latent has shape"):
        s2.load_latent(bad)
    bare = Editor(model_path, use_lpips=False)
    with pytest.raises(InputError, match="no edit directions"):
        bare.open(canvas).set(sefa_0=0.5)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "anycost", *args], capture_output=True, text=True,
                          timeout=600, env=dict(os.environ))


def test_cli_edit_project_and_errors(model_path, directions_file, canvas, tmp_path):
    out = tmp_path / "out.png"
    lat = tmp_path / "lat.npy"
    r = _cli("edit", str(canvas), "-o", str(out), "--model", str(model_path), "--directions", str(directions_file),
             "--set", "sefa_0=0.7", "--refine-steps", "5", "--no-lpips", "--save-latent", str(lat), "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert Image.open(out).size == (160, 120) and np.load(lat).shape == (10, 64)
    r = _cli("project", str(canvas), "--out-latent", str(tmp_path / "p.npy"), "--model", str(model_path),
             "--refine-steps", "0", "--preview", str(tmp_path / "p.png"))
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "p.png").size == (64, 64)
    # batch: one good input, one broken file → the good one is written, exit code says something failed
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    outdir = tmp_path / "batch"
    r = _cli("edit", str(canvas), str(broken), "-o", str(outdir), "--model", str(model_path),
             "--refine-steps", "0")
    assert r.returncode == 2 and "broken.png" in r.stderr
    assert (outdir / "canvas.png").exists() and not (outdir / "broken.png").exists()
    bad_cases = [
        (["--set", "smile=1", "--directions", str(directions_file)], "valid sliders"),
        (["--set", "sefa_0=1"], "no edit directions"),
        (["--cost", "999:0.5"], "cost"),
        (["--load-latent", str(tmp_path / "p.png")], "latent"),
        (["--threads", "0"], "--threads must be at least 1"),
    ]
    for extra, msg in bad_cases:
        target = tmp_path / "never.png"
        r = _cli("edit", str(canvas), "-o", str(target), "--model", str(model_path), "--refine-steps", "0", *extra)
        assert r.returncode == 2 and msg in r.stderr, (extra, r.stderr)
        assert not target.exists()
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (20, 20)).save(tiny)
    r = _cli("edit", str(tiny), "-o", str(tmp_path / "never.png"), "--model", str(model_path))
    assert r.returncode == 2 and "too small" in r.stderr
