"""The service's preview comes from searched tables: given, searched in the background, then cached.

Real backend processes, real sockets, the real client library.
"""

from __future__ import annotations

import json
import signal
import time

import pytest
from model_support import tiny_generator
from service_support import Backend, make_directions, noise_rgba

from anycost.io.modelfile import save_model
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


def test_service_uses_the_best_table_entry_within_its_budget(model, tmp_path):
    path, dirs, G = model
    mid = [32, 32, 32, 32, 24, 16, 16, 8]
    table = SearchTable({
        "5ms": TableEntry(res=16, channels=[32, 32, 16, 32, 16, 16, 32, 32], budget_ms=5.0, psnr=20.0, score=20.0),
        "100ms": TableEntry(res=32, channels=mid, budget_ms=100.0, psnr=30.0, score=30.0, predicted_ms=3.0),
        "400ms": TableEntry(res=32, channels=list(G.full_channels), budget_ms=400.0, psnr=100.0, score=100.0),
    }, model={"name": "tiny"})
    table_path = table.save(tmp_path / "table.json")
    b = Backend(tmp_path, path, dirs, "--search-table", str(table_path), "--preview-budget-ms", f"{BUDGET:g}")
    try:
        welcome, preview = _preview_of_an_edit(b)
        # the reported cost of a searched preview is accepted back as a quality; another is refused
        _, again = _preview_of_an_edit(b, quality="32:flexible")
        with pytest.raises(BackendError, match="not the current preview"):
            _preview_of_an_edit(b, quality="16:flexible")
    finally:
        assert b.stop() == 0
    assert again.cost == "32:flexible"
    costs = welcome["costs"]
    # 400 ms is over the budget; of the rest, the most faithful entry
    assert costs["preview"] == "32:flexible" and costs["preview_channels"] == mid
    assert costs["preview_source"] == "search" and costs["preview_budget_ms"] == BUDGET
    assert costs["preview_ms"] > 0 and costs["preview_psnr"] == 30.0 and costs["preview_predicted_ms"] == 3.0
    assert costs["preview_search"] == "off", "a given table needs no background search"
    assert preview.cost == "32:flexible" and preview.render_ms > 0
    (ready,) = _events(b, "model_ready")
    assert ready["source"] == "search" and ready["channels"] == mid and ready["preview_budget_ms"] == BUDGET
    assert not _events(b, "preview_search_started")


def test_a_bad_table_stops_the_service_with_a_clear_message(model, tmp_path):
    path, dirs, _ = model
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"80ms": {"channels": [8, 8, 8], "res": 32}}))
    with pytest.raises(RuntimeError, match="sliceable layers"):
        Backend(tmp_path, path, dirs, "--search-table", str(bad))


def test_background_search_then_cache(model, tmp_path, monkeypatch):
    monkeypatch.setenv("ANYCOST_BACKGROUND_SEARCH", "1")
    path, dirs, G = model
    monkeypatch.setenv("ANYCOST_CACHE_DIR", str(tmp_path / "cache"))
    b = Backend(tmp_path, path, dirs, "--preview-budget-ms", f"{BUDGET:g}", "--search-time-limit", "5",
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
        assert done["changed"] is True and done["source"] == "search"
        welcome, preview = _preview_of_an_edit(b)
        costs = welcome["costs"]
        assert costs["preview_source"] == "search" and costs["preview_search"] == "done"
        assert costs["preview_predicted_ms"] <= BUDGET and costs["preview_ms"] > 0
        assert preview.cost == costs["preview"]
    finally:
        assert b.stop() == 0
    cached = list((tmp_path / "cache" / "search").glob("*.json"))
    assert len(cached) == 1
    t = SearchTable.load(cached[0]).check_fits(G)
    assert t.budgets_ms() == [BUDGET] and t.search["latents_edited"] is True
    # the next start takes the cached table at once and searches nothing
    b2 = Backend(tmp_path, path, dirs, "--preview-budget-ms", f"{BUDGET:g}")
    try:
        with Client.connect(b2.conn, timeout=60) as client:
            costs = client.welcome["costs"]
    finally:
        assert b2.stop() == 0
    assert costs["preview_source"] == "search" and costs["preview_search"] == "off"
    assert not _events(b2, "preview_search_started")


def test_background_search_waits_and_never_starts_for_a_short_run(model, tmp_path, monkeypatch):
    monkeypatch.setenv("ANYCOST_BACKGROUND_SEARCH", "1")
    path, dirs, _ = model
    monkeypatch.setenv("ANYCOST_CACHE_DIR", str(tmp_path / "cache"))
    b = Backend(tmp_path, path, dirs, "--preview-budget-ms", f"{BUDGET:g}", "--search-delay", "600")
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
    b = Backend(tmp_path, path, dirs, "--preview-budget-ms", f"{BUDGET:g}", "--search-delay", "0")
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
