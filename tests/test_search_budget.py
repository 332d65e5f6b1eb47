"""One rule decides whether a sub-generator fits a preview budget; the editor applies it to
search tables (given or cached) and to the uniform fallback, and re-reads the cache when it changes."""

from __future__ import annotations

import pytest
from model_support import tiny_generator
from render_times import RenderTimes, given_render_times

from anycost.commands.serve import needs_search
from anycost.editing.preview_choice import pick_from_table
from anycost.editing.session import Editor
from anycost.io.modelfile import save_model
from anycost.search.budget import TOLERANCE, budget_limit, fits_budget
from anycost.search.cache import machine_id, machine_info, table_cache_path, weights_id
from anycost.search.table import SearchTable, TableEntry

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUARTER = [32, 32, 16, 16, 8, 8, 32, 32]  # 16 px, narrow
MID = [32, 32, 32, 32, 24, 16, 16, 8]  # 32 px, per-layer widths
# Times for the tests that choose between table entries by whether they fit, whatever this machine's
# speed: the full generator 400 ms, MID about 110 ms and QUARTER about 17 ms (each fits 150 ms)
TIMES = RenderTimes(full_ms=400.0)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    G = tiny_generator(res=32)
    path = save_model(tmp_path_factory.mktemp("budget") / "tiny.safetensors", generator=G,
                      info={"name": "tiny", "channel_configs": "flexible", "face": False})
    return path, G


def _table(G, entries: dict[str, TableEntry], machine: str | None = None) -> SearchTable:
    return SearchTable(entries, model={"name": "tiny", "weights": weights_id(G)},
                       machine_id=machine or machine_id(machine_info("cpu")))


def _issue_table(G) -> SearchTable:
    """What 'anycost search --budget-ms 40,80,160' leaves: one entry per budget, richer with the budget."""
    return _table(G, {
        "40ms": TableEntry(res=16, channels=QUARTER, budget_ms=40.0, psnr=20.0, score=20.0, fits=True),
        "80ms": TableEntry(res=32, channels=MID, budget_ms=80.0, psnr=30.0, score=30.0, fits=True),
        "160ms": TableEntry(res=32, channels=list(G.full_channels), budget_ms=160.0, psnr=100.0, score=100.0,
                            fits=True),
    })


def test_the_fit_rule():
    assert budget_limit(100.0) == pytest.approx(100.0 * (1 + TOLERANCE))
    assert fits_budget(100.0 * (1 + TOLERANCE), 100.0)
    assert not fits_budget(100.0 * (1 + TOLERANCE) + 0.01, 100.0)
    assert fits_budget(50.0, 100.0) and not fits_budget(None, 100.0)
    assert fits_budget(104.0, 100.0, tolerance=0.05) and not fits_budget(106.0, 100.0, tolerance=0.05)


def test_cached_entry_searched_for_a_smaller_budget_is_used(model, monkeypatch):
    """From a cached 40/80/160 table a 150 ms preview takes the 80 ms entry (the table's best that fits)."""
    _, G = model
    given_render_times(monkeypatch, TIMES)
    choice = pick_from_table(G, _issue_table(G), 150.0)
    assert choice.source == "search" and choice.cost.channels == tuple(MID) and choice.psnr == 30.0
    assert choice.fits is True and 0 < choice.measured_ms <= budget_limit(150)
    assert choice.score == 30.0 and choice.baseline is None
    # below every searched budget: nothing in the table applies
    assert pick_from_table(G, _issue_table(G), 30.0) is None


def test_the_full_generator_that_fits_beats_every_table_entry(model):
    """Previews at the full generator are the final render: a cached entry never replaces it, and no
    background search is wanted then."""
    path, G = model
    _issue_table(G).save(table_cache_path(G, "cpu"))
    choice = Editor(path, preview_budget_ms=1e5).preview_choice()
    assert choice.source == "uniform" and choice.is_full and choice.fits is True
    assert not needs_search(choice)


