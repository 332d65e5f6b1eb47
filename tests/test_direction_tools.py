"""Directions without labels and with names people choose: PCA directions, contact sheets, and
`anycost directions set` (rename, range, scale, hide) as far as the plug-ins' sliders."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from model_support import tiny_generator
from PIL import Image
from service_support import Backend

from anycost import Generator
from anycost.directions import (
    Direction,
    DirectionSet,
    directions_in_model,
    from_component,
    load_directions_file,
    pca_directions,
    save_directions_file,
    to_component,
)
from anycost.directions.pca import w_covariance
from anycost.directions.sefa import SPREAD_PER_SLIDER, latent_spread
from anycost.directions.sheet import LINE, SheetLayout
from anycost.errors import InputError
from anycost.io.modelfile import read_model, save_model
from anycost.registry import PACKAGE_MODELS
from anycost_client.backend_link import LinkState
from anycost_client.client import Client
from anycost_client.edit_controller import EditController
from anycost_client.regions import Rect, Region

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(str(REPO / p) for p in ("backend", "plugin")),
       "OMP_NUM_THREADS": "1"}
DEMO = PACKAGE_MODELS / "anycost-demo.safetensors"


@pytest.fixture(scope="module")
def G() -> Generator:
    return tiny_generator()


def cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "anycost", *args], capture_output=True, text=True, env=ENV,
                          timeout=timeout)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- PCA
def test_pca_directions_are_the_ordered_principal_axes_of_w(G):
    ds = pca_directions(G, 6, n_samples=3000, seed=0)
    assert list(ds) == [f"pca_{i}" for i in range(6)]
    V = torch.stack([d.vector for d in ds.values()])
    assert torch.allclose(V @ V.T, torch.eye(6), atol=1e-5), "orthonormal"
    var = [d.info["variance"] for d in ds.values()]
    assert var == sorted(var, reverse=True) and var[-1] > 0, "ordered by variance"
    assert all(d.source == "pca" and d.layers is None for d in ds.values())

    # on latents the fit never saw, the first axis carries more variance than any random direction
    with torch.no_grad():
        w = G.mapping(G.sample_z(3000, seed=11))
    rand = torch.nn.functional.normalize(torch.randn(64, G.style_dim, generator=torch.Generator().manual_seed(3)),
                                         dim=1)
    assert float((w @ V[0]).var()) > 1.5 * float((w @ rand.T).var(0).max())
    assert ds["pca_0"].info["explained"] > 1.5 / G.style_dim

    # slider 1 moves SPREAD_PER_SLIDER standard deviations of w along the axis, the rule SeFa uses
    spread = latent_spread(G, V)
    for d, s in zip(ds.values(), spread, strict=True):
        assert d.scale == pytest.approx(SPREAD_PER_SLIDER * float(s), rel=0.08)

    again = pca_directions(tiny_generator(), 6, n_samples=3000, seed=0)
    assert all(torch.allclose(again[n].vector, ds[n].vector, atol=1e-6) for n in ds), "deterministic signs"

    part = pca_directions(G, 2, layers=[2, 0, 1], n_samples=500)
    off = part["pca_0"].offset(G.n_style, G.style_dim)
    assert part["pca_0"].layers == [0, 1, 2] and off[:3].abs().sum() > 0 and off[3:].abs().sum() == 0
    for bad in ({"k": 0}, {"k": G.style_dim + 1}, {"k": 5, "n_samples": 5}, {"k": 2, "layers": [G.n_style]}):
        with pytest.raises(InputError):
            pca_directions(G, **{"n_samples": 500, **bad})


def test_batched_covariance_is_the_sample_covariance(G):
    mean, cov = w_covariance(G, 5000, seed=4)  # three batches, the last one short
    with torch.no_grad():
        w = G.mapping(G.sample_z(5000, seed=4)).double()
    assert torch.allclose(mean, w.mean(0), atol=1e-6)
    assert torch.allclose(cov, torch.cov(w.T), atol=1e-6 * float(cov.abs().max()))


def test_fit_directions_pca_cli(G, tmp_path):
    model = save_model(tmp_path / "m.safetensors", generator=G, info={"name": "tiny"},
                       components={"directions": to_component([Direction("keep", torch.ones(G.style_dim))])})
    r = cli("fit-directions", "--model", str(model), "--pca", "3", "--layers", "0-3", "--samples", "600",
            "-o", str(tmp_path / "p.safetensors"))
    assert r.returncode == 0, r.stderr
    r = cli("directions", "--model", str(tmp_path / "p.safetensors"), "--json")
    listed = {d["name"]: d for d in json.loads(r.stdout)["directions"]}
    assert list(listed) == ["keep", "pca_0", "pca_1", "pca_2"]
    assert listed["pca_0"]["source"] == "pca" and listed["pca_0"]["layers"] == [0, 1, 2, 3]
    assert listed["pca_0"]["scale"] > listed["pca_2"]["scale"] > 0
    stored = directions_in_model(read_model(tmp_path / "p.safetensors"))
    expect = pca_directions(G, 3, [0, 1, 2, 3], n_samples=600)
    assert torch.allclose(stored["pca_1"].vector, expect["pca_1"].vector, atol=1e-5)
    r = cli("fit-directions", "--model", str(model), "--pca", str(G.style_dim + 1),
            "-o", str(tmp_path / "x.safetensors"))
    assert r.returncode == 2 and "1..32" in r.stderr and not (tmp_path / "x.safetensors").exists()


# ---------------------------------------------------------------- contact sheet
@pytest.fixture(scope="module")
def demo_with_pca(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sheet") / "demo.safetensors"
    shutil.copyfile(DEMO, path)
    r = cli("fit-directions", "--model", str(path), "--pca", "2", "--samples", "2000", "-o", str(path))
    assert r.returncode == 0, r.stderr
    return path


def _tile(sheet: np.ndarray, layout: SheetLayout, block: int, row: int, col: int) -> np.ndarray:
    x0, y0, x1, y1 = layout.tile_box(block, row, col)
    framed = sheet[y0 - 1:y1 + 1, x0 - 1:x1 + 1]
    assert (framed[0] == 255).all() and (framed[:, 0] == 255).all() and (framed[-1] == 255).all(), "white padding"
    assert not (framed[1, 1:-1] == 255).all(), "the face starts where the layout says"
    return sheet[y0:y1, x0:x1].astype(np.float32)


def test_sheet_shows_faces_moving_along_each_direction(demo_with_pca, tmp_path):
    out = tmp_path / "sheet.png"
    r = cli("directions", "sheet", "--model", str(demo_with_pca), "--names", "pca_0,smile,pca_1", "--seeds", "2",
            "--steps", "5", "--cost", "64", "-o", str(out))
    assert r.returncode == 0, r.stderr
    sheet = np.asarray(Image.open(out).convert("RGB"))
    layout = SheetLayout(blocks=3, seeds=2, steps=5, tile=64)
    assert sheet.shape[0] == layout.size[1] and sheet.shape[1] >= layout.grid_size[0]
    for b in range(3):
        top = layout.block_top(b)
        assert (sheet[top:top + 2 * LINE] < 100).any(), "name and slider values are written above each block"
        for row in range(2):
            strip = [_tile(sheet, layout, b, row, c) for c in range(5)]
            assert all(t.std() > 3 for t in strip), "faces, not padding or text"
            steps = [np.abs(a - c).mean() for a, c in zip(strip, strip[1:], strict=False)]
            assert min(steps) > 0.3, f"block {b} row {row}: every step along the slider changes the face {steps}"
            assert np.abs(strip[0] - strip[-1]).mean() > 2.0
    # the middle column is slider 0: the same unedited face in every block; rows are different seeds
    assert np.abs(_tile(sheet, layout, 0, 1, 2) - _tile(sheet, layout, 2, 1, 2)).mean() < 0.5
    assert np.abs(_tile(sheet, layout, 0, 0, 2) - _tile(sheet, layout, 0, 1, 2)).mean() > 5

    every = tmp_path / "all.png"
    r = cli("directions", "sheet", "--model", str(demo_with_pca), "--seeds", "1", "--steps", "3", "--cost", "32",
            "-o", str(every))
    assert r.returncode == 0, r.stderr
    n = len(directions_in_model(read_model(demo_with_pca)))
    assert n == 20 and f"{n} direction(s)" in r.stdout
    assert Image.open(every).height == SheetLayout(blocks=n, seeds=1, steps=3, tile=32).size[1]

    r = cli("directions", "sheet", "--model", str(demo_with_pca), "--names", "pca_0,frown", "-o",
            str(tmp_path / "no.png"))
    assert r.returncode == 2 and "frown" in r.stderr and "smile" in r.stderr
    assert not (tmp_path / "no.png").exists()


# ---------------------------------------------------------------- set, hidden, and the plug-ins' sliders
def test_hidden_round_trips_and_older_files_load_as_shown(G, tmp_path):
    ds = DirectionSet([Direction("a", torch.ones(G.style_dim), hidden=True), Direction("b", torch.ones(G.style_dim))])
    comp = to_component(ds)
    assert comp.config["directions"][0]["hidden"] is True and "hidden" not in comp.config["directions"][1]
    back = from_component(comp)
    assert back["a"].hidden and not back["b"].hidden
    assert back.slider_specs() == {"a": {"range": [-1.0, 1.0], "hidden": True}, "b": {"range": [-1.0, 1.0]}}
    assert load_directions_file(save_directions_file(tmp_path / "d.safetensors", ds))["a"].hidden
    # a file from before the field (its settings carry no "hidden") loads with every direction shown
    older = to_component(DirectionSet([Direction("a", torch.ones(G.style_dim))]))
    assert "hidden" not in older.config["directions"][0] and not from_component(older)["a"].hidden
    # the shipped demo hides its unnamed SeFa sliders and only those
    shipped = directions_in_model(read_model(DEMO))
    assert {n for n, d in shipped.items() if d.hidden} == {n for n in shipped if n.startswith("sefa_")} != set()
    with pytest.raises(InputError):
        Direction("c", torch.ones(4), hidden="yes")
    edited = ds.edited("b", rename="c", slider_range=(-2, 3), scale=0.5, hidden=True)
    assert list(edited) == ["a", "c"] and edited["c"].hidden and edited["c"].slider_range == (-2.0, 3.0)
    for bad in ({"name": "z"}, {"name": "b", "rename": "a"}, {"name": "b", "slider_range": (1, 1)},
                {"name": "b", "scale": 0.0}, {"name": "b", "rename": "Not OK"}):
        with pytest.raises(InputError):
            ds.edited(**bad)


@pytest.fixture
def sefa_model(tmp_path, official_fixture) -> Path:
    """A project model file (the 64-px official-format fixture, converted) with three SeFa sliders."""
    out = tmp_path / "model.safetensors"
    r = cli("fit-directions", "--model", str(official_fixture / "generator.pt"), "--sefa", "3", "-o", str(out))
    assert r.returncode == 0, r.stderr
    return out


def test_set_edits_one_direction_in_place_and_keeps_everything_else(sefa_model, tmp_path, official_fixture, capsys):
    before = read_model(sefa_model)
    old = directions_in_model(before)
    r = cli("directions", "set", "--model", str(sefa_model), "sefa_1", "--rename", "jaw", "--range=-2,1.5",
            "--scale", "0.75", "--hide")
    assert r.returncode == 0, r.stderr
    r = cli("directions", "--model", str(sefa_model), "--json")
    rows = json.loads(r.stdout)["directions"]
    assert [d["name"] for d in rows] == ["sefa_0", "jaw", "sefa_2"], "renamed where it was"
    jaw = rows[1]
    assert jaw["range"] == [-2.0, 1.5] and jaw["scale"] == 0.75 and jaw["hidden"] is True
    assert not rows[0]["hidden"] and not rows[2]["hidden"]
    table = cli("directions", "--model", str(sefa_model)).stdout
    assert [line for line in table.splitlines() if "(hidden)" in line] == [
        next(line for line in table.splitlines() if line.startswith("jaw"))]

    after = read_model(sefa_model)
    assert after.info == before.info and set(after.components) == set(before.components)
    for k, t in before.components["generator"].tensors.items():
        assert torch.equal(t, after.components["generator"].tensors[k]), k
    now = directions_in_model(after)
    assert torch.equal(now["jaw"].vector, old["sefa_1"].vector) and now["jaw"].source == "sefa"
    assert now["sefa_0"].config() == old["sefa_0"].config()

    r = cli("directions", "set", "--model", str(sefa_model), "jaw", "--show")
    assert r.returncode == 0 and not directions_in_model(read_model(sefa_model))["jaw"].hidden

    # refusals (exit status 2, run in-process to save interpreter start-ups) change nothing
    from anycost.cli import main

    def refused(model: Path, *args: str) -> str:
        capsys.readouterr()
        assert main(["directions", "set", "--model", str(model), *args]) == 2, args
        return capsys.readouterr().err

    snapshot = digest(sefa_model)
    for args, says in [
        (["sefa_1", "--hide"], "available: sefa_0, jaw, sefa_2"),
        (["jaw", "--rename", "sefa_0"], "another direction"),
        (["jaw", "--range=1,-1"], "LO < HI"),
        (["jaw", "--range", "1"], "LO,HI"),
        (["jaw"], "nothing to change"),
        (["jaw", "--scale", "0"], "non-zero"),
    ]:
        assert says in refused(sefa_model, *args), args
    direction_file = save_directions_file(tmp_path / "dirs.safetensors", old)
    for other in (official_fixture / "generator.pt", direction_file):
        assert "convert" in refused(other, "sefa_0", "--hide")
    assert "shipped" in refused(DEMO, "smile", "--hide")
    assert digest(sefa_model) == snapshot


class _Link:
    """What EditController reads of a connected link before its session opens."""

    def __init__(self, welcome: dict):
        self.welcome = welcome
        self.state = LinkState.CONNECTING
        self.message = "Connecting…"
        self.connected = False

    def ensure(self) -> None:
        pass

    def add_listener(self, listener) -> None:
        pass


def test_hidden_directions_reach_the_service_but_not_the_dialogs_sliders(sefa_model, tmp_path):
    r = cli("directions", "set", "--model", str(sefa_model), "sefa_1", "--hide", "--range=-1,1.5")
    assert r.returncode == 0, r.stderr
    backend = Backend(tmp_path, sefa_model, None)
    try:
        with Client.connect(backend.conn, timeout=60) as client:
            welcome = client.welcome
            assert welcome["directions"] == {"sefa_0": {"range": [-1.0, 1.0]},
                                             "sefa_1": {"range": [-1.0, 1.5], "hidden": True},
                                             "sefa_2": {"range": [-1.0, 1.0]}}
            rgba = np.random.default_rng(0).integers(0, 256, (64, 64, 4), dtype=np.uint8).tobytes()
            with client.open(rgba, 64, 64, align=False) as session:
                assert session.directions["sefa_1"].get("hidden") is True
                # scripts still reach a hidden direction by name
                assert session.edit(sefa_1=1.5).rgba != session.edit(sefa_1=0.0).rgba
    finally:
        assert backend.stop() == 0

    changes: list[str] = []
    region = Region(Rect(0, 0, 32, 32), bytes(32 * 32 * 4))
    c = EditController(_Link(welcome), region, canvas=None, on_change=changes.append)
    c.start()
    assert list(c.specs) == ["sefa_0", "sefa_2"], "the dialog's sliders"
    assert c.hidden_sliders == ["sefa_1"] and list(c.all_specs) == ["sefa_0", "sefa_1", "sefa_2"]
    assert c.sliders == {"sefa_0": 0.0, "sefa_1": 0.0, "sefa_2": 0.0}
    c.set_slider("sefa_1", 9.0)
    assert c.sliders["sefa_1"] == 1.5, "set by name, clamped to its range"
    changes.clear()
    c.set_show_hidden(True)
    assert list(c.specs) == ["sefa_0", "sefa_1", "sefa_2"] and changes == ["sliders"]
    c.reset_all()
    assert c.sliders["sefa_1"] == 0.0
