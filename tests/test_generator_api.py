"""Public generator API: latents, mixing, truncation, channel specs, resolutions, FLOPs."""

from __future__ import annotations

import pytest
import torch

import anycost
from anycost.models.channels import uniform_channels
from anycost.models.generator import Generator


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(1)
    return Generator(resolution=32, style_dim=32, n_mlp=2, channel_multiplier=1, channel_max=64).eval()


def test_shapes_and_properties(G):
    assert G.resolutions == [8, 16, 32]
    assert G.n_style == 8
    assert len(G.full_channels) == 8
    w = G.mapping(G.sample_z(3, seed=0))
    assert w.shape == (3, 32)
    with torch.no_grad():
        for r in G.resolutions:
            assert G.synthesize(w, res=r).shape == (3, 3, r, r)


def test_determinism_by_seed(G):
    a = G.styles_from_seed(7)
    b = G.styles_from_seed(7)
    assert torch.equal(a, b)
    assert not torch.equal(a, G.styles_from_seed(8))
    with torch.no_grad():
        assert torch.equal(G.synthesize(a), G.synthesize(b))
    m1, m2 = G.mean_w(n=500, seed=3), G.mean_w(n=500, seed=3)
    assert torch.equal(m1, m2) and m1.shape == (1, 32)


def test_random_noise_differs_but_is_seedable(G):
    w = G.styles_from_seed(0)
    for m in G.modules():  # noise strengths start at zero in a fresh generator
        if m.__class__.__name__ == "NoiseInjection":
            m.weight.data.fill_(0.3)
    with torch.no_grad():
        a = G.synthesize(w, noise="random", generator=torch.Generator().manual_seed(1))
        b = G.synthesize(w, noise="random", generator=torch.Generator().manual_seed(1))
        c = G.synthesize(w, noise="const")
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_truncation_and_mixing(G):
    w = G.mapping(G.sample_z(2, seed=5))
    center = G.mean_w(n=1000)
    assert torch.allclose(G.truncate(w, 0.0, center), center.expand_as(w))
    assert torch.equal(G.truncate(w, 1.0), w)
    w1, w2 = G.styles_from_seed(1), G.styles_from_seed(2)
    mixed = G.mix_styles(w1, w2, 3)
    assert torch.equal(mixed[:, :3], w1[:, :3]) and torch.equal(mixed[:, 3:], w2[:, 3:])
    with pytest.raises(ValueError):
        G.mix_styles(w1, w2, 99)


def test_w_plus_validation(G):
    with pytest.raises(ValueError, match="style slots"):
        G.synthesize(torch.zeros(1, 5, 32))
    with pytest.raises(ValueError):
        G.synthesize(torch.zeros(1, 8, 31))
    with pytest.raises(ValueError, match="res must be one of"):
        G.synthesize(torch.zeros(1, 32), res=4)


def test_channel_specs(G):
    full = G.full_channels
    assert G.resolve_channels(None) is None
    assert G.resolve_channels(1.0) is None
    half = G.resolve_channels(0.5)
    assert half == uniform_channels(full, 32, 64, 0.5)
    assert all(1 <= h <= f for h, f in zip(half, full, strict=True))
    flex = [f // 2 for f in full]
    assert G.resolve_channels(flex) == flex
    for bad in ([1] * 3, [0] * 8, [f + 1 for f in full]):
        with pytest.raises(ValueError):
            G.resolve_channels(bad)
    with pytest.raises(ValueError):
        G.resolve_channels(0.0)
    with pytest.raises(ValueError):
        G.resolve_channels(1.5)


def test_flexible_list_equals_uniform_when_same(G):
    w = G.styles_from_seed(4)
    with torch.no_grad():
        a = G.synthesize(w, channels=0.5)
        b = G.synthesize(w, channels=G.resolve_channels(0.5))
    assert torch.equal(a, b)


def test_sub_generator_uses_only_prefix_channels(G):
    """Changing weights outside the kept channels must not change a sliced render."""
    w = G.styles_from_seed(9)
    chans = G.resolve_channels(0.25)
    G2 = Generator(G.config)
    G2.load_state_dict(G.state_dict())
    G2.eval()
    with torch.no_grad():
        before = G2.synthesize(w, channels=chans)
        conv = G2.convs[-1].conv
        conv.weight[:, chans[-1]:] += 10.0  # output channels beyond the slice
        after = G2.synthesize(w, channels=chans)
        assert torch.allclose(before, after, atol=1e-6)
        assert (G2.synthesize(w) - G.synthesize(w)).abs().max() > 1e-3


def test_count_flops(G):
    full = anycost.count_flops(G)
    half = anycost.count_flops(G, channels=0.5)
    low = anycost.count_flops(G, res=16)
    assert 0 < half < full and 0 < low < full
    # the dominant term of the last 3x3 conv is there exactly
    c = G.full_channels[-1]
    assert full > 2 * 9 * c * c * 32 * 32
    big = Generator(resolution=1024, style_dim=512)
    f1024 = anycost.count_flops(big)
    # StyleGAN2 config-f: ~75 G multiply-adds (~150 GFLOP) per 1024² image
    assert 140e9 < f1024 < 165e9, f1024
    assert anycost.count_flops(big, res=256, channels=0.25) < f1024 / 10


def test_skip_layer_excitation_generator():
    torch.manual_seed(0)
    G = Generator(resolution=32, style_dim=16, n_mlp=1, channel_multiplier=1, channel_max=32,
                  sle=[(8, 32)]).eval()
    assert "sle.32.conv1.weight" in G.state_dict()
    w = G.styles_from_seed(0)
    with torch.no_grad():
        full = G.synthesize(w)
        sub = G.synthesize(w, channels=0.5)
        low = G.synthesize(w, res=16)
    assert full.shape == sub.shape == (1, 3, 32, 32) and low.shape == (1, 3, 16, 16)
    assert torch.isfinite(full).all() and torch.isfinite(sub).all()
    with pytest.raises(ValueError):
        Generator(resolution=32, sle=[(32, 8)])


def test_gradients_flow(G):
    G2 = Generator(G.config)
    G2.load_state_dict(G.state_dict())
    w = G2.styles_from_seed(0).clone().requires_grad_(True)
    img = G2.synthesize(w, channels=0.5, res=16)
    img.square().mean().backward()
    assert w.grad is not None and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0
    assert G2.convs[0].conv.weight.grad is not None
