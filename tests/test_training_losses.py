"""Training building blocks: losses, regularisers, DiffAugment, discriminators, LPIPS fallback, metrics."""

from __future__ import annotations

import warnings

import pytest
import torch

from anycost.measures import perceptual
from anycost.measures.psnr import psnr
from anycost.models.generator import Generator, GeneratorConfig
from anycost.training.diffaugment import DiffAugment
from anycost.training.discriminator import ConditionedDiscriminator, Discriminator
from anycost.training.fewshot import FewShotDiscriminator, reconstruction_loss, sle_pairs
from anycost.training.losses import (
    consistency_loss,
    d_hinge_loss,
    d_logistic_loss,
    g_hinge_loss,
    g_nonsaturating_loss,
    lazy_r1_loss,
    path_length_penalty,
    r1_penalty,
)
from anycost.training.metrics import MetricUnavailable, consistency_metrics, fid
from anycost.training.subnets import SubnetSampler, encode_channels


@pytest.fixture(autouse=True)
def _threads():
    torch.manual_seed(0)


def tiny_G(res: int = 16, sle=()) -> Generator:
    return Generator(GeneratorConfig(resolution=res, style_dim=16, n_mlp=1, channel_multiplier=1, channel_max=32,
                                     sle=list(sle)))


def test_logistic_losses_known_values():
    zero = torch.zeros(4, 1)
    assert d_logistic_loss(zero, zero).item() == pytest.approx(2 * torch.log(torch.tensor(2.0)).item())
    assert g_nonsaturating_loss(zero).item() == pytest.approx(0.6931472, abs=1e-6)
    # A confident, correct discriminator has a small loss; a fooled one a large one.
    assert d_logistic_loss(torch.full((4, 1), 10.0), torch.full((4, 1), -10.0)).item() < 1e-3
    assert d_logistic_loss(torch.full((4, 1), -10.0), torch.full((4, 1), 10.0)).item() > 19


def test_hinge_losses_known_values():
    real = torch.tensor([[2.0], [0.5], [-1.0]])
    fake = torch.tensor([[-2.0], [0.0], [1.0]])
    # relu(1 - real) = [0, .5, 2] → mean 5/6; relu(1 + fake) = [0, 1, 2] → mean 1.
    assert d_hinge_loss(real, fake).item() == pytest.approx(5 / 6 + 1)
    assert g_hinge_loss(fake).item() == pytest.approx(1 / 3)


def test_r1_is_zero_for_a_constant_discriminator_and_positive_otherwise():
    D = Discriminator(16, channel_multiplier=1, channel_max=32)
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    assert r1_penalty(D(x), x).item() > 0
    with torch.no_grad():
        for m in D.from_rgbs.values():
            m[0].weight.zero_()
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    assert r1_penalty(D(x), x).item() == 0.0
    # Lazy form: scaled by gamma/2·k and keeps the head (no input gradient there) in the graph.
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    lazy_r1_loss(D(x), x, gamma=10.0, every=4).backward()
    assert all(p.grad is not None for p in D.final_linear.parameters())


def test_path_length_penalty_runs_and_tracks_mean():
    G = tiny_G()
    w = G.to_w_plus(G.mapping(torch.randn(2, 16))).detach().requires_grad_(True)
    img = G.synthesize(w, noise="random")
    pen, mean, lengths = path_length_penalty(img, w, torch.zeros(()))
    assert torch.isfinite(pen) and lengths.shape == (2,) and mean.item() > 0
    pen.backward()
    assert G.convs[0].conv.weight.grad is not None


def test_discriminator_accepts_every_resolution_and_rejects_others():
    D = Discriminator(32, channel_multiplier=1, channel_max=32)
    for r in (8, 16, 32):
        out = D(torch.randn(3, 3, r, r))
        assert out.shape == (3, 1) and torch.isfinite(out).all()
    with pytest.raises(ValueError):
        D(torch.randn(2, 3, 12, 12))


