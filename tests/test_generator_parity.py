"""The generator against the published reference: the shared fixture and the official layouts."""

from __future__ import annotations

import json

import pytest
import torch

import anycost
from anycost.models.generator import Generator


@pytest.fixture(scope="module")
def fixture_data(official_fixture):
    G = anycost.load_generator(official_fixture / "generator.pt")
    expected = torch.load(official_fixture / "expected.pt", weights_only=True)
    return G, expected


def _case_input(G, expected, case):
    if case["input"] == "z":
        w = G.mapping(expected["z"])
    else:
        w = expected["w_plus"]
    if case["truncation"] < 1:
        w = G.truncate(w, case["truncation"], center=expected["truncation_style"])
    return w


def _case_channels(case):
    return case.get("flexible_channels") or case["ratio"]


def test_fixture_config_is_inferred(fixture_data, official_fixture):
    G, _ = fixture_data
    cfg = json.loads((official_fixture / "config.json").read_text())
    assert G.resolution == cfg["resolution"]
    assert G.style_dim == cfg["style_dim"]
    assert G.n_style == cfg["n_style"]
    assert G.num_layers == cfg["num_layers"]
    assert G.full_channels == cfg["full_channels"]


@pytest.mark.parametrize("impl", ["reference", "auto"])
def test_every_fixture_case_matches(fixture_data, impl):
    G, expected = fixture_data
    assert len(expected["cases"]) >= 10
    with torch.no_grad():
        for case in expected["cases"]:
            w = _case_input(G, expected, case)
            kwargs = {} if impl == "auto" else {"impl": impl}
            try:
                out = G.synthesize(w, res=case["target_res"], channels=_case_channels(case), **kwargs)
            except TypeError:
                out = G.synthesize(w, res=case["target_res"], channels=_case_channels(case))
            assert out.shape == case["out"].shape
            err = (out - case["out"]).abs().max().item()
            assert err <= 1e-4, (case["input"], case["target_res"], case["ratio"], err)


def test_slicing_changes_the_image(fixture_data):
    """The sliced cases are real sub-generators, not the full model under another name."""
    G, expected = fixture_data
    full = [c for c in expected["cases"] if c["input"] == "z" and c["target_res"] == 64 and c["ratio"] == 1.0
            and c["truncation"] == 1.0][0]["out"]
    half = [c for c in expected["cases"] if c["input"] == "z" and c["target_res"] == 64
            and c["ratio"] == 0.5][0]["out"]
    assert (full - half).abs().max() > 1e-2
    with torch.no_grad():
        w = G.mapping(expected["z"])
        assert (G.synthesize(w, channels=0.5) - G.synthesize(w)).abs().max() > 1e-2


@pytest.mark.parametrize("res,fname", [(1024, "stylegan2_1024_cm2_state_dict.json"),
                                       (512, "stylegan2_512_cm2_state_dict.json")])
def test_published_generator_layouts(official_fixture, res, fname):
    expected = json.loads((official_fixture / fname).read_text())
    with torch.device("meta"):
        G = Generator(resolution=res, style_dim=512, n_mlp=8, channel_multiplier=2, channel_max=512)
    got = [[k, list(v.shape)] for k, v in G.state_dict().items()]
    assert got == expected


def test_published_encoder_layout(official_fixture):
    expected = json.loads((official_fixture / "resnet50_encoder_18x512_state_dict.json").read_text())
    with torch.device("meta"):
        E = anycost.Encoder(n_style=18, style_dim=512, depth=50)
    got = [[k, list(v.shape)] for k, v in E.state_dict().items()]
    assert got == expected


def test_official_encoder_checkpoint_loads(tmp_path):
    """An encoder stored the official way ({'state_dict': …}) loads and predicts W+."""
    E = anycost.Encoder(n_style=10, style_dim=64, depth=50, width=16)  # official input size 256
    with torch.no_grad():
        E.fc.weight.normal_(0, 0.01)
        E.mean_latent.normal_()
    path = tmp_path / "encoder.pt"
    torch.save({"state_dict": E.state_dict()}, path)
    E2 = anycost.load_encoder(path)
    assert E2.config.depth == 50 and E2.config.n_style == 10 and E2.config.width == 16
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    E.eval()
    with torch.no_grad():
        assert torch.allclose(E(x), E2(x), atol=1e-6)
        assert E2(x).shape == (2, 10, 64)


def test_official_1024_checkpoint_round_trip(tmp_path):
    """A full-size official checkpoint (random weights) loads with the right architecture."""
    torch.manual_seed(0)
    G = Generator(resolution=1024)
    path = tmp_path / "anycost-ffhq-config-f.pt"
    torch.save({"g_ema": G.state_dict()}, path)
    del G
    G2 = anycost.load_generator(path)
    assert G2.resolution == 1024 and G2.n_style == 18
    assert G2.full_channels[-1] == 32 and G2.full_channels[0] == 512
    assert G2.resolve_channels(0.5)[-1] == 16
