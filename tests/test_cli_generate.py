"""`anycost generate` end to end, in a separate process like a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import torch
from PIL import Image

from anycost.models.generator import Generator


def _run(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "anycost", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_generate_from_official_checkpoint(tmp_path, official_fixture):
    out = tmp_path / "face.png"
    r = _run("generate", "--model", str(official_fixture / "generator.pt"), "--seed", "3", "--res", "32",
             "--channels", "0.5", "--truncation", "0.7", "-o", str(out))
    assert r.returncode == 0, r.stderr
    img = np.asarray(Image.open(out))
    assert img.shape == (32, 32, 3) and img.std() > 1
    # same seed, same image; another seed, another image
    out2 = tmp_path / "again.png"
    _run("generate", "--model", str(official_fixture / "generator.pt"), "--seed", "3", "--res", "32",
         "--channels", "0.5", "--truncation", "0.7", "-o", str(out2))
    assert np.array_equal(img, np.asarray(Image.open(out2)))


def test_generate_many_and_grid(tmp_path, official_fixture):
    r = _run("generate", "--model", str(official_fixture / "generator.pt"), "--seed", "10", "--n", "3",
             "-o", str(tmp_path / "s.png"))
    assert r.returncode == 0, r.stderr
    files = sorted(p.name for p in tmp_path.glob("s-*.png"))
    assert files == ["s-000010.png", "s-000011.png", "s-000012.png"]
    r = _run("generate", "--model", str(official_fixture / "generator.pt"), "--n", "4", "--grid",
             "--channels", "64,64,64,64,32,32,32,32,16,16", "-o", str(tmp_path / "grid.png"))
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "grid.png").size[0] > 2 * 64


def test_generate_by_registered_name_checks_architecture(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    torch.manual_seed(0)
    G = Generator(resolution=16, style_dim=8, n_mlp=1, channel_multiplier=1, channel_max=16)
    torch.save({"g_ema": G.state_dict()}, models / "anycost-car-config-f.pt")
    r = _run("generate", "--model", "anycost-car-config-f", "-o", str(tmp_path / "x.png"),
             env_extra={"ANYCOST_MODELS_DIR": str(models)})
    assert r.returncode == 2
    # the pinned 512 px architecture against a 16 px file: refused before building, naming the mismatches
    assert "does not fit" in r.stderr and "missing keys" in r.stderr
    assert not (tmp_path / "x.png").exists()


def test_generate_bad_options(tmp_path, official_fixture):
    g = str(official_fixture / "generator.pt")
    cases = [
        (["--res", "48"], "--res must be one of"),
        (["--channels", "abc"], "--channels must be"),
        (["--channels", "1,2,3"], "--channels"),
        (["--truncation", "2"], "--truncation"),
    ]
    for extra, msg in cases:
        r = _run("generate", "--model", g, "-o", str(tmp_path / "bad.png"), *extra)
        assert r.returncode == 2, (extra, r.stderr)
        assert msg in r.stderr, (extra, r.stderr)
    r = _run("generate", "--model", "anycost-ffhq-config-f", "-o", str(tmp_path / "bad.png"))
    assert r.returncode == 2 and "not installed" in r.stderr
    assert not (tmp_path / "bad.png").exists()
