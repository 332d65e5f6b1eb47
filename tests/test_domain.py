"""An honest word when a face is beyond the model: the astronaut photograph on the demo model of drawn
faces is named as such, held-out drawn faces are not, and a region with no face asks before Apply."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
import skimage.data
from PIL import Image

from anycost.data.synth_faces import render_index
from anycost.editing.domain import Domain
from anycost.editing.session import Editor
from anycost.io.modelfile import read_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def editor():
    return Editor("anycost-demo", use_lpips=False)


def test_the_demo_model_records_its_domain(editor):
    d = editor.domain
    assert d is not None and d.kind == "drawn faces" and "photographic model" in d.advice
    assert d.n >= 64 and 0 < d.threshold < d.fit_p05 < d.fit_median <= 1


def test_a_photograph_is_named_and_drawn_faces_are_not(editor):
    astronaut = editor.open(skimage.data.astronaut())
    assert astronaut.alignment.face_found  # dlib finds her face: the domain check is what speaks
    assert astronaut.domain_notice is not None and "trained on drawn faces" in astronaut.domain_notice
    assert "photographic model" in astronaut.domain_notice and astronaut.needs_confirmation
    assert astronaut.encoder_fit < editor.domain.threshold
    fits = []
    for i in range(12):  # held-out faces of the model's own kind (indices never used in training)
        s = editor.open(render_index(5, 2_000_000_000 + i, 256)[0])
        assert s.domain_notice is None, (i, s.encoder_fit)
        fits.append(s.encoder_fit)
    assert min(fits) > astronaut.encoder_fit + 0.1


def test_no_face_asks_before_apply(editor):
    rng = np.random.default_rng(0)
    wall = np.clip(rng.normal(180, 6, (200, 240, 3)), 0, 255).astype(np.uint8)
    s = editor.open(wall)
    assert s.alignment.face_found is False and s.needs_confirmation
    assert any("no face" in n for n in s.notices)
    off = editor.open(render_index(5, 2_000_000_001, 256)[0], align=False)
    assert off.alignment.face_found is None  # not looked for: nothing to confirm on that account


def test_malformed_records_mean_no_check():
    assert Domain.from_info({"domain": {"kind": "x"}}) is None
    assert Domain.from_info({"domain": "drawn"}) is None
    assert Domain.from_info({}) is None


def test_cli_edit_says_it_and_fit_domain_writes_it(tmp_path):
    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(photo)
    r = subprocess.run([sys.executable, "-m", "anycost", "edit", str(photo), "-o", str(tmp_path / "o.png"),
                        "--set", "smile=0.5", "--refine-steps", "0", "--no-lpips"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "trained on drawn faces" in r.stderr and "photographic model" in r.stderr
    model = tmp_path / "demo.safetensors"
    shutil.copy(Editor("anycost-demo").path, model)
    r = subprocess.run([sys.executable, "-m", "anycost", "fit-domain", "--model", str(model), "-o", str(model),
                        "--faces", "samples", "--n", "8", "--kind", "test faces"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    dom = read_model(model).info["domain"]
    assert dom["kind"] == "test faces" and dom["n"] == 8 and dom["measured_on"] == "the generator's own samples"


def test_the_service_says_it_and_advises_asking_before_apply(tmp_path):
    """Through a real backend: the astronaut's ready carries the domain notice and confirm_apply; the plug-ins'
    controller shows it on the notice line."""
    from service_support import Backend

    from anycost.registry import resolve_model
    from anycost_client import Client

    b = Backend(tmp_path, resolve_model("anycost-demo"), None)
    try:
        photo = np.ascontiguousarray(np.dstack([skimage.data.astronaut(), np.full((512, 512), 255, np.uint8)]))
        with Client.connect(b.conn) as client, client.open(photo.tobytes(), 512, 512) as s:
            assert s.confirm_apply and any("trained on drawn faces" in n for n in s.notices)
        face = np.dstack([render_index(5, 2_000_000_003, 256)[0], np.full((256, 256), 255, np.uint8)])
        with Client.connect(b.conn) as client, client.open(np.ascontiguousarray(face).tobytes(), 256, 256,
                                                           align=False) as s:
            assert not s.confirm_apply and s.notices == [s.notice]  # only that alignment was off
    finally:
        b.stop()
