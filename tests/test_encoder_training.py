"""W+ encoder training against a tiny frozen generator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from model_support import tiny_generator
from PIL import Image

from anycost import Generator
from anycost.errors import InputError
from anycost.io.modelfile import Component, read_model, save_model
from anycost.training.encoder_training import (
    EncoderTrainConfig,
    build_encoder,
    evaluate_encoder,
    load_checkpoint,
    sample_w_plus,
    train_encoder,
)
from anycost.training.model_update import update_model

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def G() -> Generator:
    return tiny_generator()


def test_encoder_shapes_and_mean_latent(G):
    E = build_encoder(G, depth=10, width=8)
    assert E.config.n_style == G.n_style and E.config.style_dim == G.style_dim
    assert E.config.input_size == G.resolution
    assert torch.allclose(E.mean_latent, G.mean_w()[0])
    E.eval()
    with torch.no_grad():
        out = E(torch.rand(3, 3, 40, 40) * 2 - 1)  # any input size is resized
    assert out.shape == (3, G.n_style, G.style_dim)
    # A fresh encoder (zero head) predicts the mean latent everywhere.
    assert torch.allclose(out, G.mean_w()[0].expand_as(out), atol=1e-6)


def test_sample_w_plus_mixing_and_truncation(G):
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        wp = sample_w_plus(G, 16, gen, (0.0, 0.0), 1.0)
    assert wp.shape == (16, G.n_style, G.style_dim)
    # psi = 0 collapses every sample onto the mean latent.
    assert torch.allclose(wp, G.mean_w()[0].expand_as(wp), atol=1e-5)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        mixed = sample_w_plus(G, 16, gen, (1.0, 1.0), 1.0)
        plain = sample_w_plus(G, 16, torch.Generator().manual_seed(1), (1.0, 1.0), 0.0)
    # Mixing makes the last slot differ from the first; without it all slots are equal.
    assert not torch.allclose(mixed[:, 0], mixed[:, -1])
    assert torch.allclose(plain[:, 0], plain[:, -1])


def test_training_reduces_losses(G):
    torch.manual_seed(0)
    E = build_encoder(G, depth=10, width=8)
    before = evaluate_encoder(G, E, n=16, seed=7)
    cfg = EncoderTrainConfig(steps=40, batch=8, lr=2e-3, lpips_weight=0.0, seed=3)
    state = train_encoder(G, E, cfg, progress=False)
    assert state.step == 40 and len(state.history) == 40
    assert {"latent", "img_mse", "consistency"} <= set(state.history[-1])
    losses = [h["loss"] for h in state.history]
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    # Held-out reconstructions improve, at full cost and with a cheaper sub-generator.
    after = evaluate_encoder(G, E, n=16, seed=7)
    assert after["image_mse"] < 0.8 * before["image_mse"]
    assert after["sub_image_mse"] < 0.8 * before["sub_image_mse"]


def test_checkpoint_resume_matches_uninterrupted_run(G, tmp_path):
    def fresh():
        torch.manual_seed(0)
        return build_encoder(G, depth=10, width=8)

    ck = tmp_path / "enc.ckpt.pt"
    cfg = dict(batch=2, lr=1e-3, lpips_weight=0.0, seed=5, checkpoint_every=3)
    full = fresh()
    train_encoder(G, full, EncoderTrainConfig(steps=6, **cfg), progress=False)
    part = fresh()
    train_encoder(G, part, EncoderTrainConfig(steps=3, checkpoint=str(ck), **cfg), progress=False)
    payload = torch.load(ck, map_location="cpu", weights_only=True)  # plain tensors and containers only
    assert payload["step"] == 3
    resumed = fresh()
    state = train_encoder(G, resumed, EncoderTrainConfig(steps=6, checkpoint=str(ck), **cfg), resume=True,
                          progress=False)
    assert state.step == 6 and load_checkpoint(ck)["step"] == 6
    for k, v in full.state_dict().items():
        assert torch.allclose(v.float(), resumed.state_dict()[k].float(), atol=1e-5), k
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_resume_refuses_other_encoder_settings(G, tmp_path):
    ck = tmp_path / "c.pt"
    train_encoder(G, build_encoder(G, depth=10, width=8),
                  EncoderTrainConfig(steps=1, batch=2, lpips_weight=0, checkpoint=str(ck)), progress=False)
    with pytest.raises(InputError, match="encoder settings"):
        train_encoder(G, build_encoder(G, depth=10, width=16),
                      EncoderTrainConfig(steps=2, batch=2, lpips_weight=0, checkpoint=str(ck)), resume=True,
                      progress=False)


def test_real_image_steps_use_image_losses_only(G, tmp_path):
    folder = tmp_path / "real"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (24, 20, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    E = build_encoder(G, depth=10, width=8)
    cfg = EncoderTrainConfig(steps=2, batch=2, lpips_weight=0.0, real_folder=str(folder), real_ratio=1.0)
    state = train_encoder(G, E, cfg, progress=False)
    assert all(h.get("real") == 1.0 and "latent" not in h for h in state.history)


def test_bad_settings_are_clear_errors(G):
    with pytest.raises(InputError):
        EncoderTrainConfig(truncation=(0.9, 0.2))
    with pytest.raises(InputError):
        EncoderTrainConfig(real_ratio=0.5)
    other = tiny_generator(res=32)
    with pytest.raises(InputError, match="styles"):
        train_encoder(other, build_encoder(G, depth=10, width=8), EncoderTrainConfig(steps=1), progress=False)


def test_adding_encoder_keeps_generator_and_components(G, tmp_path):
    src = tmp_path / "model.safetensors"
    extra = Component({"note": "kept"}, {"v": torch.arange(4.0)})
    save_model(src, generator=G, components={"extra": extra}, info={"name": "tiny"})
    E = build_encoder(G, depth=10, width=8)
    train_encoder(G, E, EncoderTrainConfig(steps=2, batch=2, lpips_weight=0.0), progress=False)
    out = update_model(src, src, encoder=E)  # in place, atomically
    mf = read_model(out)
    assert mf.info["name"] == "tiny"
    assert mf.components["extra"].config == {"note": "kept"}
    assert torch.equal(mf.components["extra"].tensors["v"], torch.arange(4.0))
    G2, E2 = mf.generator(), mf.encoder()
    for k, v in G.state_dict().items():
        assert torch.equal(v, G2.state_dict()[k]), k
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(E.eval()(x), E2(x), atol=1e-6)


def test_cli_train_encoder(G, tmp_path):
    src = tmp_path / "m.safetensors"
    save_model(src, generator=G, components={"extra": Component({}, {"v": torch.ones(2)})})
    out = tmp_path / "m-enc.safetensors"
    env = {**os.environ, "PYTHONPATH": str(REPO / "backend")}
    r = subprocess.run([sys.executable, "-m", "anycost", "train-encoder", "--model", str(src), "-o", str(out),
                        "--depth", "10", "--width", "8", "--steps", "3", "--batch", "2", "--eval-samples", "4",
                        "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 3 and summary["output"] == str(out)
    mf = read_model(out)
    assert set(mf.components) == {"generator", "encoder", "extra"}
    assert mf.info["encoder_training"]["depth"] == 10
    assert Path(str(out) + ".ckpt.pt").is_file()
    bad = subprocess.run([sys.executable, "-m", "anycost", "train-encoder", "--model", str(src), "-o",
                          str(tmp_path / "x.pt")], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "safetensors" in bad.stderr


def test_cli_resume_keeps_the_checkpoints_settings(G, tmp_path):
    """`--resume` keeps the settings the run was started with; a flag given with it (--steps) overrides them."""
    from anycost.cli import main

    src = tmp_path / "m.safetensors"
    save_model(src, generator=G)
    out = tmp_path / "m-enc.safetensors"
    common = ["train-encoder", "--model", str(src), "-o", str(out), "--depth", "10", "--width", "8",
              "--eval-samples", "2", "--quiet"]
    assert main([*common, "--steps", "2", "--batch", "2", "--lr", "5e-4", "--lpips-weight", "0",
                 "--checkpoint-every", "1"]) == 0
    assert main([*common, "--resume", "--steps", "3"]) == 0
    ck = load_checkpoint(str(out) + ".ckpt.pt")
    assert ck["step"] == 3
    assert {k: ck["train_config"][k] for k in ("steps", "batch", "lr", "lpips_weight", "checkpoint_every")} \
        == {"steps": 3, "batch": 2, "lr": 5e-4, "lpips_weight": 0.0, "checkpoint_every": 1}


def test_cli_fine_tunes_the_models_own_encoder(G, tmp_path, capsys):
    """`--from-model-encoder` starts from the encoder the model holds, in its own architecture (the
    size options do not apply): no steps give back exactly that encoder, the record's "before" figures are
    that encoder's and training moves it from there. A model without one is a clear error."""
    from anycost.cli import main

    torch.manual_seed(0)
    E = build_encoder(G, depth=10, width=8)
    train_encoder(G, E, EncoderTrainConfig(steps=4, batch=4, lpips_weight=0.0), progress=False)
    src = tmp_path / "m.safetensors"
    save_model(src, generator=G, encoder=E)
    common = ["train-encoder", "--model", str(src), "--from-model-encoder", "--batch", "4", "--lr", "1e-3",
              "--lpips-weight", "0", "--eval-samples", "16", "--quiet"]
    same = tmp_path / "same.safetensors"
    assert main([*common, "-o", str(same), "--steps", "0"]) == 0
    kept = read_model(same).encoder()
    assert kept.config == E.config
    assert all(torch.equal(a, b) for a, b in zip(kept.state_dict().values(), E.eval().state_dict().values(),
                                                 strict=True))
    tuned = tmp_path / "tuned.safetensors"
    assert main([*common, "-o", str(tuned), "--steps", "40"]) == 0
    record = read_model(tuned).info["encoder_training"]
    assert (record["depth"], record["width"], record["started_from"]) == (10, 8, "the model's own encoder")
    own = evaluate_encoder(G, E, n=16)
    assert record["metrics_before"] == pytest.approx({k: round(v, 6) for k, v in own.items()}, abs=1e-6)
    moved = read_model(tuned).encoder()
    assert not all(torch.equal(a, b) for a, b in zip(moved.state_dict().values(), E.state_dict().values(),
                                                     strict=True))
    bare = tmp_path / "bare.safetensors"
    save_model(bare, generator=G)
    assert main(["train-encoder", "--model", str(bare), "-o", str(tmp_path / "x.safetensors"),
                 "--from-model-encoder"]) == 2
    assert "no encoder to start from" in capsys.readouterr().err
