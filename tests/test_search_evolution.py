"""Evolutionary search: budgets respected, determinism, never worse than the uniform ratios."""

from __future__ import annotations

import random

import pytest
import torch
from model_support import tiny_generator

from anycost.directions import sefa_directions
from anycost.models.flops import count_published_macs
from anycost.search.consistency import ConsistencyEvaluator, consistency_latents
from anycost.search.evolution import EvolutionSettings, SearchSettings, evolve, search
from anycost.search.latency import latency_table
from anycost.search.space import SearchSpace, model_space_kind

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def G():
    return tiny_generator(res=32)


@pytest.fixture(scope="module")
def space(G):
    return SearchSpace(G, "flexible", min_res=8)


@pytest.fixture(scope="module")
def latency(G, space):
    return latency_table(G, space, cache=False, passes=2, check_configs=2)[0]


SMALL = SearchSettings(evolution=EvolutionSettings(population=8, generations=3, parents=3, seed=5),
                       latents=3, validation_latents=4, finalists=2)


def _budgets(G, space, latency):
    """Three budgets between the cheapest and the full sub-generator, as predicted on this machine."""
    lo = min(latency.predict_config(G, c) for c in space.uniform_configs())
    hi = latency.predict_config(G, space.canonical(G.resolution, G.full_channels))
    return [lo + f * (hi - lo) for f in (0.3, 0.6, 0.9)]


def test_search_respects_the_budget(G, space, latency):
    budgets = _budgets(G, space, latency)
    result = search(G, budgets, space, latency, settings=SMALL, measure=False)
    assert set(result.history) == set(budgets)
    for b, evaluated in result.history.items():
        assert evaluated, f"nothing evaluated within {b}"
        for cand in evaluated:
            assert cand.predicted_ms <= b
            assert cand.predicted_ms == pytest.approx(latency.predict_config(G, cand.config))
            assert space.contains(cand.config)
    assert len(result.table.entries) == 3
    best = [result.history[b][0].consistency.score for b in sorted(budgets)]
    assert best == sorted(best), "a larger budget never finds less than a smaller one"
    for e in result.table.entries.values():
        assert e.predicted_ms <= e.budget_ms
        assert e.flops > 0 and e.macs == count_published_macs(G, e.res, e.channels)
        assert e.fits is None  # not timed
        assert e.measured_ms is None  # measure=False


def test_search_is_deterministic_for_a_seed(G, space, latency):
    budgets = _budgets(G, space, latency)[:2]
    a = search(G, budgets, space, latency, settings=SMALL, measure=False)
    b = search(G, budgets, space, latency, settings=SMALL, measure=False)
    assert a.table.to_dict()["budgets"] == b.table.to_dict()["budgets"]
    for budget in budgets:
        assert [c.config for c in a.history[budget]] == [c.config for c in b.history[budget]]
    other = SearchSettings(evolution=EvolutionSettings(population=8, generations=3, parents=3, seed=6),
                           latents=3, validation_latents=4, finalists=2)
    c = search(G, budgets, space, latency, settings=other, measure=False)
    assert any([x.config for x in a.history[bud]] != [x.config for x in c.history[bud]] for bud in budgets), \
        "another seed explores differently"


def test_never_worse_than_the_best_uniform_ratio(G, space, latency):
    lat = consistency_latents(G, 3, seed=1)
    evaluate = ConsistencyEvaluator(G, lat)
    for budget in _budgets(G, space, latency):
        ranked = evolve(space, lambda c: latency.predict_config(G, c), evaluate, budget,
                        EvolutionSettings(population=8, generations=3, parents=3))
        uniform = [c for c in space.uniform_configs() if latency.predict_config(G, c) <= budget]
        assert uniform, "the test budgets admit some uniform ratio"
        best_uniform = max(evaluate(c).score for c in uniform)
        assert ranked[0].consistency.score >= best_uniform
        assert all(c in {r.config for r in ranked} for c in uniform), "every uniform ratio that fits is seeded"


def test_full_generator_scores_highest_and_is_found_with_a_large_budget(G, space, latency):
    result = search(G, [1e9], space, latency, settings=SMALL, measure=False)
    (e,) = result.table.entries.values()
    assert e.res == G.resolution and e.channels == G.full_channels and e.ratio == 1.0
    assert e.psnr >= 99  # identical images


def test_uniform_space_covers_resolution_and_ratio_only(G, latency):
    space = SearchSpace(G, "uniform", min_res=8)
    assert space.size() == len(space.uniform_configs()) <= len(space.resolutions) * len(space.ratios)
    hi = latency.predict_config(G, space.canonical(G.resolution, G.full_channels))
    result = search(G, [0.8 * hi], space, latency, settings=SMALL, measure=False)
    for cand in result.history[0.8 * hi]:
        assert cand.config.ratio is not None and space.contains(cand.config)
    for e in result.table.entries.values():
        assert e.ratio is not None


