"""What `anycost edit`/`project` write and where: never over their own inputs unless told, lossless
formats keep untouched pixels exactly, colour profiles carried through, unwritable places refused
before any image is read, non-face models never run face detection, the LPIPS fallback as one note."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

import anycost
from anycost.cli import main
from anycost.directions import save_directions_file, sefa_directions
from anycost.editing import align
from anycost.editing.region import Region
from anycost.editing.session import Editor
from anycost.errors import InputError
from anycost.imageio import images_to_tensor, tensor_to_uint8
from anycost.io.modelfile import read_model
from anycost.registry import KNOWN_MODELS, spec_for

ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.fixture(scope="module")
def model_path(official_fixture):
    return official_fixture / "generator.pt"


@pytest.fixture(scope="module")
def directions_file(model_path, tmp_path_factory):
    G = anycost.load_generator(model_path)
    path = tmp_path_factory.mktemp("dirs") / "sefa.safetensors"
    save_directions_file(path, sefa_directions(G, k=2))
    return path


@pytest.fixture(scope="module")
def canvas(model_path, tmp_path_factory):
    """A 96×80 picture around a generated face, saved as PNG with an sRGB ICC profile."""
    G = anycost.load_generator(model_path)
    with torch.no_grad():
        face = tensor_to_uint8(G.synthesize(G.styles_from_seed(5, truncation=0.6)))[0]
    img = np.zeros((80, 96, 3), np.uint8)
    img[:] = (30, 100, 150)
    img[8:72, 16:80] = face
    path = tmp_path_factory.mktemp("canvas") / "canvas.png"
    Image.fromarray(img).save(path, icc_profile=ICC)
    return path


@pytest.fixture
def run_cli(capsys, one_torch_thread):
    def run(*args) -> tuple[int, str]:
        capsys.readouterr()
        code = main([str(a) for a in args])
        return code, capsys.readouterr().err

    return run


def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


def test_outputs_never_replace_inputs_without_overwrite(model_path, canvas, tmp_path, run_cli, monkeypatch):
    b1, b2 = _copy(canvas, tmp_path / "b1.png"), _copy(canvas, tmp_path / "b2.png")
    before = {p: p.read_bytes() for p in (b1, b2)}
    m = ("--model", model_path, "--refine-steps", "0")
    link = tmp_path / "link.png"
    link.symlink_to(b1)
    monkeypatch.chdir(tmp_path)
    cases = [
        (("edit", b1, b2, "-o", tmp_path, *m), f"refusing to overwrite the input {b1}"),
        (("edit", "b1.png", "b2.png", "-o", ".", *m), "refusing to overwrite the input b1.png"),
        (("edit", b1, "-o", b1, *m), f"refusing to overwrite the input {b1}"),
        (("edit", b1, "-o", link, *m), f"refusing to overwrite {link}, which is the input {b1}"),
        (("edit", b1, "-o", b2, "--mask", b2, *m), f"refusing to overwrite the input {b2}"),
        (("project", b1, "--out-latent", tmp_path / "l.npy", "--preview", b1, *m), "refusing to overwrite"),
        (("project", b1, b2, "--out-latent", tmp_path / "lat", "--preview", ".", *m),
         f"refusing to overwrite b1.png, which is the input {b1}"),
    ]
    for args, message in cases:
        code, err = run_cli(*args)
        assert code == 2 and message in err, (args, err)
        assert "--overwrite" in err
        assert {p: p.read_bytes() for p in (b1, b2)} == before, args
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b1.png", "b2.png", "link.png"]
    # told to, an input is replaced by its result
    os.utime(b1, (0, 0))
    code, err = run_cli("edit", b1, "-o", b1, "--overwrite", *m)
    assert code == 0, err
    assert b1.stat().st_mtime > 0
    assert np.asarray(Image.open(b1)).shape == (80, 96, 4)


def test_write_access_is_checked_before_any_image_is_read(model_path, tmp_path, run_cli):
    # /sys refuses new files even to root (mode bits would not: tests may run as root); the input is not
    # even an image, so an error about the output proves the output was checked first
    text = tmp_path / "text.png"
    text.write_text("not a picture")
    m = ("--model", model_path, "--refine-steps", "0")
    cases = [
        ("edit", text, "-o", "/sys/anycost-out.png", *m),
        ("edit", text, "-o", "/sys/anycost-out/deeper/o.png", *m),
        ("edit", text, "-o", tmp_path / "o.png", "--save-latent", "/sys/l.npy", *m),
        ("edit", text, _copy(text, tmp_path / "t2.png"), "-o", "/sys/batch", *m),
        ("project", text, "--out-latent", "/sys/l.npy", *m),
        ("project", text, "--out-latent", tmp_path / "l.npy", "--preview", "/sys/p.png", *m),
    ]
    for args in cases:
        code, err = run_cli(*args)
        assert code == 2, (args, err)
        assert "cannot create files in /sys" in err and "not an image" not in err, (args, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t2.png", "text.png"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; /sys covers the case above")
def test_read_only_folder_is_refused(model_path, canvas, tmp_path, run_cli):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        code, err = run_cli("edit", canvas, "-o", ro / "o.png", "--model", model_path, "--refine-steps", "0")
        assert code == 2 and f"cannot create files in {ro}" in err, err
    finally:
        ro.chmod(0o755)


def test_lossless_outputs_keep_pixels_and_colour_profile(model_path, directions_file, canvas, tmp_path, run_cli):
    orig = np.asarray(Image.open(canvas).convert("RGBA"))
    sel = np.zeros(orig.shape[:2], np.uint8)
    sel[16:64, 24:72] = 255
    Image.fromarray(sel).save(tmp_path / "sel.png")
    assert Region.from_file(canvas).with_mask(tmp_path / "sel.png").icc_profile == ICC
    common = ("--model", model_path, "--refine-steps", "0", "--directions", directions_file, "--set", "sefa_0=1",
              "--mask", tmp_path / "sel.png", "--blend", "replace")
    for name in ("out.webp", "out.png", "out.tif"):
        code, err = run_cli("edit", canvas, "-o", tmp_path / name, *common)
        assert code == 0, err
        assert "lossy" not in err
        with Image.open(tmp_path / name) as im:
            out = np.asarray(im.convert("RGBA"))
            assert im.info.get("icc_profile") == ICC, name
        assert np.any(out[sel == 255] != orig[sel == 255]), name  # the edit is there …
        np.testing.assert_array_equal(out[sel == 0], orig[sel == 0])  # … and nothing else moved
    code, err = run_cli("edit", canvas, "-o", tmp_path / "out.jpg", *common)
    assert code == 0 and err.count("anycost: note: JPEG is lossy") == 1, err
    with Image.open(tmp_path / "out.jpg") as im:
        assert im.info.get("icc_profile") == ICC
    code, err = run_cli("project", canvas, "--out-latent", tmp_path / "l.npy", "--preview", tmp_path / "crop.png",
                        "--model", model_path, "--refine-steps", "0")
    assert code == 0, err
    assert Image.open(tmp_path / "crop.png").info.get("icc_profile") == ICC
    # a profile for other colour data (CIELAB here) is not put on RGB output
    grey = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    Image.fromarray(orig[..., :3]).save(tmp_path / "lab.png", icc_profile=grey)
    assert Region.from_file(tmp_path / "lab.png").icc_profile is None


def test_registry_knows_which_models_are_faces():
    assert KNOWN_MODELS["anycost-car-config-f"].face is False
    assert all(s.face for n, s in KNOWN_MODELS.items() if n != "anycost-car-config-f")
    assert spec_for("/any/where/anycost-car-config-f.pt").face is False
    assert spec_for("anycost-ffhq-config-f").face is True
    assert spec_for("my-model.pt") is None


def test_non_face_model_uses_the_centre_crop_without_face_detection(model_path, canvas, tmp_path, monkeypatch,
                                                                     run_cli):
    cars = tmp_path / "cars.safetensors"
    code, err = run_cli("convert", model_path, "-o", cars, "--not-face")
    assert code == 0, err
    assert read_model(cars).info["face"] is False
    # the registry's word is used when no flag is given: its name, or its source file
    code, err = run_cli("convert", model_path, "-o", tmp_path / "x.safetensors", "--name", "anycost-car-config-f")
    assert code == 0 and read_model(tmp_path / "x.safetensors").info["face"] is False
    code, err = run_cli("convert", model_path, "-o", tmp_path / "faces.safetensors")
    assert code == 0 and read_model(tmp_path / "faces.safetensors").info["face"] is True

    calls = []
    monkeypatch.setattr(align, "detect_landmarks", lambda region: calls.append(region) or None)
    ed = Editor(cars, use_lpips=False)
    assert not ed.is_face_model
    s = ed.open(canvas)
    assert calls == []
    assert s.alignment.method == align.METHOD_CENTER
    assert "'cars' is not a face model" in s.notice and "centred square crop" in s.notice
    # the same file as a face model does ask the detector (which finds nothing here)
    face_ed = Editor(tmp_path / "faces.safetensors", use_lpips=False)
    assert face_ed.is_face_model
    face_ed.open(canvas)
    assert len(calls) == 1


def test_missing_lpips_weights_are_one_note_not_a_warning(model_path, canvas, tmp_path):
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "anycost", "edit", str(canvas), "-o", str(tmp_path / "o.png"),
                        "--model", str(model_path), "--refine-steps", "1", "--threads", "1"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    # (the model of this test has no encoder, which is a note of its own)
    notes = [line for line in r.stderr.splitlines() if line.startswith("anycost: note:") and "LPIPS" in line]
    assert len(notes) == 1 and "vgg16-397923af.pth or alexnet-owt-7be5be79.pth" in notes[0], r.stderr
    assert any("no encoder" in line for line in r.stderr.splitlines() if line.startswith("anycost: note:"))
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in notes[0]
    assert "Warning" not in r.stderr and "project.py" not in r.stderr, r.stderr


def test_images_to_tensor_and_back():
    """The one uint8 → model-input conversion: one image or a batch, RGB or RGBA (alpha dropped), and
    ``tensor_to_uint8`` undoes it exactly."""
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (2, 5, 7, 4), dtype=np.uint8)
    t = images_to_tensor(batch)
    assert t.shape == (2, 3, 5, 7) and t.dtype == torch.float32 and -1 <= float(t.min()) <= float(t.max()) <= 1
    assert np.array_equal(tensor_to_uint8(t), batch[..., :3])
    one = images_to_tensor(batch[0, ..., :3])
    assert one.shape == (1, 3, 5, 7) and torch.equal(one[0], t[0])
    assert torch.equal(images_to_tensor(torch.from_numpy(batch)), t), "tensors convert like arrays"
    frozen = batch.copy()
    frozen.flags.writeable = False  # as np.asarray gives for a PIL image
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(images_to_tensor(frozen), t)
    with pytest.raises(InputError, match="RGB images"):
        images_to_tensor(batch[..., :2])
