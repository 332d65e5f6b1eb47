"""The fast inference engine renders exactly what the reference synthesis path renders."""

from __future__ import annotations

import json

import pytest
import torch

from anycost import Generator, GeneratorConfig
from anycost.models import fast_synthesis

ATOL = 1e-4

CONFIGS = {
    # widths 48, 48, 48, 25, 12: odd slices, both weight- and activation-modulated layers
    "odd-widths": dict(resolution=64, style_dim=24, n_mlp=1, channel_multiplier=0.05, channel_max=48),
    # skip-layer excitation from 8 px into 32 px
    "sle": dict(resolution=32, style_dim=16, n_mlp=1, channel_multiplier=0.07, channel_max=40, sle=[(8, 32)]),
    # excitation from the 4 px features, 5-tap blur kernel
    "sle4-blur5": dict(resolution=16, style_dim=16, n_mlp=1, channel_multiplier=0.01, channel_max=20,
                       sle=[(4, 16)], blur_kernel=(1, 2, 3, 2, 1)),
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _random_generator(settings: dict, seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    G = Generator(**settings).eval()
    with torch.no_grad():
        for name, p in G.named_parameters():
            if "noise" in name or "bias" in name:
                p.normal_(0.0, 0.5)  # zero-initialised at construction: give them a role
        for i in range(G.num_layers):
            G.noises.get(i).normal_()
    return G


def _flexible(G: Generator, seed: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return [int(torch.randint(1, c + 1, (1,), generator=g)) for c in G.full_channels]


def _both(G: Generator, w: torch.Tensor, **kw) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        ref = G.synthesize(w, impl="reference", **kw)
        fast = G.synthesize(w, impl="fast", **kw)
    return ref, fast


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def gen(request) -> Generator:
    return _random_generator(CONFIGS[request.param])


@pytest.mark.parametrize("batch", [1, 3])
def test_parity_every_resolution_and_channel_config(gen: Generator, batch: int):
    w = torch.randn(batch, gen.n_style, gen.style_dim)
    for res in gen.resolutions:
        for channels in (None, 0.5, _flexible(gen, res)):
            ref, fast = _both(gen, w, res=res, channels=channels)
            assert fast.shape == ref.shape == (batch, 3, res, res)
            assert fast.dtype == ref.dtype and fast.is_contiguous()
            err = (fast - ref).abs().max().item()
            assert err <= ATOL, f"res {res}, channels {channels}: max abs error {err:.2e}"


def test_parity_explicit_and_random_noise(gen: Generator):
    w = torch.randn(3, gen.n_style, gen.style_dim)
    per_sample = [torch.randn(3, 1, gen.noises.get(i).shape[-1], gen.noises.get(i).shape[-1])
                  for i in range(gen.num_layers)]
    shared = [torch.randn_like(gen.noises.get(i)) for i in range(gen.num_layers)]
    for noise in (per_sample, shared):
        ref, fast = _both(gen, w, noise=noise, channels=0.5)
        assert (fast - ref).abs().max().item() <= ATOL
    with torch.no_grad():
        ref = gen.synthesize(w, noise="random", generator=torch.Generator().manual_seed(5), impl="reference")
        fast = gen.synthesize(w, noise="random", generator=torch.Generator().manual_seed(5), impl="fast")
    assert (fast - ref).abs().max().item() <= ATOL
    # per-sample noise really is per sample: identical styles, different maps → different images
    same_w = w[:1].expand(3, -1, -1)
    with torch.no_grad():
        out = gen.synthesize(same_w, noise=per_sample, impl="fast")
    assert not torch.allclose(out[0], out[1])


def test_auto_dispatch(monkeypatch):
    G = _random_generator(CONFIGS["odd-widths"])
    calls = []
    real = fast_synthesis.synthesize_fast

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(fast_synthesis, "synthesize_fast", spy)
    w = torch.randn(2, G.n_style, G.style_dim)
    with torch.no_grad():
        G.synthesize(w, res=32)
    assert len(calls) == 1
    with torch.inference_mode():
        G.synthesize(w, res=32)
    assert len(calls) == 2
    with torch.no_grad():
        G.synthesize(w, res=32, impl="reference")
    assert len(calls) == 2
    # gradients wanted: the differentiable path, and the graph reaches the parameters
    out = G.synthesize(w, res=32)
    assert len(calls) == 2 and out.requires_grad
    out.mean().backward()
    assert G.convs[0].conv.weight.grad is not None
    # nothing requires grad: fast even with grad mode on
    G.requires_grad_(False)
    out = G.synthesize(w, res=32)
    assert len(calls) == 3 and not out.requires_grad
    with pytest.raises(ValueError, match="impl"):
        G.synthesize(w, impl="fastest")


def _fast_vs_ref_error(G: Generator, w: torch.Tensor, **kw) -> float:
    ref, fast = _both(G, w, **kw)
    return (fast - ref).abs().max().item()


def test_cache_follows_weight_changes():
    G = _random_generator(CONFIGS["odd-widths"])
    w = torch.randn(1, G.n_style, G.style_dim)
    for channels in (None, 0.5):
        assert _fast_vs_ref_error(G, w, channels=channels) <= ATOL  # fills the cache
    conv = G.convs[0].conv  # activation-modulated at 4 px, so its static weight is cached
    # 1) in-place update under no_grad (optimizer-style): bumps the version counter
    # (a demodulated weight is scale-invariant, so every change below is more than a rescale)
    with torch.no_grad():
        conv.weight.add_(0.5 * torch.randn_like(conv.weight))
        G.conv1.conv.weight.add_(0.3)
    for channels in (None, 0.5):
        assert _fast_vs_ref_error(G, w, channels=channels) <= ATOL
    # 2) load_state_dict from another generator
    other = _random_generator(CONFIGS["odd-widths"], seed=1)
    G.load_state_dict(other.state_dict())
    with torch.no_grad():
        assert torch.allclose(G.synthesize(w, impl="fast"), other.synthesize(w, impl="fast"), atol=ATOL)
    for channels in (None, 0.5):
        assert _fast_vs_ref_error(G, w, channels=channels) <= ATOL
    # 3) writes through .data, invisible to the version counter (EMA-style updates)
    G.convs[1].conv.weight.data.lerp_(torch.randn_like(G.convs[1].conv.weight), 0.5)
    conv.weight.data.lerp_(torch.randn_like(conv.weight), 0.5)
    for channels in (None, 0.5):
        assert _fast_vs_ref_error(G, w, channels=channels) <= ATOL
    # 4) a new tensor assigned as the parameter's data
    conv.weight.data = torch.randn_like(conv.weight)
    assert _fast_vs_ref_error(G, w, channels=0.5) <= ATOL
    fast_synthesis.invalidate_cache(G)
    assert _fast_vs_ref_error(G, w) <= ATOL


def test_fast_path_after_training_step():
    G = _random_generator(CONFIGS["sle"])
    w = torch.randn(2, G.n_style, G.style_dim)
    assert _fast_vs_ref_error(G, w) <= ATOL
    opt = torch.optim.SGD(G.parameters(), lr=0.1)
    G.train()
    G.synthesize(w).square().mean().backward()  # differentiable path while training
    opt.step()
    G.eval()
    assert _fast_vs_ref_error(G, w) <= ATOL


def test_official_fixture_through_fast_path(official_fixture):
    cfg = json.loads((official_fixture / "config.json").read_text())
    settings = {k: cfg[k] for k in ("resolution", "style_dim", "n_mlp", "channel_multiplier", "channel_max")}
    G = Generator(GeneratorConfig(**settings)).eval()
    sd = torch.load(official_fixture / "generator.pt", map_location="cpu", weights_only=True)["g_ema"]
    G.load_state_dict(sd)
    data = torch.load(official_fixture / "expected.pt", map_location="cpu", weights_only=True)
    with torch.no_grad():
        for case in data["cases"]:
            if case["input"] == "z":
                w = G.mapping(data["z"][:, 0])
                if case["truncation"] < 1:
                    t = data["truncation_style"]
                    w = t + case["truncation"] * (w - t)
            else:
                w = data["w_plus"]
            channels = case.get("flexible_channels") or case["ratio"]
            out = G.synthesize(w, res=case["target_res"], channels=channels, impl="fast")
            err = (out - case["out"]).abs().max().item()
            assert err <= ATOL, f"{case['input']} res {case['target_res']} ratio {case['ratio']}: {err:.2e}"


def test_bfloat16_render_is_close():
    G = _random_generator(CONFIGS["sle"])
    w = torch.randn(2, G.n_style, G.style_dim)
    with torch.no_grad():
        ref = G.synthesize(w, res=32, impl="reference")
        f32 = fast_synthesis.render(G, w, res=32)
        bf16 = fast_synthesis.render(G, w, res=32, dtype=torch.bfloat16)
    assert (f32 - ref).abs().max().item() <= ATOL
    assert bf16.dtype == torch.float32 and bf16.shape == ref.shape
    err = (bf16 - ref).abs()
    assert 0 < err.max().item() < 0.05 * ref.abs().max().item()
    assert err.mean().item() < 0.01 * ref.abs().max().item()
