"""Choosing between preview sub-generators: the full generator that fits, then the fit rule, then
faithfulness scored alike for both; never a worse choice when the cached table changes; when a
background search is worth it; merging tables scored differently."""

from __future__ import annotations

import pytest
from model_support import tiny_generator

from anycost.commands.serve import needs_search
from anycost.editing.preview_choice import (
    PreviewChoice,
    better_choice,
    measure_cost_ms,
    pick_preview,
    pick_uniform,
    quick_psnr,
)
from anycost.editing.render import FULL, Cost
from anycost.editing.session import Editor
from anycost.io.modelfile import save_model
from anycost.search.budget import fits_budget
from anycost.search.cache import machine_id, machine_info, table_cache_path, weights_id
from anycost.search.table import SearchTable, TableEntry
from anycost.service.preview_search import recheck_preview

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUARTER = (32, 32, 16, 16, 8, 8, 32, 32)  # 16 px, narrow


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    G = tiny_generator(res=32)
    path = save_model(tmp_path_factory.mktemp("choice") / "tiny.safetensors", generator=G,
                      info={"name": "tiny", "channel_configs": "flexible", "face": False})
    return path, G


def _choice(cost: Cost, source: str = "search", fits: bool = True, **kw) -> PreviewChoice:
    return PreviewChoice(cost, 80.0, source, measured_ms=10.0, fits=fits, **kw)


def test_the_more_faithful_choice_wins_scored_alike(model):
    _, G = model
    narrow, half = Cost(16, QUARTER), Cost(None, 0.5)
    p_narrow, p_half = quick_psnr(G, narrow), quick_psnr(G, half)
    assert quick_psnr(G, FULL) == 100.0, "the full generator reproduces itself"
    assert p_narrow != p_half
    better = narrow if p_narrow > p_half else half
    for a, b in ((narrow, half), (half, narrow)):
        assert better_choice(G, _choice(a, "uniform"), _choice(b)).cost == better
    # a recorded score does not decide against an unrelated configuration: both are rendered here
    flattering = _choice(narrow if better == half else half, score=99.0, psnr=99.0)
    assert better_choice(G, _choice(better, "uniform"), flattering).cost == better


def test_the_full_generator_and_the_fit_rule_come_first(model):
    _, G = model
    full = _choice(FULL, "uniform")
    entry = _choice(Cost(16, QUARTER), score=1e9, psnr=1e9)
    assert better_choice(G, entry, full) is full and better_choice(G, full, entry) is full
    missing = _choice(Cost(None, 0.5), "uniform", fits=False)
    assert better_choice(G, missing, entry) is entry and better_choice(G, entry, missing) is entry


@pytest.mark.parametrize("baseline_score, entry_wins", [(20.0, True), (40.0, False)])
def test_the_entrys_own_baseline_decides_when_it_is_the_other_choice(model, baseline_score, entry_wins):
    """The search scored the uniform ratio it beat (its baseline) on its own latents: when that ratio is
    the other choice, those scores decide."""
    _, G = model
    uniform = _choice(Cost(None, 0.5), "uniform")
    entry = _choice(Cost(16, QUARTER), score=30.0, psnr=30.0, baseline={"label": "32:0.5", "score": baseline_score})
    assert (better_choice(G, uniform, entry) is entry) is entry_wins
    assert (better_choice(G, entry, uniform) is entry) is entry_wins


def test_the_uniform_pick_reports_the_reading_it_was_chosen_by(model):
    _, G = model
    cost, ms = pick_uniform(G, 150.0)
    assert ms == measure_cost_ms(G, cost) and fits_budget(ms, 150.0)
    choice = pick_preview(G, 150.0)
    assert choice.cost == cost and choice.measured_ms == ms and choice.fits is True


def _table(G, entries: dict[str, TableEntry]) -> SearchTable:
    return SearchTable(entries, model={"name": "tiny", "weights": weights_id(G)},
                       machine_id=machine_id(machine_info("cpu")))


def test_a_changed_cache_never_makes_the_preview_worse(model):
    """The choice made when the cache changes replaces the current one only when better."""
    path, G = model
    # nothing fits 1 µs: the current choice (as a busier moment left it, fitting) stays
    ed = Editor(path, preview_budget_ms=1e-3)
    kept = _choice(Cost(16, QUARTER))
    ed.set_preview(kept)
    _table(G, {"40ms": TableEntry(res=16, channels=list(QUARTER), budget_ms=40.0, score=20.0)}) \
        .save(table_cache_path(G, "cpu"))
    assert recheck_preview(ed) == (kept, False)
    assert ed.preview_choice() is kept
    # a roomy budget: the full generator fits and replaces a narrower choice
    roomy = Editor(path, preview_budget_ms=1e5)
    roomy.preview_choice()
    roomy.set_preview(_choice(Cost(16, QUARTER)))
    _table(G, {"80ms": TableEntry(res=16, channels=list(QUARTER), budget_ms=80.0, score=20.0)}) \
        .save(table_cache_path(G, "cpu"))
    now, changed = recheck_preview(roomy)
    assert changed and now.is_full and roomy.preview_choice() is now


def test_background_search_only_when_it_can_help():
    budget = 80.0

    def choice(cost: Cost, searched: float | None, fits: bool = True) -> PreviewChoice:
        return PreviewChoice(cost, budget, "uniform", fits=fits, searched_ms=searched)

    assert not needs_search(choice(FULL, None)), "the full generator fits: nothing to gain"
    assert needs_search(choice(Cost(None, 0.5), None)), "no table"
    assert needs_search(choice(Cost(16, QUARTER), 40.0)), "only smaller budgets were searched"
    assert not needs_search(choice(Cost(16, QUARTER), 80.0)), "this budget was searched already"


def _scored(metric: str, latents: int, budgets: list[float]) -> SearchTable:
    entries = {f"{b:g}ms": TableEntry(res=16, channels=list(QUARTER), budget_ms=b, score=b / 2) for b in budgets}
    return SearchTable(entries, dist_metric=metric, search={"validation_latents": latents, "truncation": 0.8,
                                                            "latents_edited": False, "evolution": {"seed": 0}})


def test_merging_keeps_only_entries_scored_alike(tmp_path):
    old = _scored("lpips", 16, [40.0, 80.0])
    assert set(old.merged(_scored("lpips", 16, [80.0, 160.0])).entries) == {"40ms", "80ms", "160ms"}
    assert set(old.merged(_scored("mse", 16, [160.0])).entries) == {"160ms"}, "another metric"
    assert set(old.merged(_scored("lpips", 4, [160.0])).entries) == {"160ms"}, "other latents"
    # the settings travel with each entry, so a merged file keeps them for the next merge
    new = _scored("mse", 16, [160.0])
    for e in new.entries.values():
        e.scoring = new.scoring()
    merged = SearchTable.load(old.merged(new).save(tmp_path / "t.json"))
    assert merged.entries["160ms"].scoring == new.scoring()
    assert set(merged.merged(_scored("lpips", 16, [40.0])).entries) == {"40ms"}
