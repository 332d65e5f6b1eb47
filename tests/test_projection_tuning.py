"""How firmly projection holds to the encoder's answer: the sweep, the choice, the record and its use."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from anycost.data.synth_faces import render_index
from anycost.editing.projection_tuning import SweepPoint, choose, projection_overrides, sweep
from anycost.editing.session import Editor
from anycost.errors import InputError
from anycost.io.modelfile import read_model
from anycost.training.classifier import classifier_from_component

FIXTURES = Path(__file__).parent / "fixtures"


def point(reg: float, psnr: float, total: float) -> SweepPoint:
    return SweepPoint(reg, psnr, psnr - 2, {"smile": total})


def test_the_choice_is_the_most_successful_pull_within_the_psnr_allowance():
    points = [point(0.001, 26.1, 5.75), point(0.003, 25.5, 6.41), point(0.005, 25.2, 6.94), point(0.01, 24.8, 6.98)]
    assert choose(points).encoder_reg == 0.005  # 0.01 edits a little better but costs 1.3 dB
    assert choose(points, max_psnr_loss=2).encoder_reg == 0.01
    assert choose(points, min_psnr=25.4).encoder_reg == 0.003
    assert choose(points, max_psnr_loss=0).encoder_reg == 0.001


def test_a_tie_keeps_the_weaker_pull_and_an_impossible_floor_keeps_the_face():
    assert choose([point(0.01, 25.0, 6.0), point(0.002, 25.5, 6.0)]).encoder_reg == 0.002
    assert choose([point(0.001, 20.0, 1.0), point(0.01, 19.0, 9.0)], min_psnr=30).encoder_reg == 0.001
    with pytest.raises(InputError):
        choose([])


def test_the_model_file_record_is_checked():
    assert projection_overrides({}) == {}
    assert projection_overrides({"projection": {"encoder_reg": 0.005, "tuned": {}}}) == {"encoder_reg": 0.005}
    for bad in (-1, float("nan"), "0.1", True):
        with pytest.raises(InputError, match="encoder_reg"):
            projection_overrides({"projection": {"encoder_reg": bad}})
    with pytest.raises(InputError):
        projection_overrides({"projection": [0.1]})


def test_a_firm_pull_keeps_the_encoders_answer_and_every_slider_is_scored():
    editor = Editor("anycost-demo", use_lpips=False)
    clf = classifier_from_component(read_model(editor.path).components["classifier"])
    faces = [render_index(0, 2_000_000_000 + i, 256)[0] for i in range(3)]
    encoder_psnr = [float(p) for p in (editor.open(f).project(0).psnr for f in faces)]
    free, firm = sweep(editor, clf, faces, [0.0, 10.0], steps=5)
    # no pull: refinement only improves on the encoder's answer; a very firm pull keeps that answer
    assert free.psnr > sum(encoder_psnr) / 3 + 0.05
    assert firm.psnr == pytest.approx(sum(encoder_psnr) / 3, abs=0.05)
    labelled = {n for n in editor.directions if editor.directions[n].source == "labels"}
    assert set(free.success) == labelled and len(labelled) == 13
    assert all(0 <= v <= 1 for v in free.success.values()) and free.total > 0
    with pytest.raises(InputError, match="at least 1"):
        sweep(editor, clf, faces, [0.001], steps=0)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "anycost", "tune-projection", *args],
                          capture_output=True, text=True, timeout=600)


def test_cli_measures_stores_and_the_editor_uses_it(tmp_path):
    model = tmp_path / "demo.safetensors"
    shutil.copy(Editor("anycost-demo").path, model)
    r = run_cli("--model", str(model), "-o", str(model), "--n", "2", "--steps", "3", "--values", "0.01,0.001")
    assert r.returncode == 0, r.stderr
    rec = read_model(model).info["projection"]
    assert [p["encoder_reg"] for p in rec["tuned"]["points"]] == [0.001, 0.01]
    assert rec["encoder_reg"] in (0.001, 0.01) and rec["tuned"]["faces"] == 2 and rec["tuned"]["steps"] == 3
    assert "chose encoder_reg" in r.stdout
    assert Editor(model, use_lpips=False).projection.encoder_reg == rec["encoder_reg"]

    r = run_cli("--model", str(model), "-o", str(model), "--set", "0.004")
    assert r.returncode == 0, r.stderr
    assert read_model(model).info["projection"] == {"encoder_reg": 0.004}
    assert Editor(model, use_lpips=False).projection.encoder_reg == 0.004


def test_cli_refuses_what_it_cannot_measure(tmp_path):
    out = str(tmp_path / "o.safetensors")
    r = run_cli("--model", str(FIXTURES / "stylegan2_ada" / "network-snapshot.pkl"), "-o", out)
    assert r.returncode == 2 and "no attribute classifier" in r.stderr
    for bad in (["--values", "a,b"], ["--set", "-1"], ["--n", "1"]):
        r = run_cli("--model", "anycost-demo", "-o", out, *bad)
        assert r.returncode == 2, (bad, r.stderr)
    assert not Path(out).exists()