def test_conditioned_discriminator_uses_the_channel_encoding():
    G = tiny_G()
    sampler = SubnetSampler(G)
    D = ConditionedDiscriminator(16, cond_dim=sampler.cond_dim, channel_multiplier=1, channel_max=32)
    x = torch.randn(4, 3, 16, 16)
    full, small = sampler.encode(None), sampler.encode(sampler.smallest)
    assert full.sum().item() == len(G.full_channels)  # one hot per layer
    assert not torch.equal(full, small)
    # FiLM starts as the identity, so conditioning is learned from zero.
    assert torch.equal(D(x, full[None]), D(x, small[None]))
    with torch.no_grad():
        D.film[1].weight.normal_()
    assert not torch.allclose(D(x, full[None]), D(x, small[None]))
    # Gradients reach the FiLM mapping.
    D(x, small[None]).sum().backward()
    assert D.film[0].weight.grad.abs().sum() > 0


def test_subnet_sampler_sandwich_and_encoding():
    import random

    G = tiny_G(32)
    s = SubnetSampler(G, n_random=3)
    rng = random.Random(0)
    sw = s.sandwich(rng)
    assert len(sw) == 5 and sw[0] == G.full_channels and sw[1] == s.smallest
    for cfg in sw:
        G.resolve_channels(cfg)  # valid per-layer lists
    assert min(s.smallest) < max(G.full_channels)
    enc = encode_channels(sw[2], s.candidates)
    assert enc.shape == (s.cond_dim,) and enc.sum().item() == len(G.full_channels)


def test_diffaugment_is_differentiable_and_identical_for_equal_params():
    aug = DiffAugment("color,translation,cutout")
    real = torch.randn(4, 3, 16, 16)
    fake = real.clone().requires_grad_(True)
    params = aug.sample_params(4, 16)
    out_real, out_fake = aug.apply(real, params), aug.apply(fake, params)
    assert torch.equal(out_real, out_fake.detach())  # same op for both
    assert not torch.allclose(out_real, real)
    out_fake.sum().backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    # Translation by a known shift moves content; cutout zeroes a square.
    t = DiffAugment("translation")
    x = torch.arange(16.0).view(1, 1, 4, 4).expand(1, 3, 4, 4)
    y = t.apply(x, {"shift": torch.tensor([[1.0, 0.0]])})
    assert torch.equal(y[0, 0, 1:], x[0, 0, :-1]) and y[0, 0, 0].abs().sum() == 0
    c = DiffAugment("cutout").apply(torch.ones(1, 3, 8, 8), {"cut_pos": torch.tensor([[4.0, 4.0]]),
                                                            "cut_size": torch.tensor(4)})
    assert c.sum().item() == 3 * (64 - 16)
    with pytest.raises(ValueError):
        DiffAugment("rotate")


def test_fewshot_discriminator_decoders_and_reconstruction_loss():
    import random

    D = FewShotDiscriminator(32, channel_multiplier=1, channel_max=32)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    logits, whole, part = D.forward_with_recon(x, None, part=3)
    assert logits.shape == (2, 1)
    assert whole.shape == (2, 3, D.decode_res, D.decode_res) and part.shape == whole.shape
    _, loss = reconstruction_loss(D, x, None, random.Random(0))
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert D.decoder_whole.net[-2].weight.grad is not None
    assert sle_pairs(256) == [(8, 64), (16, 128), (32, 256)]
    assert sle_pairs(32) == [(4, 32)]


def test_consistency_loss_zero_for_full_vs_full_and_positive_for_a_subnet():
    G = tiny_G()
    w = G.styles_from_seed(0, 2)
    full = G.synthesize(w)
    assert consistency_loss(full, full).item() == 0.0
    sub = G.synthesize(w, channels=0.25)
    assert consistency_loss(sub, full).item() > 0
    with pytest.raises(ValueError):
        consistency_loss(G.synthesize(w, res=8), full)


