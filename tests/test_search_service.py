"""The service's preview comes from searched tables: given, searched in the background, then cached.

Real backend processes, real sockets, the real client library.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from model_support import tiny_generator
from render_times import RenderTimes
from service_support import Backend, make_directions, noise_rgba

from anycost.editing.preview_choice import measure_cost_ms, parse_cost
from anycost.editing.render import Cost
from anycost.io.modelfile import save_model
from anycost.models.generator import Generator
from anycost.search.budget import budget_limit
from anycost.search.cache import cache_dir, machine_id, machine_info, weights_id
from anycost.search.table import SearchTable, TableEntry
from anycost_client.client import BackendError, Client

BUDGET = 200.0


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("search-service")
    G = tiny_generator(res=32)
    path = save_model(tmp / "tiny.safetensors", generator=G, info={"name": "tiny", "channel_configs": "flexible",
                                                                   "face": False})
    return path, make_directions(path, tmp / "dirs.safetensors"), G


def _events(backend: Backend, name: str) -> list[dict]:
    return [e for e in backend.events() if e.get("event") == name]


def _preview_of_an_edit(backend: Backend, quality: str | None = None):
    with Client.connect(backend.conn, timeout=60) as client:
        session = client.open(noise_rgba(48, 40), 48, 40, align=False)
        preview = session.edit(sefa_0=0.5, quality=quality)
        session.close()
        return client.welcome, preview


def test_a_given_table_never_replaces_the_full_generator_that_fits(model, tmp_path):
    """The full generator fits this budget: previews are the final render, whatever the table offers."""
    path, dirs, G = model
    mid = [32, 32, 32, 32, 24, 16, 16, 8]
    table = SearchTable({
        "5ms": TableEntry(res=16, channels=[32, 32, 16, 32, 16, 16, 32, 32], budget_ms=5.0, psnr=20.0, score=20.0),
        "100ms": TableEntry(res=32, channels=mid, budget_ms=100.0, psnr=30.0, score=30.0, predicted_ms=3.0),
    }, model={"name": "tiny"})
    table_path = table.save(tmp_path / "table.json")
    b = Backend(tmp_path, path, dirs, "--search-table", str(table_path), "--preview-budget-ms", f"{BUDGET:g}")
    try:
        welcome, preview = _preview_of_an_edit(b)
        with pytest.raises(BackendError, match="not the current preview"):
            _preview_of_an_edit(b, quality="32:flexible")
    finally:
        assert b.stop() == 0
    costs = welcome["costs"]
    assert costs["preview"] == "32:1" and costs["preview_source"] == "uniform" and costs["preview_fits"] is True
    assert costs["preview_search"] == "off", "a given table needs no background search"
    assert preview.cost == "32:1"
    (ready,) = _events(b, "model_ready")
    assert ready["source"] == "uniform" and ready["preview_budget_ms"] == BUDGET


@pytest.fixture(scope="module")
def wide_model(tmp_path_factory):
    """A model whose full generator is far slower than its cheapest sub-generators (about 20×)."""
    tmp = tmp_path_factory.mktemp("search-service-wide")
    torch.manual_seed(0)
    G = Generator(resolution=128, style_dim=32, n_mlp=1, channel_multiplier=2, channel_max=128).eval()
    path = save_model(tmp / "wide.safetensors", generator=G, info={"name": "wide", "channel_configs": "flexible",
                                                                   "face": False})
    return path, make_directions(path, tmp / "dirs.safetensors"), G


CHEAP = [128, 128, 64, 32, 32, 16, 128, 128, 128, 128, 128, 128]  # 16 px, narrow per-layer widths


def _between(G) -> float:
    """A budget between the full generator's and a cheap sub-generator's render times as measured here now
    (about 20x apart): the full generator misses it and the cheap one fits, however fast or busy this machine is.
    For the background search, which times its candidates for real; choices alone take ``RenderTimes``."""
    full_ms = measure_cost_ms(G, Cost(None, None))
    cheap_ms = measure_cost_ms(G, Cost(16, tuple(CHEAP)))
    assert full_ms > 4 * cheap_ms, f"the test model's renders are too close: {full_ms:.1f} / {cheap_ms:.1f} ms"
    return round((full_ms * cheap_ms) ** 0.5, 1)


def test_a_cached_entry_better_than_the_uniform_pick_takes_over(wide_model, tmp_path, monkeypatch):
    """A table cached while the service runs ('anycost search'): the next session previews with its best
    entry within the budget that fits here (an entry that misses is refused), because the search recorded
    it as more faithful than the uniform ratio in use; the reported cost is accepted back as a quality."""
    path, dirs, G = wide_model
    monkeypatch.setenv("ANYCOST_CACHE_DIR", str(tmp_path / "cache"))
    # the backend's choice reads these times, not this machine's: the full generator misses the budget
    # and CHEAP fits it (about 1 ms), on any machine, however busy
    times, budget = RenderTimes(full_ms=40.0), 8.0
    assert times.measure_cost_ms(G, Cost(None, None)) > budget > times.measure_cost_ms(G, Cost(16, tuple(CHEAP)))
    b = Backend(tmp_path, path, dirs, "--preview-budget-ms", f"{budget:g}", "--no-background-search",
                env=times.env())
    try:
        first, _ = _preview_of_an_edit(b)
        uniform = first["costs"]["preview"]
        assert first["costs"]["preview_source"] == "uniform" and first["costs"]["preview_fits"] is True
        given = times.measure_cost_ms(G, parse_cost(uniform, G))
        assert first["costs"]["preview_ms"] == pytest.approx(given, abs=1e-3), "the given times decided"
        table = SearchTable({
            # the most faithful, but it misses the budget when timed: refused
            "1ms": TableEntry(res=128, channels=list(G.full_channels), budget_ms=1.0, psnr=100.0, score=100.0),
            "2ms": TableEntry(res=16, channels=CHEAP, budget_ms=2.0, psnr=30.0, score=30.0, predicted_ms=3.0,
                              baseline={"label": uniform, "psnr": 25.0, "score": 25.0}),
            "1e6ms": TableEntry(res=128, channels=list(G.full_channels), budget_ms=1e6, psnr=100.0, score=100.0),
        }, model={"name": "wide", "weights": weights_id(G)},
            machine_id=machine_id({**machine_info("cpu"), "threads": 1}))  # the backend's one thread
        table.save(cache_dir() / "search" / f"{weights_id(G)}-{table.machine_id}.json")
        _, preview = _preview_of_an_edit(b)  # this session's open reads the new table
        _, again = _preview_of_an_edit(b, quality="16:flexible")
        with pytest.raises(BackendError, match="not the current preview"):
            _preview_of_an_edit(b, quality="128:flexible")
        with Client.connect(b.conn, timeout=60) as client:
            costs = client.welcome["costs"]
    finally:
        assert b.stop() == 0
    assert preview.cost == "16:flexible" and again.cost == "16:flexible"
    assert costs["preview_source"] == "search" and costs["preview"] == "16:flexible"
    assert costs["preview_channels"] == CHEAP and costs["preview_psnr"] == 30.0
    assert costs["preview_predicted_ms"] == 3.0
    assert 0 < costs["preview_ms"] <= budget_limit(budget) and costs["preview_fits"] is True
    (changed,) = _events(b, "preview_changed")
    assert changed["source"] == "search" and changed["channels"] == CHEAP


def test_a_search_run_while_the_service_runs_never_replaces_the_full_generator(model, tmp_path):
    """'anycost search' while a service runs: the next session reads the new table, and its entry does not
    replace the full generator, which fits this budget (a cached entry that beats the current choice
    takes effect: test_krita_plugin.py's preview-choice test)."""
    path, dirs, G = model
    b = Backend(tmp_path, path, dirs, "--preview-budget-ms", "1000000", "--no-background-search")
    try:
        first, _ = _preview_of_an_edit(b)
        assert first["costs"]["preview_source"] == "uniform"
        env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the service's thread count: the same machine key
        r = subprocess.run([sys.executable, "-m", "anycost", "search", "--model", str(path), "--budget-ms",
                            "1000000", "--min-res", "8", "--population", "4", "--generations", "1", "--parents",
                            "2", "--latents", "2", "--validation-latents", "2", "--no-lpips", "--threads", "1",
                            "--quiet"], capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr
        (cached,) = (cache_dir() / "search").glob(f"{weights_id(G)}-*.json")
        table = SearchTable.load(cached)
        _, preview = _preview_of_an_edit(b)  # this session's open reads the new table
        with Client.connect(b.conn, timeout=60) as client:
            costs = client.welcome["costs"]
    finally:
        assert b.stop() == 0
    assert table.budgets_ms() == [1000000.0]
    assert costs["preview_source"] == "uniform" and costs["preview_fits"] is True
    assert costs["preview"] == f"{G.resolution}:1" and costs["preview_channels"] is None
    assert preview.cost == costs["preview"]
    assert not _events(b, "preview_changed")


def test_a_bad_table_stops_the_service_with_a_clear_message(model, tmp_path):
    path, dirs, _ = model
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"80ms": {"channels": [8, 8, 8], "res": 32}}))
    with pytest.raises(RuntimeError, match="sliceable layers"):
        Backend(tmp_path, path, dirs, "--search-table", str(bad))


