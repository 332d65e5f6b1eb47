"""Projection: encoder answer first, progressive refinement, budgets and cancellation."""

from __future__ import annotations

import threading
import warnings

import pytest
import torch
import torch.nn.functional as F

import anycost
from anycost.editing.preview_choice import parse_cost, pick_preview_cost
from anycost.editing.project import ProjectionSettings, Projector, psnr
from anycost.editing.render import Cost, candidate_costs
from anycost.errors import InputError
from anycost.measures import perceptual

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # a 64 px model: extra threads only wait


@pytest.fixture(scope="module")
def G(official_fixture):
    return anycost.load_generator(official_fixture / "generator.pt")


@pytest.fixture(scope="module")
def target(G):
    with torch.no_grad():
        return G.synthesize(G.styles_from_seed(5, truncation=0.7))


def test_refinement_improves_and_reports_progress(G, target):
    P = Projector(G, settings=ProjectionSettings(steps=40, report_every=20, use_lpips=False))
    steps = list(P.iter_project(target))
    assert [s.step for s in steps] == [0, 20, 40]
    assert steps[-1].final and not any(s.final for s in steps[:-1])
    assert steps[-1].psnr > steps[0].psnr + 5
    assert steps[-1].w_plus.shape == (1, G.n_style, G.style_dim)
    with torch.no_grad():  # the reported image is the render of the reported latent
        assert psnr(G.synthesize(steps[-1].w_plus), steps[-1].image) > 60
    assert all(p.requires_grad for p in G.parameters()), "projection must restore parameter flags"


def test_lbfgs_optimizer(G, target):
    P = Projector(G, settings=ProjectionSettings(steps=15, optimizer="lbfgs", report_every=100, use_lpips=False))
    first, last = P.iter_project(target).__next__(), P.project(target)
    assert last.psnr > first.psnr


def test_cancellation_and_time_budget(G, target):
    ev = threading.Event()
    P = Projector(G, settings=ProjectionSettings(steps=1000, report_every=5, use_lpips=False))
    seen = []
    for s in P.iter_project(target, cancel=ev):
        seen.append(s)
        if s.step >= 10:
            ev.set()
    assert seen[-1].cancelled and seen[-1].final and seen[-1].step < 20
    timed = P.project(target, settings=ProjectionSettings(steps=10_000, time_budget=0.5, use_lpips=False))
    assert timed.final and not timed.cancelled and 0 < timed.step < 10_000


def test_encoder_gives_the_first_answer(G, target):
    torch.manual_seed(0)
    E = anycost.Encoder(n_style=G.n_style, style_dim=G.style_dim, depth=10, width=8, input_size=64).eval()
    with torch.no_grad():
        E.mean_latent.copy_(G.mean_w()[0])
    P = Projector(G, E, settings=ProjectionSettings(steps=0))
    (only,) = list(P.iter_project(target))
    assert only.final and only.step == 0
    with torch.no_grad():
        assert torch.allclose(only.w_plus, E(target))


def test_costs(G):
    assert parse_cost("full", G) == Cost()
    assert parse_cost("32:0.5", G) == Cost(32, 0.5)
    assert parse_cost("0.25", G) == Cost(None, 0.25)
    assert parse_cost("16", G) == Cost(16, None)
    for bad in ("48:0.5", "abc", "32:2"):
        with pytest.raises(InputError):
            parse_cost(bad, G)
    cands = candidate_costs(G)
    flops = [anycost.count_flops(G, c.res, c.channels) for c in cands]
    assert flops == sorted(flops)
    assert pick_preview_cost(G, budget_ms=1e9) == cands[-1]
    assert pick_preview_cost(G, budget_ms=0.0) == cands[0]


def _mse_only(**kw) -> ProjectionSettings:
    return ProjectionSettings(use_lpips=False, encoder_reg=0.0, consistency_weight=0.0, **kw)


def test_cancel_and_finish_return_the_best_latent_seen(G, target):
    # a learning rate far too high: the loss jumps around, so the latest latent is not the best
    ev = threading.Event()
    P = Projector(G, settings=_mse_only(steps=1000, lr=0.6, report_every=1))
    seen = []
    for s in P.iter_project(target, cancel=ev):
        seen.append(s)
        if s.step >= 8:
            ev.set()
    final, progress = seen[-1], seen[:-1]
    assert final.cancelled and final.final and final.step == 8
    best = min(progress, key=lambda s: s.loss)
    assert 0 < best.step < progress[-1].step, [round(s.loss, 4) for s in progress]
    assert progress[-1].loss > best.loss  # cancelling at the latest latent would have lost ground
    assert torch.equal(final.w_plus, best.w_plus) and final.loss == pytest.approx(best.loss, rel=1e-6)
    with torch.no_grad():  # the reported loss is the real loss of the returned latent (targets are clamped)
        real = F.mse_loss(G.synthesize(final.w_plus, noise="const"), target.clamp(-1, 1)).item()
    assert real == pytest.approx(final.loss, rel=1e-5)
    # running to the end (no cancel) answers with the best too: no intermediate step beats it
    done = list(P.iter_project(target, settings=_mse_only(steps=8, lr=0.6, report_every=1)))
    assert done[-1].final and not done[-1].cancelled
    assert done[-1].loss <= min(s.loss for s in done[:-1]) * (1 + 1e-6)


