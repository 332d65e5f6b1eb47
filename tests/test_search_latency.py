"""The latency model: per-layer lookup table, its fit, its cache, and its sanity (no timing thresholds)."""

from __future__ import annotations

import math
import random

import pytest
import torch
from model_support import tiny_generator

from anycost.models.generator import Generator
from anycost.search.cache import architecture_id, cache_dir, latency_cache_path, machine_id, machine_info, weights_id
from anycost.search.latency import (
    LatencyTable,
    latency_table,
    layer_keys,
    measure_layers,
    needed_keys,
)
from anycost.search.space import SearchSpace, layers_used

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def G() -> Generator:
    return tiny_generator(res=32)


@pytest.fixture(scope="module")
def space(G) -> SearchSpace:
    return SearchSpace(G, "flexible", min_res=8)


@pytest.fixture(scope="module")
def table(G, space, tmp_path_factory):
    # measured once for the module (no cache: the autouse fixture gives every test its own cache dir)
    t, check = latency_table(G, space, cache=False, passes=3, check_configs=4)
    return t, check


def _wider(space: SearchSpace, cfg, i: int):
    cands = space.candidates[i]
    k = cands.index(cfg.channels[i])
    if k + 1 >= len(cands):
        return None
    ch = list(cfg.channels)
    ch[i] = cands[k + 1]
    return space.canonical(cfg.res, ch)


def test_every_layer_of_the_space_is_timed(G, space, table):
    t, _ = table
    assert needed_keys(G, space) <= set(t.layers)
    for c in space.uniform_configs() + [space.random(random.Random(i)) for i in range(20)]:
        keys = layer_keys(G, c.res, c.channels)
        assert all(t.layers[k] > 0 for k in keys)
        # one ToRGB per block plus the 4 px one; two convs per block plus conv1
        blocks = c.res.bit_length() - 3
        assert len(keys) == 2 + 3 * blocks
        assert math.isfinite(t.predict_config(G, c)) and t.predict_config(G, c) > 0


def test_prediction_is_monotonic(G, space, table):
    """Widening any layer, or rendering to a higher resolution, is never predicted cheaper."""
    t, _ = table
    rng = random.Random(1)
    checked = 0
    for _ in range(40):
        c = space.random(rng)
        p = t.predict_config(G, c)
        for i in range(layers_used(c.res)):
            w = _wider(space, c, i)
            if w is not None:
                assert t.predict_config(G, w) >= p - 1e-9, (c, i)
                checked += 1
        higher = [r for r in space.resolutions if r > c.res]
        if higher:
            up = space.canonical(higher[0], c.channels)
            assert t.predict_config(G, up) > p
    assert checked > 20
    smallest = space.canonical(space.resolutions[0], [cands[0] for cands in space.candidates])
    full = space.canonical(G.resolution, G.full_channels)
    assert t.predict_config(G, full) > t.predict_config(G, smallest)


def test_noisy_entries_become_a_monotone_envelope():
    raw = {"a1:8:8": 1.0, "a1:8:16": 0.7, "a1:16:8": 1.5, "a1:16:16": 1.2, "rgb1:8": 0.4, "rgb1:16": 0.3}
    t = LatencyTable("arch", {"device": "cpu"}, "fast", raw=dict(raw))
    assert t.layers["a1:8:16"] == 1.0  # raised to its narrower neighbour
    assert t.layers["a1:16:16"] == 1.5
    assert t.layers["rgb1:16"] == 0.4
    assert t.raw == raw  # what was measured is kept as measured


def test_predictor_is_checked_against_whole_renders(G, space, table):
    t, check = table
    assert check is not None and len(check.rows) == 4
    for row in check.rows:
        assert row["measured_ms"] > 0 and row["predicted_ms"] > 0
        assert row["rel_error"] == pytest.approx((row["predicted_ms"] - row["measured_ms"]) / row["measured_ms"])
        assert row["measured_median_ms"] >= row["measured_ms"]
    s = t.check
    assert s["n"] == 4 and s["method"] == "held-out"
    fitted = {(r, tuple(c)) for r, c in [(row["res"], row["channels"]) for row in check.rows]}
    assert len(fitted) == 4, "checked on four distinct configurations"
    assert 0 <= s["median_rel_error"] <= s["p90_rel_error"] <= s["max_rel_error"]
    assert 0.5 <= t.scale <= 2.0 and t.calibrated


