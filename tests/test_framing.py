"""A model's own framing of the face: measured by `anycost fit-framing`, used by every crop of its editor."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from anycost.data.synth_faces import render_index
from anycost.editing.align import Framing, dlib_available
from anycost.editing.session import Editor
from anycost.io.modelfile import read_model

pytestmark = pytest.mark.skipif(not dlib_available(), reason="needs the [align] extra (dlib)")


def test_fit_framing_stores_it_and_the_demo_reconstructs_its_faces_better_with_it(tmp_path):
    model = tmp_path / "demo.safetensors"
    shutil.copy(Editor("anycost-demo").path, model)
    r = subprocess.run([sys.executable, "-m", "anycost", "fit-framing", "--model", str(model), "-o", str(model),
                        "--faces", "synth", "--n", "24"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rec = read_model(model).info["framing"]
    assert rec["faces"] >= 8 and rec["measured_on"] == "held-out synthetic faces"
    # the drawn faces fill less of their picture than an FFHQ crop does
    assert 1.2 < rec["scale"] < 1.8
    framed = Editor(model, use_lpips=False)
    assert framed.framing == Framing.from_info({"framing": rec})
    ffhq = Editor(model, use_lpips=False)
    ffhq.framing = None  # the FFHQ crop, as before the measurement
    gains = []
    for i in range(40, 52):  # other held-out faces than those measured
        face = render_index(0, 2_000_000_000 + i, 256)[0]
        a, b = ffhq.open(face), framed.open(face)
        if a.alignment.method == "landmarks":
            gains.append(b.project(0).psnr - a.project(0).psnr)
    assert len(gains) >= 4
    assert np.mean(gains) > 0.5, gains


def test_fit_framing_refuses_too_few_faces(tmp_path):
    r = subprocess.run([sys.executable, "-m", "anycost", "fit-framing", "--model", "anycost-demo", "-o",
                        str(tmp_path / "o.safetensors"), "--n", "4"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "--n" in r.stderr