def test_the_cache_is_read_again_when_it_changes(model):
    path, G = model
    ed = Editor(path, preview_budget_ms=150)
    first = ed.preview_choice()
    assert first.source == "uniform" and first.searched_ms is None  # nothing cached yet
    _issue_table(G).save(table_cache_path(G, "cpu"))
    assert ed.preview_choice() is first, "without recheck the choice stands"
    again = ed.preview_choice(recheck=True)
    assert again.searched_ms == 80.0, "the table was read: its largest budget within 150 ms is 80 ms"
    assert ed.preview_choice(recheck=True) is again, "an unchanged file is not timed again"


def test_entries_flagged_over_budget_here_are_skipped(model, monkeypatch):
    """An entry the search timed over its budget on this machine is never used here; the same entry
    from another machine's table is timed here and used when it fits."""
    _, G = model
    given_render_times(monkeypatch, TIMES)
    entries = {
        "80ms": TableEntry(res=32, channels=MID, budget_ms=80.0, psnr=40.0, score=40.0, fits=False,
                           measured_ms=500.0),
        "40ms": TableEntry(res=16, channels=QUARTER, budget_ms=40.0, psnr=20.0, score=20.0, fits=True),
    }
    here = pick_from_table(G, _table(G, entries), 150.0)
    assert here is not None and here.cost.channels == tuple(QUARTER) and here.cost.res == 16
    elsewhere = pick_from_table(G, _table(G, entries, machine="another-machine"), 150.0)
    assert elsewhere is not None and elsewhere.cost.channels == tuple(MID)


def test_the_uniform_fallback_says_when_nothing_fits(model):
    path, _ = model
    choice = Editor(path, preview_budget_ms=1e-3).preview_choice()
    assert choice.source == "uniform" and choice.fits is False and choice.measured_ms > budget_limit(1e-3)
    assert choice.describe()["fits"] is False
    roomy = Editor(path, preview_budget_ms=1e5).preview_choice()
    assert roomy.fits is True and roomy.cost.res is None and roomy.cost.channels is None  # the full generator


def test_a_table_from_other_weights_is_ignored(model):
    path, G = model
    other = tiny_generator(res=32, seed=4)
    t = _issue_table(other)
    t.save(table_cache_path(G, "cpu"))  # at this model's path, but searched for other weights
    choice = Editor(path, preview_budget_ms=150).preview_choice()
    assert choice.source == "uniform" and choice.searched_ms is None, "the table was not read"


def test_a_draft_is_the_richest_lower_resolution_in_a_quarter_of_the_preview(monkeypatch):
    """A draft (what a fast drag shows, service/sessions.py) is the richest lower-resolution sub-generator
    that renders in a quarter of the preview's time here: with given times, whatever this machine's speed."""
    from anycost.editing.preview_choice import DRAFT_SHARE, PreviewChoice, lower_resolution, pick_draft
    from anycost.editing.render import Cost
    from anycost.models.flops import count_flops

    G = tiny_generator(res=64)
    times = RenderTimes(full_ms=400.0)
    given_render_times(monkeypatch, times)
    preview = PreviewChoice(Cost(None, 0.75), 200.0, "uniform", measured_ms=times.ms(G, None, 0.75))
    draft = pick_draft(G, preview, (0.25, 0.5, 0.75, 1.0))
    limit = DRAFT_SHARE * preview.measured_ms
    assert draft.res is not None and draft.res < G.resolution
    assert times.ms(G, draft.res, draft.channels) <= limit
    richer = [Cost(r, q) for r in G.resolutions if 16 <= r < G.resolution for q in (0.25, 0.5, 0.75)
              if count_flops(G, r, q) > count_flops(G, draft.res, draft.channels)]
    assert richer and all(times.ms(G, c.res, c.channels) > limit for c in richer), "no richer one fits"
    # a preview at the lowest resolution has nothing cheaper at a lower one
    lowest = PreviewChoice(Cost(8, 1.0), 200.0, "uniform", measured_ms=times.ms(G, 8, 1.0))
    assert pick_draft(G, lowest) == lowest.cost
    # a preview asked for at another cost drafts at its next lower resolution
    assert lower_resolution(Cost(32, 0.5), G) == Cost(16, 0.5) and lower_resolution(Cost(8, 1.0), G) == Cost(8, 1.0)
