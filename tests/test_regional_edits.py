"""Regional edits: a direction's region is measured from what it changes, stored with it, kept by every
tool that rewrites directions, and honoured wherever an edit is rendered or judged — the editor's
previews and results, the contact sheet, and the success measure that benchmarks and the polish use."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from model_support import tiny_generator

from anycost.data.synth_faces import render_index
from anycost.directions import (
    Direction,
    DirectionSet,
    directions_in_model,
    from_component,
    load_directions_file,
    save_directions_file,
    to_component,
)
from anycost.directions.boundaries import score_latents
from anycost.directions.refine import measure_effect
from anycost.directions.regional import (
    blend,
    fit_region,
    footprint,
    region_from_footprint,
    region_mask,
    render_sliders,
)
from anycost.directions.storage import region_key
from anycost.editing.session import Editor
from anycost.errors import InputError, ModelFileError
from anycost.io.modelfile import Component, read_model
from anycost.registry import PACKAGE_MODELS
from anycost.training.classifier import ClassifierConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(str(REPO / p) for p in ("backend", "plugin")),
       "OMP_NUM_THREADS": "1"}
DEMO = PACKAGE_MODELS / "anycost-demo.safetensors"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "anycost", *args], capture_output=True, text=True, env=ENV,
                          timeout=300)


def left_half(h: int = 8, w: int = 8) -> torch.Tensor:
    r = torch.zeros(h, w)
    r[:, : w // 2] = 1.0
    return r


# ---------------------------------------------------------------- the map itself
def test_region_is_stored_with_its_direction_and_checked():
    region = torch.rand(6, 6) * 0.9 + 0.05
    ds = DirectionSet([Direction("hair", torch.ones(32), region=region), Direction("smile", torch.ones(32))])
    comp = to_component(ds)
    assert set(comp.tensors) == {"hair", "smile", region_key("hair")}
    back = from_component(comp)
    assert torch.equal(back["hair"].region, region) and back["smile"].region is None
    edited = back.edited("hair", rename="hair_length", scale=0.5, hidden=True)
    assert torch.equal(edited["hair_length"].region, region), "renaming or rescaling keeps the region"
    assert region_key("hair_length") in to_component(edited).tensors


def test_region_survives_a_direction_file(tmp_path):
    ds = DirectionSet([Direction("hair", torch.ones(32), region=left_half())])
    back = load_directions_file(save_directions_file(tmp_path / "d.safetensors", ds))
    assert torch.equal(back["hair"].region, left_half())


@pytest.mark.parametrize("bad, says", [
    (torch.ones(4, 4, 3), "2-D"),
    (torch.ones(1, 8), "2-D"),
    (torch.ones(300, 300), "2-D"),
    (torch.full((4, 4), 1.5), "[0, 1]"),
    (torch.full((4, 4), float("nan")), "[0, 1]"),
    (-torch.ones(4, 4), "[0, 1]"),
    (torch.zeros(4, 4), "empty"),
])
def test_a_bad_region_is_refused_by_name(bad, says):
    with pytest.raises(InputError, match="hair") as e:
        Direction("hair", torch.ones(32), region=bad)
    assert says in str(e.value)
    # in a model file it is the file that is wrong
    comp = to_component(DirectionSet([Direction("hair", torch.ones(32))]))
    broken = Component(comp.config, {**comp.tensors, region_key("hair"): bad})
    with pytest.raises(ModelFileError, match=says.replace("[", r"\[").replace("]", r"\]")):
        from_component(broken)


def test_region_from_footprint_follows_the_change():
    fp = torch.zeros(16, 16)
    fp[2:6, 2:6] = 1.0  # peak
    fp[10:14, 10:14] = 0.15  # half of alpha · peak
    r = region_from_footprint(fp, alpha=0.3, sigma=0)
    assert r[3, 3] == 1.0 and abs(float(r[12, 12]) - 0.5) < 1e-6 and r[8, 0] == 0.0
    soft = region_from_footprint(fp, alpha=0.3, sigma=1.5)
    assert 0 < float(soft[6, 4]) < 1, "softened at the edge"
    assert abs(float(soft.sum()) - float(r.sum())) < 0.05 * float(r.sum()), "blurring moves weight, keeps it"
    for kw in ({"alpha": 0.0}, {"alpha": 1.5}, {"sigma": -1.0}, {"sigma": 40.0}):
        with pytest.raises(InputError):
            region_from_footprint(fp, **kw)
    with pytest.raises(InputError, match="no pixel"):
        region_from_footprint(torch.zeros(4, 4))


def test_mask_is_the_union_at_the_image_size():
    top = torch.zeros(4, 4)
    top[:2] = 1
    m = region_mask([left_half(4, 4), top], 8)
    assert m.shape == (1, 1, 8, 8)
    assert m[0, 0, 0, 7] == 1 and m[0, 0, 7, 0] == 1 and m[0, 0, 7, 7] == 0
    base, edited = torch.zeros(1, 3, 8, 8), torch.ones(1, 3, 8, 8)
    out = blend(base, edited, [left_half(4, 4)])
    assert torch.equal(out[..., :, :3], edited[..., :, :3]) and torch.equal(out[..., :, 5:], base[..., :, 5:])


# ---------------------------------------------------------------- measured on a generator
@pytest.fixture(scope="module")
def G():
    return tiny_generator(res=16)


def test_fit_region_measures_where_the_direction_changes_pixels(G):
    d = Direction("d", torch.randn(G.style_dim), scale=2.0)
    fitted = fit_region(G, d, samples=6, seed=3, alpha=0.5, sigma=0)
    w = G.styles_from_seed(3, n=6, truncation=0.8)
    fp = footprint(G, d.offset(G.n_style, G.style_dim), w)
    assert fitted.region.shape == fp.shape == (16, 16)
    assert torch.allclose(fitted.region, (fp / (0.5 * fp.max())).clamp(0, 1))
    assert fitted.info["region"] == {"samples": 6, "seed": 3, "truncation": 0.8, "alpha": 0.5, "sigma": 0,
                                     "res": 16, "area": round(float(fitted.region.mean()), 3)}
    assert torch.equal(fitted.vector, d.vector) and fitted.scale == d.scale


def test_render_sliders_keeps_each_regional_edit_inside_its_region(G):
    w = G.styles_from_seed(1, n=2, truncation=0.8)
    ds = DirectionSet([Direction("a", torch.randn(G.style_dim), region=left_half(16, 16)),
                       Direction("b", torch.randn(G.style_dim))])
    plain = G.synthesize(ds.apply(w, {"b": 0.7}))
    both = G.synthesize(ds.apply(w, {"a": 1.0, "b": 0.7}))
    out = render_sliders(G, ds, w, {"a": 1.0, "b": 0.7})
    assert torch.allclose(out[..., 12:], plain[..., 12:], atol=1e-6), "outside: the whole-image sliders only"
    assert torch.allclose(out[..., :4], both[..., :4], atol=1e-6), "inside: every slider"
    assert torch.equal(render_sliders(G, ds, w, {"b": 0.7}), plain), "no regional slider: one plain render"
    assert torch.equal(render_sliders(G, ds, w, {"a": 0.0, "b": 0.7}), plain)
    with pytest.raises(InputError, match="unknown direction 'c'"):
        render_sliders(G, ds, w, {"c": 1.0})


class MeanRed(torch.nn.Module):
    """A judge that reads the image's mean red, so a change kept in half the frame reads as half."""

    def __init__(self):
        super().__init__()
        self.config = ClassifierConfig(["red"], input_size=16)
        self.dummy = torch.nn.Parameter(torch.zeros(()), requires_grad=False)

    @property
    def attributes(self) -> list[str]:
        return self.config.attributes

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1].mean(dim=(2, 3)) + self.dummy


