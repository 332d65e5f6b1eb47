"""Importance-based channel sorting keeps the full generator's function and orders channels."""

from __future__ import annotations

import pytest
import torch

from anycost.models.generator import Generator, GeneratorConfig
from anycost.training.channel_sort import channel_importance, permute_optimizer, sort_channels


def perturbed_G(sle) -> Generator:
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(resolution=32, style_dim=16, n_mlp=1, channel_multiplier=1, channel_max=32,
                                  sle=sle))
    with torch.no_grad():  # non-trivial biases/modulations so every tensor matters
        for p in G.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return G


@pytest.mark.parametrize("sle", [[], [(4, 16), (8, 32)]])
def test_sorting_preserves_full_output_at_every_resolution(sle):
    G = perturbed_G(sle)
    w = G.styles_from_seed(3, 2)
    before = {r: G.synthesize(w, res=r) for r in G.resolutions}
    sub_before = G.synthesize(w, channels=0.5)
    sort_channels(G)
    for r in G.resolutions:
        torch.testing.assert_close(G.synthesize(w, res=r), before[r], atol=1e-5, rtol=0)
    # Sub-generators do change: they now keep the most important channels.
    assert not torch.allclose(G.synthesize(w, channels=0.5), sub_before, atol=1e-3)
    for imp in channel_importance(G):
        assert torch.all(imp[:-1] >= imp[1:])


def test_optimizer_moments_follow_the_parameters():
    G = perturbed_G([])
    opt = torch.optim.Adam(G.parameters(), lr=1e-3)
    G.synthesize(G.styles_from_seed(0, 2)).square().mean().backward()
    opt.step()
    w = G.convs[0].conv.weight
    marker = opt.state[w]["exp_avg"].clone()
    imp = channel_importance(G)[2]
    perms = sort_channels(G)
    permute_optimizer(opt, G, perms)
    assert torch.equal(perms[2], torch.sort(-imp, stable=True).indices)
    expected = marker.index_select(1, perms[2]).index_select(2, perms[1])
    assert torch.equal(opt.state[w]["exp_avg"], expected)