@pytest.mark.usefixtures("one_torch_thread")  # timed as the backend renders: one thread
def test_background_search_then_cache(wide_model, tmp_path, monkeypatch):
    """The full generator misses the budget: a search runs in the background, its table is cached, and
    the preview switches to its entry only when that is better; the next start searches nothing."""
    monkeypatch.setenv("ANYCOST_BACKGROUND_SEARCH", "1")
    path, dirs, G = wide_model
    monkeypatch.setenv("ANYCOST_CACHE_DIR", str(tmp_path / "cache"))
    budget = _between(G)
    b = Backend(tmp_path, path, dirs, "--preview-budget-ms", f"{budget:g}", "--search-time-limit", "5",
                "--search-delay", "0")
    try:
        with Client.connect(b.conn, timeout=60) as client:
            first = client.welcome["costs"]
        assert first["preview_source"] == "uniform" and first["preview_search"] in ("running", "done")
        deadline = time.monotonic() + 240
        while not (_events(b, "preview_search_done") or _events(b, "preview_search_failed")):
            assert time.monotonic() < deadline, "the background search did not finish"
            time.sleep(0.5)
        assert not _events(b, "preview_search_failed"), b.log.read_text()
        (done,) = _events(b, "preview_search_done")
        assert done["fits"] is True
        predictor = done["predictor"]  # the latency predictor's out-of-sample error, logged
        assert predictor["n"] > 0 and predictor["method"] in ("held-out", "leave-one-out")
        assert 0 <= predictor["median_rel_error"] <= predictor["max_rel_error"]
        welcome, preview = _preview_of_an_edit(b)
        costs = welcome["costs"]
        assert costs["preview_source"] == done["source"] and costs["preview_search"] == "done"
        assert costs["preview_ms"] > 0 and preview.cost == costs["preview"]
        assert done["changed"] is (costs["preview"] != first["preview"])
        if costs["preview_source"] == "search":
            assert costs["preview_predicted_ms"] <= budget
    finally:
        assert b.stop() == 0
    cached = list((tmp_path / "cache" / "search").glob("*.json"))
    assert len(cached) == 1
    t = SearchTable.load(cached[0]).check_fits(G)
    assert t.budgets_ms() == [budget] and t.search["latents_edited"] is True
    # the next start takes the cached table at once and, this budget searched, searches nothing
    b2 = Backend(tmp_path, path, dirs, "--preview-budget-ms", f"{budget:g}")
    try:
        with Client.connect(b2.conn, timeout=60) as client:
            costs = client.welcome["costs"]
    finally:
        assert b2.stop() == 0
    assert costs["preview_search"] == "off" and costs["preview_fits"] is True
    assert not _events(b2, "preview_search_started")