def test_budget_below_everything_gives_no_entry(G, space, latency):
    result = search(G, [1e-6], space, latency, settings=SMALL, measure=False)
    assert result.table.entries == {} and result.history[1e-6] == []


def test_final_timing_fills_measured_times(G, space, latency):
    result = search(G, [1e9], space, latency, settings=SMALL, measure=True)
    (e,) = result.table.entries.values()
    assert 0 < e.measured_min_ms <= e.measured_ms and e.fits is True


def test_edited_latents_follow_the_directions(G):
    dirs = sefa_directions(G, k=2)
    plain = consistency_latents(G, 4, seed=3)
    edited = consistency_latents(G, 4, seed=3, directions=dirs)
    assert plain.shape == edited.shape == (4, G.n_style, G.style_dim)
    assert torch.allclose(edited[:2], plain[:2], atol=1e-5)  # the samples themselves
    assert not torch.allclose(edited[2:], plain[2:])  # then samples moved along a direction
    assert torch.allclose(edited[2], dirs.apply(plain[0:1], {list(dirs)[0]: 0.8})[0])


def test_moves_stay_in_the_space(G, space):
    rng = random.Random(0)
    for _ in range(200):
        a, b = space.random(rng), space.random(rng)
        for c in (space.mutate(a, rng, 0.5, 0.5), space.crossover(a, b, rng), space.shrink(a, rng)):
            assert c is None or space.contains(c)


def test_space_kind_follows_the_model():
    assert model_space_kind({"training": {"tool": "anycost train"}}) == "flexible"
    assert model_space_kind({"training": {"flexible_prob": 0.0}}) == "uniform"
    assert model_space_kind({"channel_configs": "full"}, "uniform") == "full"
    assert model_space_kind({}, "flexible") == "flexible"
    assert model_space_kind({}) == "uniform"


def test_the_uniform_baseline_stays_unless_clearly_beaten(G, space, latency):
    budgets = _budgets(G, space, latency)
    cautious = SearchSettings(evolution=SMALL.evolution, latents=3, validation_latents=4, finalists=2, min_gain=1e9)
    result = search(G, budgets, space, latency, settings=cautious, measure=False)
    assert len(result.table.entries) == len(budgets)
    for e in result.table.entries.values():
        assert e.ratio is not None and e.baseline["label"] == f"{e.res}:{e.ratio:g}"


def test_lpips_decides_when_its_backbone_is_available(G, space, latency, tmp_path, monkeypatch):
    """A random AlexNet file in a temporary torch cache exercises the real LPIPS path of the search."""
    from torchvision.models import alexnet

    from anycost.measures.perceptual import BACKBONE_FILES
    from anycost.search.consistency import LPIPS_DB, load_lpips_if_available

    home = tmp_path / "torch"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    torch.manual_seed(0)
    torch.save({f"features.{k}": v for k, v in alexnet().features.state_dict().items()},
               home / "hub" / "checkpoints" / BACKBONE_FILES["alex"])
    monkeypatch.setenv("TORCH_HOME", str(home))
    lp = load_lpips_if_available()
    assert lp is not None
    budgets = _budgets(G, space, latency)[:2]
    with_lpips = search(G, budgets, space, latency, settings=SMALL, lpips_model=lp, measure=False)
    plain = search(G, budgets, space, latency, settings=SMALL, measure=False)
    assert with_lpips.table.dist_metric == "lpips" and with_lpips.table.search["lpips"] is True
    assert plain.table.dist_metric == "mse"
    for e in with_lpips.table.entries.values():
        assert e.lpips is not None and e.lpips > 0 and e.dist == e.lpips
        assert e.score == pytest.approx(e.psnr - LPIPS_DB * e.lpips) and e.score < e.psnr
    # the same configurations score differently, so the ranking the evolution follows differs
    lat = consistency_latents(G, 3, seed=2)
    a, b = ConsistencyEvaluator(G, lat, lpips_model=lp), ConsistencyEvaluator(G, lat)
    for c in space.uniform_configs()[:4]:
        if c.channels != space.full or c.res != G.resolution:
            assert a(c).psnr == pytest.approx(b(c).psnr) and a(c).score < b(c).score
    assert [c.consistency.score for c in with_lpips.history[budgets[0]]] != \
        [c.consistency.score for c in plain.history[budgets[0]]]


def test_finalists_that_miss_the_budget_when_timed_are_flagged(G, space, latency):
    """A predictor that promises four times too little: everything fits by prediction, nothing when
    timed. The entry is kept for the record but flagged, with the measured time that missed."""
    from dataclasses import replace as dc_replace

    from anycost.search.budget import budget_limit

    optimistic = dc_replace(latency, overhead_ms=0.0, scale=0.0)  # predictions fall to the floor, ¼ of Σ layers
    full = space.canonical(G.resolution, G.full_channels)
    budget = optimistic.predict_config(G, full)
    result = search(G, [budget], space, optimistic, settings=SMALL, measure=True)
    (e,) = result.table.entries.values()
    assert e.predicted_ms <= budget
    assert e.fits is False and e.measured_ms > budget_limit(budget)
