"""Autoencoder training mode: a tiny real run (32 px) checked end to end."""

from __future__ import annotations

import math

import pytest
import torch

import anycost
from anycost.errors import InputError, ModelFileError, ModelNotFoundError
from anycost.io.modelfile import save_model
from anycost.training.autoencoder import AutoencoderConfig, AutoencoderTrainer
from anycost.training.checkpoint import latest_checkpoint
from anycost.training.losses import attribute_feature_distance

# the flags of a tiny run on the command line (a checkpoint every step)
TINY_CLI = ["--data", "synth:faces:8", "--res", "32", "--min-res", "16", "--batch", "2", "--style-dim", "16",
            "--n-mlp", "2", "--channel-multiplier", "0.25", "--channel-max", "32", "--enc-width", "8",
            "--enc-input", "32", "--lpips-weight", "0", "--prior-samples", "8", "--mapping-steps", "2",
            "--sample-every", "0", "--checkpoint-every", "1"]


def tiny_config(out, **kw) -> AutoencoderConfig:
    base = dict(data="synth:faces:24", out=str(out), res=32, min_res=16, steps=30, batch=6, style_dim=16,
                n_mlp=2, channel_multiplier=0.25, channel_max=32, enc_depth=10, enc_width=8, enc_input=32,
                lr=5e-3, enc_lr=3e-3, lpips_weight=0.0, curriculum=0.2, top_prob=0.5, prior_samples=128,
                mapping_steps=20, log_every=5, sample_every=0, checkpoint_every=20, seed=3)
    base.update(kw)
    return AutoencoderConfig(**base)


def fixed_batch_losses(tr: AutoencoderTrainer, x: torch.Tensor) -> dict[str, float]:
    tr.G.eval()
    tr.E.eval()
    with torch.no_grad():
        w_plus = tr.E(x)
        return {name: float(torch.nn.functional.mse_loss(
                    tr.G.synthesize(w_plus, channels=ch, noise="const", impl="reference"), x))
                for name, ch in (("full", None), ("smallest", tr.subnets.smallest))}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("ae")
    tr = AutoencoderTrainer(tiny_config(out), quiet=True)
    x = tr.data.pool.images[:12].clone()
    before = fixed_batch_losses(tr, x)
    result = tr.run(progress=False)
    after = fixed_batch_losses(tr, x)
    return tr, result, before, after


def test_reconstruction_improves_for_full_and_smallest(trained):
    tr, result, before, after = trained
    assert after["full"] < 0.6 * before["full"]
    assert after["smallest"] < 0.6 * before["smallest"]
    assert all(math.isfinite(v) for k, v in result.items() if k.startswith("psnr/"))
    assert (tr.out / "losses.csv").is_file()


def test_model_file_holds_generator_and_encoder(trained):
    tr, result, _, _ = trained
    path = result["model"]
    G = anycost.load_generator(path)
    E = anycost.load_encoder(path)
    assert G.resolution == 32 and E.config.n_style == G.n_style
    x = tr.data.pool.images[:4]
    with torch.no_grad():
        w_file = E(x)
        w_live = tr.E.eval()(x)
        img = G.synthesize(w_file, res=16, channels=0.25)
    # float16 storage: close to the trained weights, not bit-equal.
    assert torch.allclose(w_file, w_live, atol=0.05 * float(w_live.abs().max()) + 1e-3)
    assert img.shape == (4, 3, 16, 16) and torch.isfinite(img).all()

    from anycost.editing.session import Editor
    from anycost.io.modelfile import read_model

    info = read_model(path).info
    assert info["face"] is True and info["training"]["tool"] == "anycost train-autoencoder"
    ed = Editor(path)
    assert ed.encoder is not None


