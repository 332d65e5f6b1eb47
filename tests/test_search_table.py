"""Search tables: JSON round trip, the published format, picking a preview from a table, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from model_support import tiny_generator

from anycost.editing.preview_choice import entry_cost, pick_from_table, pick_preview
from anycost.editing.render import Cost
from anycost.errors import InputError
from anycost.io.modelfile import save_model
from anycost.search.cache import cached_table, table_cache_path
from anycost.search.evolution import EvolutionSettings, SearchSettings, search
from anycost.search.latency import latency_table
from anycost.search.space import SearchSpace
from anycost.search.table import SearchTable, TableEntry, parse_budgets

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def G():
    return tiny_generator(res=32)


@pytest.fixture(scope="module")
def searched(G):
    space = SearchSpace(G, "flexible", min_res=8)
    lat = latency_table(G, space, cache=False, passes=2, check_configs=2)[0]
    full = lat.predict_config(G, space.canonical(32, G.full_channels))
    settings = SearchSettings(evolution=EvolutionSettings(population=6, generations=2, parents=2),
                              latents=2, validation_latents=3, finalists=2)
    return search(G, [0.6 * full, 1e6], space, lat, settings=settings, measure=True).table


def test_json_round_trip(searched, tmp_path):
    path = searched.save(tmp_path / "t.json")
    raw = json.loads(path.read_text())
    assert raw["format"] == "anycost-search-table" and raw["version"] == 1
    for key, e in raw["budgets"].items():  # the published shape, with more per entry
        assert key.endswith("ms") and {"channels", "dist", "res", "macs"} <= set(e)
    back = SearchTable.load(path)
    assert back.to_dict() == searched.to_dict()
    assert back.source == "search" and back.path == path
    assert back.budgets_ms() == sorted(e.budget_ms for e in searched.entries.values())


def test_published_tables_load(G, tmp_path):
    full = G.full_channels
    published = {
        "1G": {"channels": [32, 32, 16, 16, 8, 8, 32, 32], "dist": 0.30, "res": 16, "macs": 1_000_000},
        "2G": {"channels": [32, 32, 32, 32, 16, 16, 8, 8], "dist": 0.20, "res": 32, "macs": 2_000_000},
        "3G": {"channels": list(full), "dist": 0.0, "res": 32, "macs": 3_000_000},
    }
    p = tmp_path / "published.json"
    p.write_text(json.dumps(published))
    t = SearchTable.load(p).check_fits(G)
    assert t.source == "published" and set(t.entries) == {"1G", "2G", "3G"}
    assert t.entries["2G"].macs == 2_000_000 and t.entries["2G"].budget_ms is None
    choice = pick_from_table(G, t, 1e6)  # everything fits: the most faithful (lowest dist) wins
    assert choice is not None and choice.source == "table" and choice.cost == Cost(None, None)
    assert choice.measured_ms > 0
    assert pick_from_table(G, t, 1e-9) is None  # nothing fits: the caller falls back to the uniform pick
    assert pick_preview(G, 1e-9, t).source == "uniform"


@pytest.mark.parametrize("bad, message", [
    ({"80ms": {"channels": [8, 8], "res": 32}}, "sliceable layers"),
    ({"80ms": {"channels": [32] * 8, "res": 24}}, "resolution 24"),
    ({"80ms": {"channels": [64] * 8, "res": 32}}, "outside 1..32"),
    ({"format": "anycost-search-table", "version": 9, "budgets": {}}, "version 9"),
    ({"format": "something-else"}, "not a search table"),
    ({"80ms": {"res": 32}}, "neither a search table"),
    ([1, 2, 3], "JSON object"),
])
def test_bad_tables_are_refused_clearly(G, tmp_path, bad, message):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(bad))
    with pytest.raises(InputError, match=message) as e:
        SearchTable.load(p).check_fits(G)
    assert str(p) in str(e.value)


def test_unreadable_table(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        SearchTable.load(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text("{oops")
    with pytest.raises(InputError, match="cannot read"):
        SearchTable.load(tmp_path / "x.json")


def test_parse_budgets():
    assert parse_budgets("160, 40,80ms,40") == [40.0, 80.0, 160.0]
    for bad in ("", "fast", "0", "-5", "nan", "inf"):
        with pytest.raises(InputError):
            parse_budgets(bad)


def test_pick_from_a_searched_table(G, searched):
    big = max(searched.budgets_ms())
    choice = pick_from_table(G, searched, big)
    assert choice is not None and choice.source == "search"
    best = searched.ranked(big)[0]
    assert choice.cost == entry_cost(G, best) and choice.psnr == best.psnr
    assert choice.cost.check(G) is choice.cost
    # a budget below every searched budget has no entry to offer
    assert pick_from_table(G, searched, min(searched.budgets_ms()) / 2) is None


def test_entry_costs_read_as_ratios_where_they_are(G):
    assert entry_cost(G, TableEntry(res=32, channels=list(G.full_channels))) == Cost(None, None)
    half = G.resolve_channels(0.5)
    assert entry_cost(G, TableEntry(res=32, channels=half, ratio=0.5)) == Cost(None, 0.5)
    assert entry_cost(G, TableEntry(res=16, channels=half, ratio=0.5)) == Cost(16, None)  # capped: full up to 16
    flex = [32, 32, 32, 16, 8, 24, 16, 8]
    c = entry_cost(G, TableEntry(res=32, channels=flex))
    assert c == Cost(None, tuple(flex))
    assert c.label() != Cost(None, (32, 32, 32, 16, 8, 24, 16, 16)).label(), "labels tell configurations apart"


def test_cli_search_writes_and_caches_a_table(G, tmp_path):
    model = save_model(tmp_path / "tiny.safetensors", generator=G,
                       info={"name": "tiny", "channel_configs": "flexible"})
    out = tmp_path / "table.json"
    env = {**os.environ, "ANYCOST_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "anycost", "search", "--model", str(model), "--budget-ms", "1000000",
           "--min-res", "8", "--population", "4", "--generations", "1", "--parents", "2", "--latents", "2",
           "--validation-latents", "2", "-o", str(out), "--threads", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "1e+06ms" in r.stdout and "latency predictor" in r.stderr
    t = SearchTable.load(out).check_fits(G)
    assert list(t.entries) == ["1e+06ms"] and t.model["space"] == "flexible"
    (e,) = t.entries.values()
    assert e.res == 32 and e.channels == G.full_channels  # everything fits: the full generator
    assert t.latency["check"]["n"] > 0
    assert "latency predictor: median error" in r.stderr and "each left out of the fit" not in r.stderr
    assert "score: PSNR (dB)" in r.stdout and "fits" in r.stdout
    cached = tmp_path / "cache" / "search"
    assert len(list(cached.glob("*.json"))) == 1 and list((tmp_path / "cache" / "latency").glob("*.json"))
    # again: the layer timings come from the cache, and their recorded check is still reported, dated
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert again.returncode == 0, again.stderr
    line = next(x for x in again.stderr.splitlines() if x.startswith("latency predictor"))
    assert "median error" in line and "from the cache" in line and t.latency["created"] in line
    bad = subprocess.run([*cmd[:6], "--budget-ms", "fast"], capture_output=True, text=True, env=env, cwd=REPO)
    assert bad.returncode == 2 and "milliseconds" in bad.stderr


def test_cached_table_is_found_for_these_weights_only(G, searched, monkeypatch, tmp_path):
    monkeypatch.setenv("ANYCOST_CACHE_DIR", str(tmp_path))
    assert cached_table(G) is None
    searched.save(table_cache_path(G, "cpu"))
    found = cached_table(G)
    assert found is not None and found.to_dict()["budgets"] == searched.to_dict()["budgets"]
    assert cached_table(tiny_generator(res=32, seed=3)) is None  # other weights


# Three entries of the published anycost-ffhq-config-f-flexible.json (MAC budgets, no timings).
PUBLISHED_EXCERPT = {
    "101G": {"channels": [512] * 10 + [256, 256, 128, 96, 32, 64, 8, 8], "dist": 0.018971815176882956,
             "res": 1024, "macs": 100727199733},
    "58G": {"channels": [512] * 8 + [384, 384, 192, 192, 64, 64, 32, 32, 8, 16], "dist": 0.06994893466253416,
            "res": 1024, "macs": 57406441701},
    "15G": {"channels": [512] * 6 + [384, 384, 128, 256, 64, 64, 32, 128, 16, 32, 16, 8],
            "dist": 0.1544400227285223, "res": 256, "macs": 14901895481},
}


def test_macs_are_counted_as_the_published_files_count_them(tmp_path):
    import torch

    from anycost.models.flops import count_flops, count_published_macs
    from anycost.models.generator import Generator

    with torch.device("meta"):  # the architecture is all that counts
        G = Generator(resolution=1024, style_dim=512, n_mlp=8, channel_multiplier=2, channel_max=512)
    p = tmp_path / "published.json"
    p.write_text(json.dumps(PUBLISHED_EXCERPT))
    table = SearchTable.load(p).check_fits(G)
    for key, e in table.entries.items():
        ours = count_published_macs(G, e.res, e.channels)
        assert ours == pytest.approx(e.macs, rel=1e-8), key
        # real multiply-adds skip the inserted zeros: far fewer than the published count
        assert count_flops(G, e.res, e.channels) // 2 < 0.6 * ours