def test_lpips_falls_back_without_weights_and_loads_a_cached_backbone(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    perceptual._warned.clear()
    with pytest.warns(RuntimeWarning, match="LPIPS backbone weights not found"):
        assert perceptual.load_lpips("alex") is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert perceptual.load_lpips("alex") is None  # warned once only

    # A random backbone file in the cache exercises the real LPIPS path.
    from torchvision.models import alexnet

    home = tmp_path / "torch"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    feats = {f"features.{k}": v for k, v in alexnet().features.state_dict().items()}
    torch.save(feats, home / "hub" / "checkpoints" / perceptual.BACKBONE_FILES["alex"])
    monkeypatch.setenv("TORCH_HOME", str(home))
    model = perceptual.load_lpips("alex")
    assert model is not None
    assert torch.equal(model.net.slice1[0].weight, feats["features.0.weight"])
    a = torch.rand(2, 3, 16, 16) * 2 - 1
    b = torch.rand(2, 3, 16, 16) * 2 - 1
    assert consistency_loss(a, a, model).item() == pytest.approx(0.0, abs=1e-6)
    assert consistency_loss(a, b, model).item() > consistency_loss(a, b).item()


def test_consistency_metrics_and_fid_message(tmp_path, monkeypatch):
    G = tiny_G()
    m = consistency_metrics(G, ratios=(0.25, 0.5, 1.0), n_seeds=2)
    assert set(m) == {f"psnr/r{r}/res{res}" for r in (0.25, 0.5) for res in (8, 16)}
    assert all(v > 0 for v in m.values())
    x = torch.rand(2, 3, 8, 8)
    assert psnr(x, x).min().item() > 100
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MetricUnavailable, match="Inception"):
        fid(G, [torch.zeros(2, 3, 16, 16)], n=2)


def test_attribute_features_see_what_pixel_mse_misses():
    """The face-aware loss of ``train-autoencoder --feature-net``, through the demo model's classifier:
    putting glasses on (or a smile) is far from the original, a brightness shift of equal pixel MSE is
    near it, identical images are at zero, and the gradient reaches the image."""
    from dataclasses import replace

    import numpy as np

    from anycost.data.synth_faces import face_attributes, render_face
    from anycost.imageio import images_to_tensor
    from anycost.io.modelfile import read_model
    from anycost.registry import resolve_model
    from anycost.training.classifier import classifier_from_component
    from anycost.training.losses import attribute_feature_distance, feature_reference

    path = resolve_model("anycost-demo")
    clf = classifier_from_component(read_model(path).components["classifier"], str(path))

    def image(face) -> torch.Tensor:
        return images_to_tensor(np.asarray(render_face(face, 128)))

    for k in range(3):
        face = face_attributes(0, 2 * 10 ** 9 + k)
        for name in ("eyeglasses", "smile"):
            a, b = image(replace(face, **{name: 0.0})), image(replace(face, **{name: 1.0}))
            shifted = a + ((a - b) ** 2).mean().sqrt()  # the same pixel MSE as the edit
            with torch.no_grad():
                edit, shift = attribute_feature_distance(clf, b, a), attribute_feature_distance(clf, shifted, a)
                assert float(attribute_feature_distance(clf, a, a).abs()) < 1e-5
            assert float(edit) > 4 * float(shift), (name, float(edit), float(shift))
    fake = image(face).requires_grad_(True)
    attribute_feature_distance(clf, fake, a).backward()
    assert fake.grad is not None and float(fake.grad.abs().sum()) > 0
    # the real side computed once (as training does for every sub-generator of a step) gives the same distance
    once = feature_reference(clf, a)
    assert not once.logits.requires_grad
    assert torch.allclose(attribute_feature_distance(clf, b, once), attribute_feature_distance(clf, b, a))


def test_label_loss_is_zero_at_the_labels_and_pulls_scores_towards_them():
    from anycost.training.losses import label_loss

    labels = torch.tensor([[0.0, 1.0, 0.3], [1.0, 0.5, 0.9]])
    at_labels = torch.logit(labels.clamp(1e-6, 1 - 1e-6))
    assert abs(float(label_loss(at_labels, labels))) < 1e-4
    logits = torch.zeros(2, 3, requires_grad=True)
    loss = label_loss(logits, labels)
    assert float(loss.detach()) > 0.05
    loss.backward()
    # descending the gradient moves each score towards its label (0.5 stays put)
    step = -logits.grad.sign()
    assert torch.equal(step, torch.sign(labels - 0.5))
    with pytest.raises(ValueError, match="differ in shape"):
        label_loss(torch.zeros(2, 3), torch.zeros(2, 4))
