"""Distillation of a plain StyleGAN2 into an Anycost generator, and `anycost adopt` end to end.

All on the StyleGAN2-ADA fixture (NVIDIA's pickle, 32 px, random weights) with few steps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import anycost
from anycost.errors import AnycostError, InputError
from anycost.io.checkpoint import open_model
from anycost.io.modelfile import read_model
from anycost.training import checkpoint as ckpt_mod
from anycost.training.distill import DistillConfig, Distiller, teacher_consistency

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def snapshot(ada_fixture):
    mf = open_model(ada_fixture / "network-snapshot.pkl")
    return mf.generator(), mf.discriminator()


def _cfg(**kw) -> DistillConfig:
    base = dict(steps=12, batch=2, perceptual="none", eval_seeds=4, checkpoint_every=0, log_every=0, lr=1e-3)
    base.update(kw)
    return DistillConfig(**base)


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "anycost", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=env)


def test_sorting_keeps_the_full_generator_and_training_improves_consistency(snapshot, tmp_path):
    G, _ = snapshot
    d = Distiller(G, _cfg(steps=150, batch=4))
    w = G.styles_from_seed(5)
    with torch.no_grad():  # channel sorting alone: the same function
        assert (d.G.synthesize(w, impl="reference") - G.synthesize(w, impl="reference")).abs().max() < 1e-4
    after = d.run(tmp_path / "run", progress=False)
    before = d.before
    assert before["drift"] == 99.0  # identical before training
    # the channel slices and the half-resolution image move towards the teacher
    assert after["psnr/r0.5/res32"] > before["psnr/r0.5/res32"] + 0.3
    assert after["psnr/r0.25/res32"] > before["psnr/r0.25/res32"] + 0.3
    assert after["psnr/r1/res16"] > before["psnr/r1/res16"] + 0.2
    assert 5 < after["drift"] < 99  # the full generator moved, and the report says by how much
    # the mapping network (W space) is the teacher's, untouched
    for a, b in zip(d.G.style.parameters(), G.style.parameters(), strict=True):
        assert torch.equal(a, b)


def test_resume_continues_exactly(snapshot, tmp_path):
    G, D = snapshot
    straight = Distiller(G, _cfg(steps=8, checkpoint_every=4), discriminator=D)
    straight.run(tmp_path / "a", progress=False)
    first = Distiller(G, _cfg(steps=4, checkpoint_every=4), discriminator=D)
    first.run(tmp_path / "b", progress=False)
    resumed = Distiller(G, _cfg(steps=8, checkpoint_every=4), discriminator=D)
    resumed.load_state_dict(ckpt_mod.load_checkpoint(ckpt_mod.latest_checkpoint(tmp_path / "b")))
    assert resumed.step == 4
    resumed.run(tmp_path / "b", progress=False)
    for (k, a), (_, b) in zip(straight.G.state_dict().items(), resumed.G.state_dict().items(), strict=True):
        assert torch.equal(a, b), k


def test_discriminator_features_are_the_perceptual_term_when_lpips_is_absent(snapshot, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no LPIPS weights
    G, D = snapshot
    d = Distiller(G, _cfg(perceptual="auto"), discriminator=D)
    assert d.perceptual_kind == "discriminator"
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert float(d.perceptual(x, x)) == 0.0 and float(d.perceptual(x, x.flip(-1))) > 0
    assert Distiller(G, _cfg(perceptual="auto")).perceptual_kind == "none"
    with pytest.raises(InputError, match="keeps no discriminator"):
        Distiller(G, _cfg(perceptual="discriminator"))


def test_adversarial_term_with_data(snapshot, tmp_path):
    G, D = snapshot
    folder = tmp_path / "real"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    d = Distiller(G, _cfg(steps=3, data=str(folder), r1_gamma=1.0, d_reg_every=2), discriminator=D)
    # the conditioned discriminator starts from the snapshot's own
    start = d.D.state_dict()["final_linear.1.weight"].clone()
    assert torch.equal(start, D.state_dict()["final_linear.1.weight"])
    logs = d.train_step()
    assert "loss/d" in logs and d.D.cond_dim == d.subnets.cond_dim
    assert not torch.equal(d.D.state_dict()["final_linear.1.weight"], start)  # and learns


def test_a_full_disk_leaves_the_previous_checkpoint(snapshot, tmp_path, monkeypatch):
    G, _ = snapshot
    d = Distiller(G, _cfg(steps=8, checkpoint_every=4))
    real_save = torch.save
    calls = {"n": 0}

    def save(obj, f, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            with open(f, "wb") as fh:  # half a file, then the disk is full
                fh.write(b"PK\x03\x04partial")
            raise OSError(28, "No space left on device")
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(ckpt_mod.torch, "save", save)
    with pytest.raises(AnycostError, match="previous checkpoint is intact"):
        d.run(tmp_path / "run", progress=False)
    monkeypatch.setattr(ckpt_mod.torch, "save", real_save)
    kept = ckpt_mod.list_checkpoints(tmp_path / "run")
    assert [p.name for p in kept] == ["ckpt-00000004.pt"]
    assert ckpt_mod.load_checkpoint(kept[0])["step"] == 4
    assert not [p for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.startswith(".")]


def test_cli_distill_resumes_refuses_anycost_models_and_missing_gpus(ada_fixture, tmp_path):
    out = tmp_path / "d.safetensors"
    args = ["distill", ada_fixture / "network-snapshot.pkl", "-o", out, "--batch", "2", "--eval-seeds", "2",
            "--checkpoint-every", "3", "--perceptual", "none", "--no-progress"]
    r = _cli(*args, "--steps", "3")
    assert r.returncode == 0, r.stderr
    assert "before → after" in r.stdout and "drift from the teacher" in r.stdout
    r = _cli(*args, "--steps", "6")
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stdout and "at step 3" in r.stdout
    mf = read_model(out)
    assert mf.info["channel_configs"] == "flexible" and mf.info["distilled"]["steps"] == 6
    assert mf.info["source"]["format"] == "stylegan2-ada-pytorch network pickle"  # provenance kept
    assert "discriminator" in mf.components
    # an Anycost model is told so; --force distils it anyway
    again = _cli("distill", out, "-o", tmp_path / "again.safetensors", "--steps", "1", "--no-progress")
    assert again.returncode == 2 and "already trained" in again.stderr and "--force" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    forced = _cli("distill", out, "-o", tmp_path / "again.safetensors", "--steps", "1", "--batch", "1",
                  "--eval-seeds", "1", "--perceptual", "none", "--force", "--no-progress")
    assert forced.returncode == 0, forced.stderr
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    gpu = _cli(*args, "--steps", "1", "--device", "cuda", env=env)
    assert gpu.returncode == 2 and "no CUDA device" in gpu.stderr and len(gpu.stderr.strip().splitlines()) == 1


def test_teacher_consistency_of_the_teacher_itself(snapshot):
    G, _ = snapshot
    rep = teacher_consistency(G, G, [0.5, 1.0], [16, 32], n=2)
    assert rep["psnr/r1/res32"] == 99.0 and rep["drift"] == 99.0
    assert rep["psnr/r0.5/res32"] < 30  # an untrained slice is far from it


def test_adopt_end_to_end_then_edit(ada_fixture, tmp_path):
    out = tmp_path / "mine.safetensors"
    args = ["adopt", ada_fixture / "network-snapshot.pkl", "-o", out, "--distill-steps", "4", "--distill-batch", "2",
            "--encoder-steps", "4", "--encoder-batch", "2", "--sefa", "3", "--pca", "2", "--budget-ms", "40",
            "--search-generations", "1", "--no-progress"]
    r = _cli(*args)
    assert r.returncode == 0, r.stderr
    for stage in ("import", "distill", "encoder", "directions", "search"):
        assert stage in r.stdout
    mf = read_model(out)
    assert mf.encoder() is not None and mf.info["distilled"]["steps"] == 4
    assert mf.info["domain"]["kind"] == "the faces of faces.zip" and mf.info["domain"]["n"] == 32
    from anycost.directions import directions_in_model

    assert set(directions_in_model(mf)) == {"sefa_0", "sefa_1", "sefa_2", "pca_0", "pca_1"}
    state = json.loads((tmp_path / "mine.adopt" / "state.json").read_text())
    assert set(state["stages"]) == {"import", "distill", "encoder", "directions", "search"}
    # a second run skips every stage that is done
    again = _cli(*args)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("(done before)") == 5
    # the result edits at once: no notice about approximate previews any more
    from anycost.editing.session import Editor

    ed = Editor(out, use_lpips=False)
    assert ed.space_kind == "flexible" and not ed.notices
    face = (np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)
    s = ed.open(face, align=False)
    s.set(sefa_0=1.0)
    assert s.result().shape[:2] == (40, 40)
    assert anycost.load_generator(out).resolution == 32


def test_adopt_refuses_a_work_folder_of_another_file(ada_fixture, tmp_path, official_fixture):
    out = tmp_path / "m.safetensors"
    work = tmp_path / "m.adopt"
    work.mkdir()
    (work / "state.json").write_text(json.dumps({"source_sha256": "0" * 64, "stages": {}}))
    r = _cli("adopt", ada_fixture / "network-snapshot.pkl", "-o", out, "--no-progress")
    assert r.returncode == 2 and "another file" in r.stderr
    assert not out.exists()
    assert Path(work / "state.json").read_text().startswith("{")