def test_background_search_waits_and_never_starts_for_a_short_run(model, tmp_path, monkeypatch):
    monkeypatch.setenv("ANYCOST_BACKGROUND_SEARCH", "1")
    path, dirs, _ = model
    monkeypatch.setenv("ANYCOST_CACHE_DIR", str(tmp_path / "cache"))
    b = Backend(tmp_path, path, dirs, "--preview-budget-ms", "0.001", "--search-delay", "600")
    try:
        with Client.connect(b.conn, timeout=60) as client:
            assert client.welcome["costs"]["preview_search"] == "waiting"
    finally:
        assert b.stop() == 0
    assert not _events(b, "preview_search_started")
    assert not (tmp_path / "cache" / "search").exists() or not list((tmp_path / "cache" / "search").glob("*.json"))


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except FileNotFoundError:
        return False


def test_background_search_ends_with_the_service(model, tmp_path, monkeypatch):
    monkeypatch.setenv("ANYCOST_BACKGROUND_SEARCH", "1")
    path, dirs, _ = model
    monkeypatch.setenv("ANYCOST_CACHE_DIR", str(tmp_path / "cache"))
    b = Backend(tmp_path, path, dirs, "--preview-budget-ms", "0.001", "--search-delay", "0")
    deadline = time.monotonic() + 30
    while not _events(b, "preview_search_started"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    (started,) = _events(b, "preview_search_started")
    child = started["pid"]
    assert _alive(child)
    b.stop(signal.SIGKILL)  # no chance to clean up: the child notices on its own
    deadline = time.monotonic() + 20
    while _alive(child):
        assert time.monotonic() < deadline, "the background search outlived the service"
        time.sleep(0.2)


def test_background_search_logs_are_pruned(tmp_path):
    from anycost.service.preview_search import KEEP_LOGS, _prune_logs

    for i in range(KEEP_LOGS + 3):
        log = tmp_path / f"background-{1000 + i}.log"
        log.write_text("x")
        os.utime(log, (1000 + i, 1000 + i))
    (tmp_path / "other.json").write_text("{}")
    _prune_logs(tmp_path, keep=KEEP_LOGS - 1)
    left = sorted(p.name for p in tmp_path.glob("background-*.log"))
    assert left == [f"background-{1000 + i}.log" for i in range(4, KEEP_LOGS + 3)]  # the newest
    assert (tmp_path / "other.json").exists()