def test_refinement_resumes_from_w_init_and_pulls_towards_the_anchor(G, target):
    with torch.no_grad():
        anchor = G.to_w_plus(G.mean_w())
        start = anchor + 0.1 * torch.randn(anchor.shape, generator=torch.Generator().manual_seed(3))
    P = Projector(G)
    pull = ProjectionSettings(steps=15, report_every=100, use_lpips=False, consistency_weight=0.0, encoder_reg=1.0)
    near_start = list(P.iter_project(target, w_init=start, settings=pull))
    assert torch.equal(near_start[0].w_plus, start)  # step 0 is the given latent, not the encoder's answer
    pulled = P.project(target, w_init=start, anchor=anchor, settings=pull)

    def dist(w: torch.Tensor) -> float:
        return float((w - anchor).norm())

    # the pull goes to the anchor when one is given, else it holds the latent near where it started
    assert dist(pulled.w_plus) < 0.7 * dist(start), (dist(pulled.w_plus), dist(start))
    assert dist(pulled.w_plus) < 0.7 * dist(near_start[-1].w_plus), (dist(pulled.w_plus), dist(near_start[-1].w_plus))
    with pytest.raises(ValueError, match="anchor"):
        next(P.iter_project(target, anchor=anchor[:, :2]))


def test_encoder_regularisation_keeps_the_latent_near_the_encoders_answer(G, target):
    far = G.synthesize(G.styles_from_seed(11, truncation=0.7)).detach()  # a face away from the start
    w0 = Projector(G).encode(far)
    dist = {}
    for reg in (0.0, 1.0):
        P = Projector(G, settings=ProjectionSettings(steps=20, report_every=100, use_lpips=False,
                                                     consistency_weight=0.0, encoder_reg=reg))
        last = P.project(far)
        assert ("encoder" in last.terms) == (reg > 0)
        dist[reg] = float((last.w_plus - w0).norm())
    assert dist[1.0] < 0.5 * dist[0.0], dist


def test_consistency_term_makes_sub_generators_follow_the_target(G, target):
    sub_db = {}
    for weight in (0.0, 1.0):
        P = Projector(G, settings=ProjectionSettings(steps=20, report_every=100, use_lpips=False, seed=1,
                                                     consistency_weight=weight, consistency_ratios=(0.5,)))
        last = P.project(target)
        assert ("consistency" in last.terms) == (weight > 0)
        with torch.no_grad():
            sub = G.synthesize(last.w_plus, channels=0.5, noise="const")
            small = G.synthesize(last.w_plus, res=32, channels=0.5, noise="const")
        small_target = F.interpolate(target, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
        sub_db[weight] = (psnr(sub, target), psnr(small, small_target))
    on, off = sub_db[1.0], sub_db[0.0]
    assert on[0] > off[0] + 0.5 and on[1] > off[1] + 0.5, sub_db


def test_lpips_is_used_when_its_backbone_is_cached(G, target, tmp_path, monkeypatch):
    """A random AlexNet file stands in for the torchvision download: it exercises the LPIPS code path
    (it says nothing about perceptual quality)."""
    from torchvision.models import alexnet

    monkeypatch.setattr(perceptual, "_warned", set())
    monkeypatch.setattr(perceptual, "_cache", {})
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    settings = ProjectionSettings(steps=2, report_every=100, consistency_weight=0.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):  # two projectors: the missing weights are reported once
            last = Projector(G, settings=settings).project(target)
            assert "lpips" not in last.terms
    fallback = [w for w in caught if "LPIPS backbone weights not found" in str(w.message)]
    assert len(fallback) == 1 and fallback[0].category is RuntimeWarning

    home = tmp_path / "torch"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    torch.manual_seed(0)
    feats = {f"features.{k}": v for k, v in alexnet().features.state_dict().items()}
    torch.save(feats, home / "hub" / "checkpoints" / perceptual.BACKBONE_FILES["alex"])
    monkeypatch.setenv("TORCH_HOME", str(home))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback warning now
        P = Projector(G, settings=settings)
        steps = list(P.iter_project(target))
    assert all("lpips" in s.terms for s in steps)
    lp = P.lpips()
    assert lp is not None and torch.equal(lp.net.slice1[0].weight, feats["features.0.weight"])
    first, tgt = steps[0], target.clamp(-1, 1)  # step 0's loss: MSE + weighted LPIPS of the mean latent
    with torch.no_grad():
        expected = F.mse_loss(first.image, tgt) + settings.lpips_weight * lp(first.image, tgt).mean()
    assert first.loss == pytest.approx(float(expected), rel=1e-5)
    assert first.loss > F.mse_loss(first.image, tgt).item() + 1e-6
    assert steps[-1].loss <= first.loss