def test_prior_samples_and_mapping_fit(trained):
    tr, result, _, _ = trained
    assert result["mapping/rel_err_after"] < 0.5 * result["mapping/rel_err_before"]
    assert result["mapping/rel_err_after"] < 0.02
    G = tr.G.eval()
    with torch.no_grad():
        w = G.mapping(G.sample_z(64, seed=1))
        mu = tr.prior["mean"]
        # the mapped mean matches the prior mean to within the latent spread
        spread = float(tr.prior["chol"].pow(2).sum().sqrt())
        assert float((w.mean(0) - mu).norm()) < 0.5 * spread
        assert float((G.mean_w(n=512) - mu).norm()) < 0.5 * spread
        imgs = G.synthesize(G.to_w_plus(w[:8]), channels=0.5)
    assert torch.isfinite(imgs).all() and imgs.std() > 0.01
    samples = sorted((tr.out / "samples").glob("step-*-res-*.png"))
    assert len(samples) == len(G.resolutions)
    assert list((tr.out / "samples").glob("recon-*.png"))


def test_resume_continues_exactly(tmp_path):
    torch.set_num_threads(2)
    cfg = tiny_config(tmp_path / "a", steps=4, checkpoint_every=2, prior_samples=16, mapping_steps=2)
    a = AutoencoderTrainer(cfg, quiet=True)
    for _ in range(2):
        a.train_step()
    a.save_checkpoint()
    for _ in range(2):
        a.train_step()
    b = AutoencoderTrainer(cfg, quiet=True)
    b.resume(latest_checkpoint(cfg.out))
    assert b.step == 2
    for _ in range(2):
        b.train_step()
    for (name, pa), pb in zip(a.G.state_dict().items(), b.G.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    for pa, pb in zip(a.E.state_dict().values(), b.E.state_dict().values(), strict=True):
        assert torch.equal(pa, pb)


def test_bad_settings_are_input_errors(tmp_path):
    with pytest.raises(InputError):
        AutoencoderTrainer(tiny_config(tmp_path, res=48))
    with pytest.raises(InputError):
        AutoencoderTrainer(tiny_config(tmp_path, batch=1))
    with pytest.raises(InputError):
        AutoencoderTrainer(tiny_config(tmp_path, data=str(tmp_path / "missing")))


def test_latent_shift_leaves_images_unchanged(tmp_path):
    torch.set_num_threads(2)
    tr = AutoencoderTrainer(tiny_config(tmp_path, prior_samples=16), quiet=True)
    for _ in range(3):
        tr.train_step()
    tr.G.eval()
    tr.E.eval()
    x = tr.data.pool.images[:4]
    with torch.no_grad():
        before = tr.G.synthesize(tr.E(x), channels=0.5, impl="reference")
        tr.fit_prior()
        shift = tr.shift_latents()
        after = tr.G.synthesize(tr.E(x), channels=0.5, impl="reference")
    assert float(shift.abs().max()) > 0.1
    assert torch.allclose(before, after, atol=1e-4)


def test_init_from_a_model_file_continues_where_it_left_off(trained, tmp_path):
    tr, result, _, _ = trained
    G0, E0 = anycost.load_generator(result["model"]), anycost.load_encoder(result["model"])
    # the file's architecture wins over the (different) settings given, and its latents are centred again
    cfg = tiny_config(tmp_path / "ft", style_dim=8, enc_width=4, init=result["model"], warmup=0, curriculum=0)
    ft = AutoencoderTrainer(cfg, quiet=True)
    assert cfg.style_dim == G0.style_dim and cfg.enc_width == E0.config.width
    x = ft.data.pool.images[:6]
    ft.G.eval()
    ft.E.eval()
    with torch.no_grad():
        here = ft.G.synthesize(ft.E(x), noise="const", impl="reference")
        there = G0.synthesize(E0(x), noise="const", impl="reference")
        assert torch.allclose(here, there, atol=2e-3), "the same images as the model file (float16 storage)"
        assert float(ft.E(x).mean(1).mean(0).abs().max()) < float(E0(x).mean(1).mean(0).abs().max())
    logs = ft.train_step()
    assert math.isfinite(logs["loss/total"])
    gen_only = save_model(tmp_path / "gen_only.safetensors", generator=G0)
    with pytest.raises(InputError, match="generator and an encoder"):
        AutoencoderTrainer(tiny_config(tmp_path / "x", init=str(gen_only)), quiet=True)


def test_cli_resume_keeps_the_runs_settings(tmp_path):
    """`--resume` needs only --out: the run's own settings (here a tiny architecture) come from its checkpoint,
    and a flag given with it (--steps) overrides them."""
    from anycost.cli import main
    from anycost.training.checkpoint import load_checkpoint

    torch.set_num_threads(2)
    out = tmp_path / "run"
    assert main(["train-autoencoder", "--out", str(out), *TINY_CLI, "--steps", "2", "--quiet"]) == 0
    assert main(["train-autoencoder", "--out", str(out), "--resume", "--steps", "3", "--quiet"]) == 0
    ckpt = load_checkpoint(latest_checkpoint(out))
    assert ckpt["step"] == 3
    assert {k: ckpt["config"][k] for k in ("steps", "res", "style_dim", "enc_width", "batch", "checkpoint_every")} \
        == {"steps": 3, "res": 32, "style_dim": 16, "enc_width": 8, "batch": 2, "checkpoint_every": 1}


def test_cli_resume_can_switch_the_feature_net(tmp_path):
    """A run continued with ``--resume --feature-net OTHER --feature-weight W`` goes on through the other
    classifier at the new weight, and its model file names that one; without the flag it keeps its own."""
    from anycost.cli import main
    from anycost.io.modelfile import read_model
    from anycost.training.checkpoint import load_checkpoint
    from anycost.training.classifier import AttributeClassifier, ClassifierConfig, save_classifier

    torch.set_num_threads(2)
    torch.manual_seed(0)
    nets = [save_classifier(tmp_path / f"features{k}.safetensors",
                            AttributeClassifier(ClassifierConfig(attributes=["a"], input_size=16, width=8)))
            for k in (1, 2)]
    out = tmp_path / "run"
    assert main(["train-autoencoder", "--out", str(out), *TINY_CLI, "--feature-net", str(nets[0]), "--steps", "2",
                 "--quiet"]) == 0
    assert main(["train-autoencoder", "--out", str(out), "--resume", "--steps", "3", "--quiet"]) == 0
    assert load_checkpoint(latest_checkpoint(out))["config"]["feature_net"] == str(nets[0])
    assert main(["train-autoencoder", "--out", str(out), "--resume", "--steps", "4", "--feature-net", str(nets[1]),
                 "--feature-weight", "0.2", "--quiet"]) == 0
    config = load_checkpoint(latest_checkpoint(out))["config"]
    assert (config["feature_net"], config["feature_weight"]) == (str(nets[1]), 0.2)
    assert read_model(out / "model.safetensors").info["training"]["feature_net"] == str(nets[1])


def test_feature_net_loss_is_trained_logged_and_recorded(tmp_path):
    """``--feature-net``: a frozen attribute classifier's features join the reconstruction loss; the run
    logs the term, learns, leaves the classifier untouched and names it in the model file."""
    from anycost.training.classifier import AttributeClassifier, ClassifierConfig, save_classifier

    torch.manual_seed(0)
    clf = AttributeClassifier(ClassifierConfig(attributes=["a", "b"], input_size=16, width=8))
    net = save_classifier(tmp_path / "features.safetensors", clf)
    tr = AutoencoderTrainer(tiny_config(tmp_path / "run", feature_net=str(net), feature_weight=0.5, steps=12,
                                        checkpoint_every=0), quiet=True)
    before = {k: v.clone() for k, v in tr.feature_net.state_dict().items()}
    assert not any(p.requires_grad for p in tr.feature_net.parameters())
    x = tr.data.pool.images[:6]
    with torch.no_grad():
        start = float(attribute_feature_distance(tr.feature_net, tr.G.synthesize(tr.E(x), impl="reference"), x))
    logs = [tr.train_step() for _ in range(12)]
    assert all(math.isfinite(row["loss/feature"]) and row["loss/feature"] >= 0 for row in logs)
    tr.G.eval()
    tr.E.eval()
    with torch.no_grad():
        end = float(attribute_feature_distance(tr.feature_net, tr.G.synthesize(tr.E(x), impl="reference"), x))
    assert end < start
    assert all(torch.equal(before[k], v) for k, v in tr.feature_net.state_dict().items())
    tr.cfg.prior_samples, tr.cfg.mapping_steps = 16, 2
    model = tr.finish()["model"]
    from anycost.io.modelfile import read_model

    assert read_model(model).info["training"]["feature_net"] == str(net)
    with pytest.raises(ModelNotFoundError):
        AutoencoderTrainer(tiny_config(tmp_path / "bad", feature_net=str(tmp_path / "missing.safetensors")))
    with pytest.raises(ModelFileError, match="no attribute classifier"):
        AutoencoderTrainer(tiny_config(tmp_path / "bad", feature_net=model))


def test_label_weight_asks_reconstructions_for_the_faces_own_labels(tmp_path):
    """``--label-weight``: on synthetic faces, which know their labels, the feature net's scores of each
    reconstruction are pulled towards the face's true labels; the same run without it gets further
    from them on held-out faces. Data without labels, or a feature net scoring attributes the faces
    have no label for, is refused with a clear error."""
    from anycost.data.synth_faces import ATTRIBUTES, render_batch
    from anycost.imageio import images_to_tensor
    from anycost.io.modelfile import read_model
    from anycost.training.classifier import (
        AttributeClassifier,
        ClassifierConfig,
        ClassifierTrainConfig,
        LabelledData,
        save_classifier,
        train_classifier,
    )
    from anycost.training.losses import label_loss

    attrs = ["hair_darkness", "skin_tone", "lighting"]
    cols = [ATTRIBUTES.index(a) for a in attrs]
    faces, face_labels = render_batch(7, 192, 32, start=10 ** 6)  # a feature net that sees these at 32 px
    data = LabelledData(images_to_tensor(faces), torch.from_numpy(face_labels)[:, cols], attrs)
    clf = train_classifier(data, ClassifierTrainConfig(steps=120, batch=32, lr=5e-3), input_size=32, width=8)
    net = save_classifier(tmp_path / "features.safetensors", clf)
    imgs, labels = render_batch(99, 12, 32)
    x = images_to_tensor(imgs)
    y = torch.from_numpy(labels)[:, cols]

    def trained(weight: float) -> tuple[AutoencoderTrainer, list[dict], float]:
        torch.manual_seed(0)
        tr = AutoencoderTrainer(tiny_config(tmp_path / f"run{weight}", data="synth:faces", feature_net=str(net),
                                            feature_weight=0.05, label_weight=weight, steps=80,
                                            checkpoint_every=0), quiet=True)
        logs = [tr.train_step() for _ in range(80)]
        tr.G.eval()
        tr.E.eval()
        with torch.no_grad():
            logits = tr.feature_net.features(tr.G.synthesize(tr.E(x), impl="reference"))[1]
        return tr, logs, float(label_loss(logits, y))

    tr, logs, asked = trained(1.0)
    assert all(math.isfinite(row["loss/labels"]) for row in logs)
    # the labels used are those of the faces just rendered: the stream's 80th batch
    last = render_batch(tr.cfg.seed, tr.cfg.batch, 32, start=79 * tr.cfg.batch)[1]
    assert torch.equal(tr.data.labels, torch.from_numpy(last))
    _, logs_without, not_asked = trained(0.0)
    assert "loss/labels" not in logs_without[-1]
    assert asked < 0.9 * not_asked, (asked, not_asked)  # measured: 0.155 against 0.200
    tr.cfg.prior_samples, tr.cfg.mapping_steps = 16, 2
    assert read_model(tr.finish()["model"]).info["training"]["label_weight"] == 1.0

    with pytest.raises(InputError, match="knows its labels"):
        AutoencoderTrainer(tiny_config(tmp_path / "pool", feature_net=str(net), label_weight=1.0))
    with pytest.raises(InputError, match="--feature-net"):
        AutoencoderTrainer(tiny_config(tmp_path / "none", data="synth:faces", label_weight=1.0))
    other = save_classifier(tmp_path / "other.safetensors",
                            AttributeClassifier(ClassifierConfig(attributes=["a", "smile"], input_size=16, width=8)))
    with pytest.raises(InputError, match="no label for"):
        AutoencoderTrainer(tiny_config(tmp_path / "other", data="synth:faces", feature_net=str(other),
                                       label_weight=1.0))