def test_measure_effect_judges_the_edit_as_rendered(G):
    clf = MeanRed()
    w = G.styles_from_seed(2, n=8, truncation=0.8)
    off = Direction("d", torch.randn(G.style_dim), scale=3.0).offset(G.n_style, G.style_dim)
    base = score_latents(G, clf, w, res=16)
    whole = measure_effect(G, clf, off, 0, w, base, 16)
    inside = measure_effect(G, clf, off, 0, w, base, 16, region=left_half(16, 16))
    # what the judge sees is the blended image's mean: the left half of the change, every face
    t = torch.where(base[:, 0] < 0.5, 1.0, -1.0)
    with torch.no_grad():
        change = G.synthesize(w + t[:, None, None] * off, res=16) - G.synthesize(w, res=16)
    half = change[:, 0, :, :8].sum((1, 2)) / 256
    assert abs(inside.own - float((t * half).mean())) < 1e-5
    full = change[:, 0].mean((1, 2))
    assert abs(whole.own - float((t * full).mean())) < 1e-5


# ---------------------------------------------------------------- the shipped demo and its editor
@pytest.fixture(scope="module")
def demo_editor():
    return Editor(DEMO, use_lpips=False)


def test_the_demo_keeps_hair_and_glasses_edits_where_they_live(demo_editor):
    dirs = demo_editor.directions
    assert {n for n, d in dirs.items() if d.region is not None} == {"hair_length", "eyeglasses"}
    hair = dirs["hair_length"]
    assert hair.info["region"]["alpha"] == 0.3 and hair.info["region"]["samples"] == 64
    # the hair region is the frame's sides, not the middle of the face where eyes and mouth are
    r = hair.region
    h, w = r.shape
    centre = float(r[h // 2 - 4:h // 2 + 8, w // 2 - 4:w // 2 + 4].mean())  # eyes, nose and mouth: 0.15
    sides = float(torch.cat([r[-12:, :8], r[-12:, -8:]]).mean())  # hair over the shoulders: 0.54
    assert centre < 0.3 and sides > 0.45, (centre, sides)


def test_editor_renders_regional_sliders_over_the_unedited_face(demo_editor, monkeypatch):
    G = demo_editor.generator
    session = demo_editor.open(render_index(0, 2 * 10 ** 9 + 700, 128)[0], align=False)
    session.set_latent(G.styles_from_seed(7, truncation=0.7))
    region = demo_editor.directions["hair_length"].region
    plain = session.render("full", sliders={})
    with torch.no_grad():
        whole = G.synthesize(session.latent({"hair_length": 1.0}), noise="const")
    out = session.render("full", sliders={"hair_length": 1.0})
    m = F.interpolate(region[None, None], size=out.shape[-1], mode="bilinear", align_corners=False)
    assert torch.allclose(out, plain + m * (whole - plain), atol=1e-5)
    face, hair = (m < 0.2).expand_as(out), (m > 0.9).expand_as(out)
    assert face.sum() > 3 * 500 and hair.sum() > 3 * 500
    changed = (whole - plain).abs()
    assert (out - plain).abs()[face].mean() < 0.2 * changed[face].mean(), "the middle of the face barely moves"
    assert changed[face].mean() > 0.01, "where the plain edit did change it"
    assert torch.allclose(out[hair], whole[hair], atol=0.1 * float(changed[hair].max())), "the full edit on the hair"

    # with a whole-image slider set too, the base is that slider's render; it is drawn once while the
    # regional slider moves (a drag costs one render, not two)
    calls = []
    real = G.synthesize
    monkeypatch.setattr(G, "synthesize", lambda *a, **k: calls.append(1) or real(*a, **k))
    smile_only = session.render("full", sliders={"smile": 0.6})
    for v in (0.2, 0.5, 0.8):
        calls.clear()
        out = session.render("full", sliders={"smile": 0.6, "hair_length": v})
        with torch.no_grad():
            both = real(session.latent({"smile": 0.6, "hair_length": v}), noise="const")
        assert torch.allclose(out, smile_only + m * (both - smile_only), atol=1e-5)
        assert len(calls) == (2 if v == 0.2 else 1), (v, len(calls))
    # a draft cost alternating with the full one keeps a base of its own
    counts = []
    for cost, v in (("64", 0.3), ("full", 0.4), ("64", 0.6), ("full", 0.7)):
        calls.clear()
        session.render(cost, sliders={"smile": 0.6, "hair_length": v})
        counts.append(len(calls))
    assert counts == [2, 1, 1, 1]
    session.set_latent(G.styles_from_seed(8, truncation=0.7))
    calls.clear()
    session.render("full", sliders={"smile": 0.6, "hair_length": 0.8})
    assert len(calls) == 2, "a new latent draws its base again"


# ---------------------------------------------------------------- the command
@pytest.fixture
def model_copy(tmp_path) -> Path:
    path = tmp_path / "demo.safetensors"
    shutil.copyfile(DEMO, path)
    return path


def test_region_command_fits_lists_and_clears_in_place(model_copy, capsys):
    before = read_model(model_copy)
    r = cli("directions", "region", "--model", str(model_copy), "bangs,beard", "--samples", "4", "--seed", "1")
    assert r.returncode == 0, r.stderr
    assert "bangs: regional" in r.stdout and "beard: regional" in r.stdout
    rows = {d["name"]: d for d in json.loads(cli("directions", "--model", str(model_copy), "--json").stdout)
            ["directions"]}
    assert {n for n, d in rows.items() if d["region"] is not None} == {"bangs", "beard", "hair_length", "eyeglasses"}
    assert 0 < rows["beard"]["region"] <= 1
    table = cli("directions", "--model", str(model_copy)).stdout
    assert next(x for x in table.splitlines() if x.startswith("beard")).count("regional") == 1

    after = read_model(model_copy)
    for k, t in before.components["generator"].tensors.items():
        assert torch.equal(t, after.components["generator"].tensors[k]), k
    dirs, old = directions_in_model(after), directions_in_model(before)
    assert torch.equal(dirs["beard"].vector, old["beard"].vector)
    assert dirs["beard"].info["region"]["samples"] == 4
    assert dirs["beard"].info["refined"] == old["beard"].info["refined"], "provenance kept"
    assert torch.equal(dirs["hair_length"].region, old["hair_length"].region), "others untouched"

    r = cli("directions", "region", "--model", str(model_copy), "beard,hair_length", "--clear")
    assert r.returncode == 0 and "beard: whole image" in r.stdout
    cleared = directions_in_model(read_model(model_copy))
    assert cleared["beard"].region is None and "region" not in cleared["beard"].info
    assert cleared["hair_length"].region is None and cleared["bangs"].region is not None

    from anycost.cli import main

    snapshot = model_copy.read_bytes()
    for args, says in [
        (["frown"], "unknown direction(s) frown"),
        (["bangs", "--alpha", "0"], "alpha"),
        (["bangs", "--sigma", "99"], "sigma"),
        (["bangs", "--samples", "0"], "--samples"),
        (["bangs", "--truncation", "2"], "--truncation"),
        ([","], "at least one"),
    ]:
        capsys.readouterr()
        assert main(["directions", "region", "--model", str(model_copy), *args]) == 2, args
        assert says in capsys.readouterr().err, args
    assert model_copy.read_bytes() == snapshot
    capsys.readouterr()
    assert main(["directions", "region", "--model", str(DEMO), "bangs"]) == 2
    assert "shipped" in capsys.readouterr().err
