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
    # the one check the service answers with too: numbers only (numpy's included), finite, in range
    for bad in ("0.5", True, float("inf"), None, [0.5]):
        with pytest.raises(InputError, match=r"slider 'sefa_1' must be a finite number in \[-1, 1\], got"):
            s.set(sefa_1=bad)
    with pytest.raises(InputError, match="sliders must be a map"):
        ed.check_sliders([("sefa_0", 0.5)])
    assert ed.check_sliders({"sefa_0": np.float32(0.5), "sefa_1": -1}) == {"sefa_0": 0.5, "sefa_1": -1.0}
    assert s.sliders == {}, "a refused value changes nothing"
    with pytest.raises(InputError, match="a cost must be 'full', 'preview' or RES:RATIO"):
        ed.cost(64)
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


# ---------------------------------------------------------------- bad input writes nothing


@pytest.fixture
def run_cli(capsys, one_torch_thread):
    """The real command line in this process (no interpreter start-up per case): (exit code, stderr)."""
    from anycost.cli import main

    def run(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        code = main([str(a) for a in args])
        return code, capsys.readouterr().err

    return run


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` × ``height``."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_cli_bad_inputs_exit_2_and_write_nothing(model_path, directions_file, canvas, tmp_path, run_cli):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "text.png").write_text("this is a text file, not a picture\n")
    (bad / "zero.png").write_bytes(_png_claiming(0, 64))
    (bad / "huge.png").write_bytes(_png_claiming(100_000, 100_000))
    Image.new("RGB", (20, 64)).save(bad / "small.png")
    Image.new("L", (100, 100)).save(bad / "mask.png")
    np.save(bad / "wrong.npy", np.zeros((3, 4), np.float32))
    np.save(bad / "words.npy", np.array(["a", "b"]))
    out = tmp_path / "out"  # every output below goes here; it must stay absent
    img, lat, prev = out / "o.png", out / "l.npy", out / "p.png"
    m = ("--model", model_path, "--refine-steps", "0")
    d = ("--directions", directions_file)
    edit = ("edit", "-o", img, "--save-latent", lat, *m)
    cases = [
        ((*edit, bad / "text.png"), "not an image file"),
        ((*edit, bad / "zero.png"), "not an image file"),
        ((*edit, bad / "huge.png"), "too large"),
        ((*edit, canvas, "--max-pixels", "5000"), "too large"),
        ((*edit, bad / "small.png"), "too small"),
        ((*edit, canvas, "--set", "sefa_0=0.5"), "has no edit directions"),
        ((*edit, canvas, *d, "--set", "smile=0.5"), "unknown slider 'smile'; valid sliders: sefa_0, sefa_1, sefa_2"),
        ((*edit, canvas, *d, "--set", "sefa_0=5"), "must be in [-1, 1]"),
        ((*edit, canvas, *d, "--set", "sefa_0=0.5", "--set", "sefa_1=-1.5"), "'sefa_1' must be in [-1, 1]"),
        ((*edit, canvas, "--load-latent", bad / "wrong.npy"), "latent has shape (1, 3, 4)"),
        ((*edit, canvas, "--load-latent", bad / "words.npy"), "numeric"),
        ((*edit, canvas, "--load-latent", tmp_path / "missing.npy"), "cannot read latent file"),
        ((*edit, canvas, "--mask", bad / "mask.png"), "must be the same size"),
        ((*edit, canvas, "--cost", "999:0.5"), "cost"),
        ((*edit, canvas, *d, "--direction-layers", "0-99", "--set", "sefa_0=0.5"), "style slot 99"),
        ((*edit, canvas, *d, "--direction-layers", "coarse"), "must look like 0-7"),
        ((*edit, canvas, "--direction-layers", "0-3"), "applies to the directions of --directions"),
        ((*edit, canvas, "--max-pixels", "0"), "--max-pixels must be at least 1024"),
        (("edit", canvas, "-o", out / "o.xyz", *m), "output must be an image file"),
        (("edit", canvas, "-o", out / ("y" * 300 + ".png"), *m), "File name too long"),
        (("edit", canvas, "-o", img, "--save-latent", out / "l.txt", *m), "must end in .npy"),
        (("edit", canvas, canvas.parent / "x" / canvas.name, "-o", out, *m), "would both be written as canvas"),
        (("edit", canvas, bad / "small.png", "-o", out, "--save-latent", out / "lats.npy", *m), "must be a folder"),
        (("edit", canvas, bad / "small.png", "-o", img, *m), "must be a folder"),
        (("project", canvas, "--out-latent", lat, "--preview", out / "p.xyz", *m), "output must be an image file"),
        (("project", canvas, "--out-latent", out / "l.txt", *m), "must end in .npy"),
        (("project", bad / "text.png", "--out-latent", lat, "--preview", prev, *m), "not an image file"),
        (("project", canvas, "--out-latent", lat, "--preview", prev, "--max-pixels", "5000", *m), "too large"),
        (("project", canvas, bad / "small.png", "--out-latent", out / "l.npy", *m), "must be a folder"),
    ]
    for args, message in cases:
        code, err = run_cli(*args)
        assert code == 2, (args, err)
        assert message in err, (args, err)
        assert "Traceback" not in err
        assert not out.exists(), (args, sorted(out.rglob("*")))


def test_unwritable_outputs_fail_and_leave_nothing(model_path, canvas, tmp_path, run_cli):
    out = tmp_path / "out"
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the latent's folder would be")
    # refused before any work (a file where the latent's folder would be)
    code, err = run_cli("edit", canvas, "-o", out / "o.png", "--save-latent", blocker / "l.npy",
                        "--model", model_path, "--refine-steps", "0")
    assert code == 2 and f"cannot write {blocker / 'l.npy'}: {blocker} is a file" in err, err
    assert not out.exists() or not any(out.iterdir())  # no image, no temporary file
    # in a batch, an output name taken by a folder fails that input only
    second = tmp_path / "second.png"
    second.write_bytes(canvas.read_bytes())
    (out / "second.png").mkdir(parents=True)
    code, err = run_cli("edit", canvas, second, "-o", out, "--save-latent", out / "lat", "--model", model_path,
                        "--refine-steps", "0")
    assert code == 2 and f"{second}: cannot write {out / 'second.png'}: a folder has that name" in err, err
    assert "1 of 2 inputs failed" in err
    assert sorted(p.name for p in out.iterdir()) == ["canvas.png", "lat", "second.png"]
    assert sorted(p.name for p in (out / "lat").iterdir()) == ["canvas.npy"]


def test_cli_batch_goes_on_after_an_os_error_with_a_progress_bar(model_path, canvas, tmp_path):
    # Pillow reads this input by its content, but its output name, NAME.png, is longer than a file name may
    # be. The output folders do not exist yet, so nothing sees that until the image and the latent have been
    # written under temporary names and the rename fails with an OSError: neither may be left behind.
    long = tmp_path / ("x" * 254)
    long.write_bytes(canvas.read_bytes())
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    outdir, latdir = tmp_path / "edited", tmp_path / "latents"
    r = _cli("edit", str(long), str(canvas), str(broken), "-o", str(outdir), "--save-latent", str(latdir),
             "--model", str(model_path), "--refine-steps", "0", "--threads", "1")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert f"{long}: cannot write {outdir / long.name}.png: File name too long" in r.stderr
    assert "broken.png: " in r.stderr and "not an image file" in r.stderr
    assert "2 of 3 inputs failed" in r.stderr
    assert "edit: 100%" in r.stderr and "3/3" in r.stderr  # the batch's progress bar, on stderr
    assert Image.open(outdir / "canvas.png").size == (160, 120)
    assert sorted(p.name for p in latdir.iterdir()) == ["canvas.npy"]  # no latent, no temporary file
    assert sorted(p.name for p in outdir.iterdir()) == ["canvas.png"]
    assert r.stdout.split() == [str(outdir / "canvas.png")]


def test_cli_project_batch(model_path, canvas, tmp_path, run_cli):
    second = tmp_path / "second.png"
    second.write_bytes(canvas.read_bytes())
    code, err = run_cli("project", canvas, second, "--out-latent", tmp_path / "lat", "--preview", tmp_path / "crop",
                        "--model", model_path, "--refine-steps", "0")
    assert code == 0, err
    assert "project: 100%" in err and "2/2" in err
    assert sorted(p.name for p in (tmp_path / "lat").iterdir()) == ["canvas.npy", "second.npy"]
    assert np.load(tmp_path / "lat" / "second.npy").shape == (10, 64)
    assert Image.open(tmp_path / "crop" / "canvas.png").size == (64, 64)


def test_editor_masks_limits_and_direction_layers(model_path, canvas, tmp_path):
    import warnings

    from anycost.editing.region import Region

    ed = Editor(model_path, use_lpips=False)
    orig = np.asarray(Image.open(canvas).convert("RGBA"))
    sel = np.zeros((120, 160), np.uint8)
    sel[30:90, 60:120] = 255
    Image.fromarray(sel).save(tmp_path / "sel.png")
    boundary = torch.zeros(1, 64)
    boundary[0, :8] = 1.0
    torch.save({"15_Eyeglasses": boundary}, tmp_path / "b.pt")
    loaded = ed.load_directions(tmp_path / "b.pt", layers=[0, 1, 2, 3])
    assert loaded["eyeglasses"].layers == [0, 1, 2, 3]
    # a mask path works for every kind of image argument, and a mask read from a file pastes without warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for image in (canvas, orig, Region.from_file(canvas)):
            s = ed.open(image, mask=tmp_path / "sel.png")
            np.testing.assert_array_equal(s.region.mask, sel)
            w = s.w_base.clone()
            s.set(eyeglasses=1.0)
            moved = s.latent() - w
            assert moved[0, :4].abs().sum() > 0 and moved[0, 4:].abs().sum() == 0  # only the chosen slots
            rgba = s.result("full")
            assert np.any(rgba != orig)
            np.testing.assert_array_equal(rgba[sel == 0], orig[sel == 0])
    small = Editor(model_path, use_lpips=False, max_pixels=100 * 100)
    for image in (canvas, orig, Region.from_file(canvas)):
        with pytest.raises(InputError, match="too large"):
            small.open(image)
    with pytest.raises(InputError, match="max_pixels"):
        Editor(model_path, max_pixels=0)
    with pytest.raises(InputError, match="empty"):
        ed.open(np.zeros((0, 40, 3), np.uint8))
