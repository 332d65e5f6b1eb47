"""End-to-end training runs at tiny sizes: CLI, resume, few-shot preset, config files, checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

import anycost
from anycost.cli import main
from anycost.errors import InputError
from anycost.io.modelfile import read_model
from anycost.training.anycost_trainer import AnycostTrainer
from anycost.training.checkpoint import list_checkpoints
from anycost.training.config import build_config
from anycost.training.data import TensorStream


def images(n: int = 6, res: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 3, res, res, generator=g) * 2 - 1


def trainer(out, steps=4, **kw) -> AnycostTrainer:
    cfg = build_config({"preset": "tiny", "res": 16, "out": str(out), "steps": steps,
                        "stages": "plain:1,adaptive:1", "mixing_prob": 0.5, **kw})
    return AnycostTrainer(cfg, TensorStream(images(), [8, 16], cfg.batch, cfg.seed), quiet=True)


def test_resume_continues_bit_for_bit(tmp_path):
    straight = trainer(tmp_path / "a")
    for _ in range(4):
        straight.train_step()

    first = trainer(tmp_path / "b")
    for _ in range(2):
        first.train_step()
    ckpt = first.save_checkpoint()
    loaded = torch.load(ckpt, map_location="cpu", weights_only=True)  # plain tensors and containers only
    assert loaded["step"] == 2 and loaded["stage"] == "adaptive" and loaded["sorted"] is False

    resumed = trainer(tmp_path / "b")
    resumed.resume()  # newest checkpoint in the output folder
    assert resumed.step == 2
    for _ in range(2):
        resumed.train_step()
    assert resumed.sorted
    for name in ("G", "G_ema", "D"):
        a, b = getattr(straight, name).state_dict(), getattr(resumed, name).state_dict()
        for k in a:
            assert torch.equal(a[k], b[k]), f"{name}.{k} differs after resume"


def test_losses_are_finite_and_weights_move(tmp_path):
    t = trainer(tmp_path, steps=3)
    before = {k: v.clone() for k, v in t.G.state_dict().items()}
    logs = [t.train_step() for _ in range(3)]
    for row in logs:
        assert all(torch.isfinite(torch.tensor(v)) for v in row.values())
    assert logs[0]["loss/d"] != logs[1]["loss/d"]
    assert "loss/consistency" in logs[-1] and "loss/r1" in logs[0]
    moved = [k for k, v in t.G.state_dict().items() if not torch.equal(v, before[k])]
    assert "convs.0.conv.weight" in moved and "style.1.weight" in moved


def test_cli_end_to_end_produces_a_loadable_anycost_model(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--preset", "tiny", "--data", "synth:faces:8", "--res", "16", "--steps", "3",
               "--out", str(out), "--keep-last", "1", "--checkpoint-every", "1", "--sample-every", "2",
               "--metrics-every", "3", "--no-progress"])
    assert rc == 0
    model = out / "model.safetensors"
    assert f"model written to {model}" in capsys.readouterr().out
    assert [p.name for p in list_checkpoints(out)] == ["ckpt-00000003.pt"]  # keep-last 1
    assert (out / "losses.csv").is_file() and (out / "losses.png").is_file()
    header = (out / "losses.csv").read_text().splitlines()[0]
    assert "loss/d" in header and "psnr/r0.5/res16" in header
    assert (out / "samples" / "step-00000002-res-8.png").is_file()
    info = read_model(model).info
    assert info["training"]["preset"] == "tiny" and info["training"]["steps"] == 3

    G = anycost.load_generator(model)
    w = G.styles_from_seed(0, 2)
    for res in G.resolutions:
        for ratio in anycost.STANDARD_RATIOS:
            img = G.synthesize(w, res=res, channels=ratio)
            assert img.shape == (2, 3, res, res) and torch.isfinite(img).all()

    # Starting over into a folder with checkpoints is refused; resuming continues the run (settings from
    # the checkpoint, length from the flag).
    assert main(["train", "--preset", "tiny", "--data", "synth:faces:8", "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err
    rc = main(["train", "--out", str(out), "--resume", "--steps", "4", "--no-progress"])
    assert rc == 0
    assert read_model(model).info["training"]["steps"] == 4


def test_fewshot_preset_tiny_run_from_a_toml_config(tmp_path):
    cfg_file = tmp_path / "fewshot.toml"
    cfg_file.write_text(
        'preset = "fewshot"\nres = 32\nstyle_dim = 16\nn_mlp = 1\nchannel_max = 32\nd_channel_max = 32\n'
        'batch = 2\nsteps = 3\nstages = "plain:1,multires:1,adaptive:1"\nn_random_subnets = 1\n'
        'sample_every = 0\ncheckpoint_every = 0\nlog_every = 1\n')
    out = tmp_path / "fs"
    rc = main(["train", "--config", str(cfg_file), "--data", "synth:faces:4", "--out", str(out), "--no-progress"])
    assert rc == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["loss"] == "hinge" and saved["fewshot"] and saved["diffaug"] and saved["sle"]
    assert "loss/recon" in (out / "losses.csv").read_text().splitlines()[0]
    G = anycost.load_generator(out / "model.safetensors")
    assert G.config.sle == [(4, 32)]
    for res in G.resolutions:
        assert G.synthesize(G.styles_from_seed(0), res=res, channels=0.25).shape[-1] == res


def test_config_precedence_and_errors(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"preset": "tiny", "batch": 3, "keep-last": 5, "kimg": 1}))
    cfg = build_config({"batch": 4}, f)
    assert cfg.batch == 4 and cfg.keep_last == 5 and cfg.res == 32  # CLI > file > preset
    assert cfg.steps is None and cfg.total_steps() == 250
    assert build_config({"steps": 7}, f).total_steps() == 7
    with pytest.raises(InputError, match="unknown training settings"):
        build_config({"nonsense": 1})
    with pytest.raises(InputError, match="stage"):
        build_config({"stages": "plain:1,warp:1"})
    with pytest.raises(InputError, match="preset"):
        build_config({"preset": "huge"})
    assert main(["train", "--preset", "tiny", "--data", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2


def test_data_streams_folder_and_synth(tmp_path):
    import numpy as np
    from PIL import Image

    from anycost.training.data import open_data

    for i in range(5):
        arr = np.full((20, 24, 3), 40 * i, dtype=np.uint8)
        Image.fromarray(arr).save(tmp_path / f"{i}.png")
    stream = open_data(str(tmp_path), 16, [8, 16], batch=2, seed=0)
    seen = []
    for _ in range(5):  # two epochs of five images in batches of two
        b = stream.next_batch()
        assert set(b) == {8, 16} and b[16].shape == (2, 3, 16, 16) and b[8].shape == (2, 3, 8, 8)
        assert b[16].min() >= -1 and b[16].max() <= 1
        seen += [round(float((v.mean() + 1) * 127.5)) for v in b[16]]
    assert sorted(seen[:5]) == [0, 40, 80, 120, 160] and sorted(seen[5:]) == sorted(seen[:5])
    state = stream.state_dict()
    assert state == {"epoch": 1, "pos": 5}

    a = open_data("synth:faces", 16, [8, 16], batch=2, seed=3, rank=0, world=2)
    b = open_data("synth:faces", 16, [8, 16], batch=2, seed=3, rank=1, world=2)
    first_a = a.next_batch()[16]
    assert not torch.equal(first_a, b.next_batch()[16])  # ranks see different faces
    again = open_data("synth:faces", 16, [8, 16], batch=2, seed=3, rank=0, world=2)
    again.load_state_dict(a.state_dict())
    assert torch.equal(again.next_batch()[16], a.next_batch()[16])
    with pytest.raises(InputError):
        open_data("synth:cats", 16, [8, 16], batch=2)