def test_reference_path_layers_can_be_timed(G, space):
    """The GPU path times layers through the modules; the same code runs on the CPU here."""
    keys = layer_keys(G, 32, space.uniform(32, 0.5).channels)
    ms = measure_layers(G, keys, impl="reference", passes=1)
    assert set(ms) == set(keys) and all(v > 0 for v in ms.values())


def test_skip_excitation_layers_are_timed():
    torch.manual_seed(0)
    G = Generator(resolution=32, style_dim=32, n_mlp=1, channel_multiplier=1, channel_max=32, sle=[(8, 32)]).eval()
    space = SearchSpace(G, "flexible", min_res=16)
    keys = needed_keys(G, space)
    assert any(k.startswith("sle32:") for k in keys)
    t = LatencyTable(architecture_id(G), machine_info("cpu"), "fast")
    t.add(measure_layers(G, keys, passes=1))
    assert t.predict_config(G, space.uniform(32, 0.5)) > 0


def test_table_is_cached_per_model_and_machine(G, space, monkeypatch, tmp_path):
    monkeypatch.setenv("ANYCOST_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    t1, check1 = latency_table(G, space, passes=1, check_configs=2)
    path = latency_cache_path(G, "cpu")
    assert path.is_file() and path.parent == tmp_path / "c" / "latency"
    assert check1 is not None
    t2, check2 = latency_table(G, space, passes=1, check_configs=2)
    assert check2 is None, "everything came from the cache"
    assert t2.raw == pytest.approx(t1.raw) and t2.scale == pytest.approx(t1.scale)
    assert LatencyTable.load(path).to_dict() == t2.to_dict()
    # the renderer's version is part of the machine: timings from another renderer are not reused
    from anycost import __version__

    assert machine_info("cpu")["anycost"] == __version__ and len(machine_info("cpu")["renderer"]) == 16
    # another thread count is another machine as far as timing goes
    threads = torch.get_num_threads()
    info = machine_info("cpu")
    torch.set_num_threads(threads + 1)
    try:
        assert machine_id(machine_info("cpu")) != machine_id(info)
        assert latency_cache_path(G, "cpu") != path
    finally:
        torch.set_num_threads(threads)
    # the architecture keys latency; the weights key searched tables
    other = tiny_generator(res=32, seed=1)
    assert architecture_id(other) == architecture_id(G) and weights_id(other) != weights_id(G)
    # a damaged cache file is measured again, not trusted
    path.write_text("{not json")
    t3, check3 = latency_table(G, space, passes=1, check_configs=2)
    assert check3 is not None and LatencyTable.load(path).raw == t3.raw


def test_a_small_space_is_checked_leaving_each_render_out(G):
    """In a uniform space every configuration is in the fit; the error is still out of sample: each
    render is predicted by a fit on the others."""
    from anycost.search.latency import _theil_sen

    space = SearchSpace(G, "uniform", min_res=8)
    t, check = latency_table(G, space, cache=False, passes=2)
    configs = space.uniform_configs()
    assert check.method == "leave-one-out" and t.check["method"] == "leave-one-out"
    assert len(check.rows) == len(configs) == len({(r["res"], tuple(r["channels"])) for r in check.rows})
    sums = [t.layer_sum(G, r["res"], r["channels"]) for r in check.rows]
    fastest = [r["measured_ms"] for r in check.rows]
    for i, row in enumerate(check.rows):
        a, b = _theil_sen(sums[:i] + sums[i + 1:], fastest[:i] + fastest[i + 1:])
        assert row["predicted_ms"] == pytest.approx(max(a + b * sums[i], 0.25 * sums[i]))
    # the table itself is fitted on all of them
    a, b = _theil_sen(sums, fastest)
    assert (t.overhead_ms, t.scale) == pytest.approx((a, b))


def test_fit_renders_are_distinct(G, space):
    from anycost.search.latency import calibrate

    t, _ = latency_table(G, space, cache=False, passes=1, check_configs=2)
    c = space.uniform(32, 0.5)
    d = space.uniform(16, 0.25)
    check = calibrate(G, t, [c, c, d, d, c], passes=1)
    assert len(check.rows) == 2, "each configuration is rendered and counted once"
    held = calibrate(G, t, [c, d, c], held_out=[d, space.uniform(32, 1.0)], passes=1)
    assert [r["label"] for r in held.rows] == ["32:1"], "a held-out configuration that is also fitted is dropped"
