"""Projection: encoder answer first, progressive refinement, budgets and cancellation."""

from __future__ import annotations

import threading

import pytest
import torch

import anycost
from anycost.editing.project import ProjectionSettings, Projector, psnr
from anycost.editing.render import Cost, candidate_costs, parse_cost, pick_preview_cost
from anycost.errors import InputError


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
