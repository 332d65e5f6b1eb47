"""Edit directions (labels, SeFa, official boundary files), their storage, and the attribute classifier."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from model_support import tiny_generator
from PIL import Image
from torch import nn

from anycost import Generator
from anycost.directions import (
    Direction,
    DirectionSet,
    directions_in_model,
    from_component,
    load_directions_file,
    load_official_boundaries,
    save_directions_file,
    sefa_directions,
    to_component,
)
from anycost.directions.boundaries import (
    condition_normal,
    directions_from_labels,
    fit_boundary,
    measure_score_change,
    sample_w,
    score_latents,
)
from anycost.directions.refine import EditEffect, RefineSettings, _better, measure_effect, refine_directions
from anycost.errors import InputError, ModelFileError
from anycost.io.modelfile import Component, read_model, save_model
from anycost.training.classifier import (
    AttributeClassifier,
    ClassifierConfig,
    ClassifierTrainConfig,
    LabelledData,
    evaluate_classifier,
    load_classifier,
    load_labelled_folder,
    save_classifier,
    train_classifier,
)

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "backend")}


@pytest.fixture(scope="module")
def G() -> Generator:
    return tiny_generator()


def cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "anycost", *args], capture_output=True, text=True, env=ENV,
                          timeout=timeout)


class BrightnessScorer(nn.Module):
    """A fixed labeller: score = sigmoid(k · mean brightness). Same interface as AttributeClassifier."""

    def __init__(self, k: float = 4.0):
        super().__init__()
        self.config = ClassifierConfig(["brightness"], input_size=16)
        self.k = nn.Parameter(torch.tensor(k), requires_grad=False)

    @property
    def attributes(self) -> list[str]:
        return self.config.attributes

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.k * x.mean(dim=(1, 2, 3)))[:, None]


# ---------------------------------------------------------------- Direction and apply()
def test_apply_several_sliders_and_layers():
    D = 8
    a = Direction("smile", torch.ones(D), scale=2.0)
    b = Direction("age", torch.arange(D, dtype=torch.float32), layers=[0, 2], scale=0.5)
    c = Direction("full", torch.full((4, D), 3.0), source="sefa")
    ds = DirectionSet([a, b, c])
    w = torch.randn(2, 4, D)
    out = ds.apply(w, {"smile": 0.5, "age": -1.0, "full": 0.0})
    expect = w + 0.5 * 2.0 * torch.ones(D)
    expect[:, [0, 2]] += -1.0 * 0.5 * torch.arange(D, dtype=torch.float32)
    assert torch.allclose(out, expect)
    assert torch.equal(w, ds.apply(w, {}))  # no sliders, no change
    assert torch.allclose(ds.apply(w[0], {"full": 1.0}), w[0] + 3.0)  # (n_style, D) works too
    assert torch.allclose(a.apply(w, 1.0), w + 2.0)
    with pytest.raises(InputError, match="unknown direction"):
        ds.apply(w, {"nose": 1.0})
    with pytest.raises(InputError, match="finite"):
        ds.apply(w, {"smile": float("nan")})
    with pytest.raises(InputError, match="style_dim"):
        ds.apply(torch.randn(1, 4, D + 1), {"smile": 1.0})
    with pytest.raises(InputError, match="slot"):
        Direction("x", torch.ones(D), layers=[9]).offset(4, D)


@pytest.mark.parametrize("kwargs", [
    {"name": "Bad Name"}, {"vector": torch.ones(2, 3, 4)}, {"vector": torch.tensor([float("inf")])},
    {"slider_range": (1.0, -1.0)}, {"source": "magic"}, {"layers": [-1]},
])
def test_invalid_directions_are_refused(kwargs):
    base = {"name": "ok", "vector": torch.ones(4)}
    with pytest.raises(InputError):
        Direction(**{**base, **kwargs})


def test_component_and_standalone_round_trips(G, tmp_path):
    ds = DirectionSet([
        Direction("smile", torch.randn(32), layers=[0, 1, 2], scale=1.5, slider_range=(-2, 2), source="labels",
                  info={"fit_accuracy": 0.9}),
        Direction("sefa_0", torch.randn(G.n_style, 32), source="sefa"),
    ])
    path = save_model(tmp_path / "m.safetensors", generator=G, components={"directions": to_component(ds)})
    back = directions_in_model(read_model(path))
    assert list(back) == ["smile", "sefa_0"]
    for name, d in ds.items():
        e = back[name]
        assert torch.equal(d.vector, e.vector) and d.config() == e.config()
    f = save_directions_file(tmp_path / "dirs.safetensors", ds)
    again = load_directions_file(f)
    assert list(again) == list(ds) and again["smile"].scale == 1.5 and again["smile"].layers == [0, 1, 2]
    npy = save_directions_file(tmp_path / "Smile.npy", [ds["smile"]])
    one = load_directions_file(npy)
    assert list(one) == ["smile"] and torch.allclose(one["smile"].vector, ds["smile"].vector)
    with pytest.raises(InputError, match="one direction"):
        save_directions_file(tmp_path / "two.npy", ds)
    broken = Component({"version": 1, "directions": [{"name": "smile"}, {"name": "gone"}]},
                       {"smile": torch.ones(32)})
    with pytest.raises(ModelFileError, match="without a vector"):
        from_component(broken)


# ---------------------------------------------------------------- SeFa
def test_sefa_orthonormal_deterministic_ranked(G):
    a = sefa_directions(G, 5)
    b = sefa_directions(tiny_generator(), 5)  # same weights, separately built
    assert list(a) == [f"sefa_{i}" for i in range(5)]
    V = torch.stack([d.vector for d in a.values()])
    assert torch.allclose(V @ V.T, torch.eye(5), atol=1e-5)
    for name in a:
        assert torch.allclose(a[name].vector, b[name].vector, atol=1e-6)
        assert a[name].source == "sefa" and a[name].scale > 0
    ev = [d.info["eigenvalue"] for d in a.values()]
    assert ev == sorted(ev, reverse=True)
    # The top direction changes the modulation the most among unit vectors.
    mod = torch.cat([m.conv.modulation.weight for m in [G.conv1, *G.convs]])
    mod = mod / mod.norm(dim=1, keepdim=True)
    rand = torch.nn.functional.normalize(torch.randn(64, 32), dim=1)
    assert (mod @ V[0]).norm() >= (mod @ rand.T).norm(dim=0).max()
    part = sefa_directions(G, 2, layers=[0, 1])
    assert part["sefa_0"].layers == [0, 1]
    with pytest.raises(InputError):
        sefa_directions(G, 0)
    with pytest.raises(InputError):
        sefa_directions(G, 2, layers=[99])


# ---------------------------------------------------------------- InterFaceGAN fitting
def test_fit_boundary_recovers_planted_direction(G):
    w = sample_w(G, 3000, truncation=1.0, seed=1).cpu()
    torch.manual_seed(2)
    truth = torch.nn.functional.normalize(torch.randn(32), dim=0)
    proj = (w - w.mean(0)) @ truth
    scores = torch.sigmoid(4 * proj / proj.std())
    normal, stats = fit_boundary(w, scores)
    assert float(normal @ truth) > 0.9
    assert abs(float(normal.norm()) - 1) < 1e-5 and stats["fit_accuracy"] > 0.95
    with pytest.raises(InputError):
        fit_boundary(w, torch.zeros(len(w)))


def test_conditioning_removes_other_directions():
    torch.manual_seed(0)
    a, b, c = (torch.nn.functional.normalize(torch.randn(16), dim=0) for _ in range(3))
    v = condition_normal(a, [b, c])
    assert abs(float(v @ b)) < 1e-5 and abs(float(v @ c)) < 1e-5 and float(v @ a) > 0
    with pytest.raises(InputError):
        condition_normal(b, [b])


def test_directions_from_labels_move_the_score(G):
    scorer = BrightnessScorer()
    ds = directions_from_labels(G, scorer, n_samples=200, n_calibration=8)
    d = ds["brightness"]
    assert d.source == "labels" and d.scale > 0 and abs(float(d.vector.norm()) - 1) < 1e-5
    assert d.info["fit_accuracy"] > 0.8
    # Measured on fresh latents: slider +1 brightens, −1 darkens, by a clear margin.
    w = sample_w(G, 16, seed=99)
    assert measure_score_change(G, scorer, d, 0, w) > 0.1
    assert d.info["score_change_at_1"] > 0.1


class ChannelScorer(nn.Module):
    """Two entangled-looking labels: how much red, and how much blue, stands out over green."""

    def __init__(self, k: float = 6.0):
        super().__init__()
        self.config = ClassifierConfig(["red", "blue"], input_size=16)
        self.k = nn.Parameter(torch.tensor(k), requires_grad=False)

    @property
    def attributes(self) -> list[str]:
        return self.config.attributes

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(2, 3))
        return torch.sigmoid(self.k * torch.stack([m[:, 0] - m[:, 1], m[:, 2] - m[:, 1]], 1))


def test_refined_directions_leave_the_other_attribute_alone(G):
    scorer = ChannelScorer()
    labels = directions_from_labels(G, scorer, n_samples=200, n_calibration=8, target_change=0.35)
    labels.add(Direction("sefa_0", torch.ones(G.style_dim), source="sefa"))
    # a random toy generator has no data manifold to leave: allow the offsets to grow
    settings = RefineSettings(steps=40, batch=8, pool=64, holdout=32, max_drift=2.0)
    refined = refine_directions(G, scorer, labels, settings=settings)
    assert set(refined) == {"red", "blue"}, "only directions that name a classifier attribute"
    w = G.to_w_plus(sample_w(G, 64, seed=5))  # latents neither step saw
    base = score_latents(G, scorer, w, res=16)
    for a, name in enumerate(scorer.attributes):
        d = refined[name]
        assert d.vector.shape == (G.n_style, G.style_dim) and d.scale == 1.0 and d.source == "labels"
        assert {"before", "after", "steps"} <= set(d.info["refined"])
        start = measure_effect(G, scorer, labels[name].offset(G.n_style, G.style_dim), a, w, base, 16)
        end = measure_effect(G, scorer, d.offset(G.n_style, G.style_dim), a, w, base, 16)
        assert end.own > 0.3, "slider ±1 still moves its own attribute"
        assert end.other_max < 0.5 * start.other_max, "and drags the other one much less"
        assert end.success > start.success
    # the same optimisation, unsteered, under a strict drift limit: the offsets that grew past it are not kept
    strict = refine_directions(G, scorer, labels,
                               settings=RefineSettings(**{**vars(settings), "max_drift": 1.0, "drift_weight": 0.0}))
    for name in scorer.attributes:
        assert strict[name].info["refined"]["drift"] == refined[name].info["refined"]["drift"] > 1.0
        assert torch.allclose(strict[name].vector, labels[name].offset(G.n_style, G.style_dim))
    # steered by the drift penalty, the optimisation finds a better offset inside the same limit
    steered = refine_directions(G, scorer, labels, settings=RefineSettings(**{**vars(settings), "max_drift": 1.0}))
    for name in scorer.attributes:
        info = steered[name].info["refined"]
        assert info["drift"] <= 1.0 and info["after"]["success"] > info["before"]["success"], info
        assert not torch.allclose(steered[name].vector, labels[name].offset(G.n_style, G.style_dim))
    with pytest.raises(InputError, match="no direction names"):
        refine_directions(G, scorer, DirectionSet([labels["sefa_0"]]))


def test_refinement_on_given_latents(G):
    """The faces a user edits arrive through the encoder, off the sampled distribution: refinement can run
    on such latents (``projected_latents``) instead of samples, and records that it did."""
    from anycost.directions.refine import projected_latents
    from anycost.models.encoder import Encoder, EncoderConfig

    scorer = ChannelScorer()
    labels = directions_from_labels(G, scorer, n_samples=200, n_calibration=8, target_change=0.35)
    torch.manual_seed(0)
    E = Encoder(EncoderConfig(n_style=G.n_style, style_dim=G.style_dim, depth=10, width=8, input_size=32)).eval()
    faces = torch.rand(24, 3, 48, 48) * 2 - 1  # another size than the model's: resized first
    w = projected_latents(G, E, faces, batch=7)
    assert w.shape == (24, G.n_style, G.style_dim)
    with torch.no_grad():
        first = E(torch.nn.functional.interpolate(faces[:1], size=(G.resolution, G.resolution), mode="bicubic",
                                                  align_corners=False, antialias=True).clamp(-1, 1))
    assert torch.allclose(w[:1], first, atol=1e-5), "batching changes nothing"
    settings = RefineSettings(steps=20, batch=8, max_drift=2.0)
    given = refine_directions(G, scorer, labels, settings=settings, latents=(w[:16], w[16:]))
    for name in scorer.attributes:
        info = given[name].info["refined"]
        assert info["on"] == "projected" and info["held_out"] == 8
        # its effect is measured on the held-out projected latents it was given
        a = scorer.attributes.index(name)
        base = score_latents(G, scorer, w[16:], res=16)
        effect = measure_effect(G, scorer, given[name].offset(G.n_style, G.style_dim), a, w[16:], base, 16)
        assert effect.as_dict() == info["after"]
    with pytest.raises(InputError, match="W\\+"):
        refine_directions(G, scorer, labels, settings=settings, latents=(w[:16, 0], w[16:, 0]))
    with pytest.raises(InputError, match="encoder"):
        projected_latents(G, None, faces)


def test_a_refined_direction_is_kept_only_when_it_is_better():
    start = EditEffect(success=0.1, own=0.6, other_max=0.3)
    assert _better(EditEffect(0.2, 0.35, 0.2), start)
    assert not _better(EditEffect(0.05, 0.6, 0.05), start), "fewer successes"
    assert _better(EditEffect(0.1, 0.4, 0.1), start), "as many, and less drag while still moving 0.3"
    assert not _better(EditEffect(0.1, 0.1, 0.05), start), "a slider that no longer does its job"


# ---------------------------------------------------------------- official boundary files
class NotATensor:
    def __init__(self):
        self.payload = "code"


def test_official_boundaries_load_and_pickles_are_refused(tmp_path):
    g = torch.Generator().manual_seed(0)
    raw = {"15_Eyeglasses": torch.randn(1, 512, generator=g), "31_Smiling": torch.randn(1, 512, generator=g),
           "00_5_o_Clock_Shadow": torch.randn(1, 512, generator=g)}
    f = tmp_path / "boundaries.pt"
    torch.save(raw, f)
    ds = load_official_boundaries(f)
    assert set(ds) == {"eyeglasses", "smiling", "5_o_clock_shadow"}
    e = ds["eyeglasses"]
    assert e.source == "official" and e.layers is None and e.vector.shape == (512,)
    assert torch.allclose(e.vector, raw["15_Eyeglasses"][0] / raw["15_Eyeglasses"].norm())
    assert list(load_directions_file(f)) == list(ds)  # dispatch by content
    evil = tmp_path / "evil.pt"
    torch.save({"15_Eyeglasses": NotATensor()}, evil)
    with pytest.raises(ModelFileError, match="refused"):
        load_official_boundaries(evil)
    ckpt = tmp_path / "generator.pt"
    torch.save({"g_ema": {"style.1.weight": torch.zeros(2, 2)}}, ckpt)
    with pytest.raises(ModelFileError, match="not a boundary file"):
        load_directions_file(ckpt)
    odd = tmp_path / "odd.pt"
    torch.save({"15_Eyeglasses": torch.randn(3, 4, 5)}, odd)
    with pytest.raises(ModelFileError, match="shape"):
        load_official_boundaries(odd)


# ---------------------------------------------------------------- classifier
def test_classifier_learns_separable_attribute(tmp_path):
    g = torch.Generator().manual_seed(0)
    n = 160
    bright = (torch.rand(n, generator=g) > 0.5).float()
    red = torch.rand(n, generator=g)
    imgs = torch.rand(n, 3, 24, 24, generator=g) * 0.6 - 0.8 + bright[:, None, None, None] * 0.8
    imgs[:, 0] += (red[:, None, None] - 0.5) * 1.0
    # "yaw" is left/right: flips during training must mirror its label, or it cannot be learnt.
    yaw = (torch.rand(n, generator=g) > 0.5).float()
    imgs[..., :12] += 0.5 * yaw[:, None, None, None]
    imgs[..., 12:] += 0.5 * (1 - yaw)[:, None, None, None]
    data = LabelledData(imgs.clamp(-1, 1), torch.stack([bright, red, yaw], 1), ["bright", "red", "yaw"])
    train, val = data.split(0.25)
    clf = train_classifier(train, ClassifierTrainConfig(steps=100, batch=32, lr=5e-3), input_size=16, width=8)
    m = evaluate_classifier(clf, val)
    assert m["bright"]["accuracy"] > 0.95 and m["yaw"]["accuracy"] > 0.9
    baseline = float((val.labels[:, 1] - train.labels[:, 1].mean()).abs().mean())
    assert m["red"]["mae"] < 0.8 * baseline
    out = save_classifier(tmp_path / "clf.safetensors", clf, metrics={"x": 1})
    again = load_classifier(out)
    x = torch.rand(3, 3, 40, 40) * 2 - 1  # any size
    assert torch.allclose(clf.predict(x), again.predict(x), atol=1e-6)
    assert again.attributes == ["bright", "red", "yaw"]


def test_labelled_folder_formats(tmp_path):
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full((20, 20, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "labels.csv").write_text("file,a,b\n0.png,0,1\n1.png,0.5,0.5\n2.png,1,0\n")
    d = load_labelled_folder(tmp_path, size=16)
    assert d.images.shape == (3, 3, 16, 16) and d.attributes == ["a", "b"]
    assert torch.allclose(d.labels[:, 0], torch.tensor([0, 0.5, 1]))
    meta = {"attributes": ["a"], "files": ["0.png", "2.png"], "labels": [[0.25], [0.75]]}
    (tmp_path / "l.json").write_text(json.dumps(meta))
    d = load_labelled_folder(tmp_path, tmp_path / "l.json")
    assert d.images.shape[0] == 2
    (tmp_path / "bad.csv").write_text("file,a\n0.png,7\n")
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        load_labelled_folder(tmp_path, tmp_path / "bad.csv")


# ---------------------------------------------------------------- CLI end to end
def test_cli_end_to_end(G, tmp_path, capsys):
    model = save_model(tmp_path / "m.safetensors", generator=G, info={"name": "tiny"})
    torch.manual_seed(0)
    clf = AttributeClassifier(ClassifierConfig(["smile", "age"], input_size=16, width=8))
    with torch.no_grad():
        clf.head.weight.mul_(200)  # an untrained head scores almost constantly; widen its spread
    save_classifier(tmp_path / "clf.safetensors", clf)

    r = cli("fit-directions", "--model", str(model), "--sefa", "3", "--layers", "0-3", "-o",
            str(tmp_path / "a.safetensors"))
    assert r.returncode == 0, r.stderr
    bfile = tmp_path / "b.pt"
    torch.save({"15_Eyeglasses": torch.randn(1, 32), "31_Smiling": torch.randn(1, 32)}, bfile)
    r = cli("fit-directions", "--model", str(tmp_path / "a.safetensors"), "--boundaries", str(bfile), "-o",
            str(tmp_path / "b.safetensors"), "--export", str(tmp_path / "official.safetensors"))
    assert r.returncode == 0, r.stderr
    r = cli("fit-directions", "--model", str(tmp_path / "b.safetensors"), "--from-labels", "--classifier",
            str(tmp_path / "clf.safetensors"), "--samples", "48", "--calibration-samples", "4",
            "--attributes", "smile", "-o", str(tmp_path / "c.safetensors"))
    assert r.returncode == 0, r.stderr

    r = cli("directions", "--model", str(tmp_path / "c.safetensors"), "--json")
    assert r.returncode == 0, r.stderr
    listed = {d["name"]: d for d in json.loads(r.stdout)["directions"]}
    assert set(listed) == {"sefa_0", "sefa_1", "sefa_2", "eyeglasses", "smiling", "smile"}
    assert listed["sefa_1"]["layers"] == [0, 1, 2, 3] and listed["sefa_1"]["source"] == "sefa"
    assert listed["eyeglasses"]["source"] == "official" and listed["smile"]["source"] == "labels"
    assert listed["smile"]["range"] == [-1.0, 1.0]
    mf = read_model(tmp_path / "c.safetensors")
    assert mf.info["name"] == "tiny" and "generator" in mf.components
    # the classifier the label directions were calibrated with travels with them
    assert load_classifier(tmp_path / "c.safetensors").attributes == ["smile", "age"]
    r = cli("directions", "--model", str(tmp_path / "official.safetensors"))
    assert r.returncode == 0 and "eyeglasses" in r.stdout and "official" in r.stdout

    # Clear errors (exit status 2), nothing written; run in-process to save interpreter start-ups.
    from anycost.cli import main

    def fails(*args: str) -> str:
        assert main(list(args)) == 2
        return capsys.readouterr().err

    capsys.readouterr()
    assert "classifier" in fails("fit-directions", "--model", str(model), "--from-labels", "-o",
                                 str(tmp_path / "x.safetensors"))
    evil = tmp_path / "evil.pt"
    torch.save({"15_Eyeglasses": NotATensor()}, evil)
    assert "refused" in fails("fit-directions", "--model", str(model), "--boundaries", str(evil), "-o",
                              str(tmp_path / "y.safetensors"))
    wrong = tmp_path / "wrong.pt"
    torch.save({"15_Eyeglasses": torch.randn(1, 512)}, wrong)
    assert "style_dim" in fails("fit-directions", "--model", str(model), "--boundaries", str(wrong), "-o",
                                str(tmp_path / "z.safetensors"))
    assert "no label directions" in fails("fit-directions", "--model", str(tmp_path / "a.safetensors"), "--refine",
                                          "--classifier", str(tmp_path / "clf.safetensors"), "-o",
                                          str(tmp_path / "r.safetensors"))
    assert not any((tmp_path / n).exists() for n in ("x.safetensors", "y.safetensors", "z.safetensors",
                                                     "r.safetensors"))

    # --refine turns the label directions into per-slot offsets, the others stay as they were
    assert main(["fit-directions", "--model", str(tmp_path / "c.safetensors"), "--refine", "--refine-steps", "3",
                 "--refine-polish", "2", "--refine-batch", "4", "--refine-pool", "8", "--refine-holdout", "8",
                 "-o", str(tmp_path / "d.safetensors")]) == 0
    before, after = (directions_in_model(read_model(tmp_path / n)) for n in ("c.safetensors", "d.safetensors"))
    assert set(after) == set(before)
    assert after["smile"].vector.shape == (G.n_style, G.style_dim) and "refined" in after["smile"].info
    assert torch.equal(after["sefa_1"].vector, before["sefa_1"].vector)
    assert after["smile"].info["refined"]["polish_steps"] == 2
    assert "at least 2" in fails("fit-directions", "--model", str(tmp_path / "c.safetensors"), "--refine",
                                 "--refine-on", "samples+synth", "--refine-faces", "1", "-o",
                                 str(tmp_path / "e.safetensors"))
    assert "nothing to optimise" in fails("fit-directions", "--model", str(tmp_path / "c.safetensors"), "--refine",
                                          "--refine-steps", "0", "--refine-polish", "0", "-o",
                                          str(tmp_path / "e.safetensors"))
    # on projected faces: the model needs an encoder, a folder enough faces; nothing is written otherwise
    assert "encoder" in fails("fit-directions", "--model", str(tmp_path / "c.safetensors"), "--refine",
                              "--refine-on", "synth", "-o", str(tmp_path / "e.safetensors"))
    few = tmp_path / "few"
    few.mkdir()
    for i in range(3):
        Image.new("RGB", (32, 32), (40 * i, 90, 200)).save(few / f"{i}.png")
    assert "needs more" in fails("fit-directions", "--model", str(tmp_path / "c.safetensors"), "--refine",
                                 "--refine-on", str(few), "-o", str(tmp_path / "e.safetensors"))
    assert not (tmp_path / "e.safetensors").exists()


def test_cli_train_classifier_synthetic(tmp_path):
    out = tmp_path / "clf.safetensors"
    r = cli("train-classifier", "--synthetic", "48", "--res", "32", "--input-size", "32", "--width", "8",
            "--steps", "5", "--batch", "16", "--quiet", "-o", str(out))
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["held_out"] > 0 and "eyeglasses" in summary["per_attribute"]
    clf = load_classifier(out)
    assert "smile" in clf.attributes
    assert read_model(out).components["classifier"].config["metrics"]["held_out"] == summary["held_out"]


def test_random_blur_augmentation():
    from anycost.training.classifier import random_blur

    x = torch.rand(16, 3, 24, 24)
    y = random_blur(x, 2.0, torch.Generator().manual_seed(1))
    assert y.shape == x.shape
    changed = (y - x).flatten(1).abs().max(1).values > 1e-4
    # about half the samples are blurred; the rest pass through exactly (a delta kernel)
    assert 0 < int(changed.sum()) < 16
    assert torch.equal(y[~changed], x[~changed])
    # blurring keeps the mean colour (reflect padding, normalised kernel) and lowers the detail
    assert torch.allclose(y.mean((2, 3)), x.mean((2, 3)), atol=0.02)
    assert (y[changed].diff(dim=-1).abs().mean() < x[changed].diff(dim=-1).abs().mean())


# ---------------------------------------------------------------- listing and checking direction files
def test_cli_directions_no_directions_and_bad_files(G, tmp_path, capsys):
    from anycost.cli import main

    def run(*args) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    # a model without directions lists none, the same way for both model formats: not an error
    bare = save_model(tmp_path / "bare.safetensors", generator=G, info={"name": "bare"})
    ckpt = tmp_path / "bare.pt"
    torch.save({"g_ema": G.state_dict()}, ckpt)
    for model in (bare, ckpt):
        code, out, err = run("directions", "--model", model)
        assert code == 0 and "no edit directions" in out, (model, out, err)
        code, out, _ = run("directions", "--model", model, "--json")
        assert code == 0 and json.loads(out)["directions"] == []

    # arrays that are not directions are refused with the shapes that would be
    for shape in [(3, 4), (4,), (5, 32), (2, 3, 32)]:
        np.save(tmp_path / "bad.npy", np.ones(shape, np.float32))
        code, _, err = run("directions", "--model", tmp_path / "bad.npy")
        assert code == 2 and "not a direction" in err and str(shape) in err, (shape, err)
    np.save(tmp_path / "wide.npy", np.ones((1, 48), np.float32))
    code, out, _ = run("directions", "--model", tmp_path / "wide.npy")
    assert code == 0 and "wide" in out  # a well-formed direction lists on its own
    # ... and is checked against a model on request
    code, _, err = run("directions", "--model", tmp_path / "wide.npy", "--for-model", bare)
    assert code == 2 and "style_dim 48" in err and "uses 32" in err, err
    np.save(tmp_path / "slots.npy", np.ones((G.n_style + 2, 32), np.float32))
    code, _, err = run("directions", "--model", tmp_path / "slots.npy", "--for-model", bare)
    assert code == 2 and f"the model has {G.n_style}" in err, err
    save_directions_file(tmp_path / "ok.npy", [Direction("ok", torch.ones(32), layers=[0, 1])])
    code, out, _ = run("directions", "--model", tmp_path / "ok.npy", "--for-model", bare)
    assert code == 0 and "ok" in out
    with pytest.raises(InputError, match="style_dim 48"):
        load_directions_file(tmp_path / "wide.npy", fits=(G.n_style, 32))


def test_smooth_success_counts_what_the_criterion_counts():
    from anycost.directions.refine import smooth_success

    own = torch.tensor([0.6, 0.1, 0.6, 0.31], requires_grad=True)
    others = torch.tensor([[0.0, 0.02], [0.0, 0.0], [0.3, 0.0], [0.0, 0.0]])
    p = smooth_success(own, others, 0.05)
    assert p[0] > 0.5, "own moved well past 0.3, the others stayed"
    assert p[1] < 0.02 and p[2] < 0.02, "own too small, or another attribute dragged along"
    assert 0.1 < p[3] < 0.9, "a sample near the line is where the gradient is"
    p.sum().backward()
    assert own.grad is not None and own.grad[3] > 10 * own.grad[0] > 0


def test_polish_stage_counts_successes(G):
    """The polish stage alone, from the label directions: more successes on latents it never saw."""
    scorer = ChannelScorer()
    labels = directions_from_labels(G, scorer, n_samples=200, n_calibration=8, target_change=0.35)
    polished = refine_directions(G, scorer, labels, settings=RefineSettings(
        steps=0, polish_steps=60, polish_batch=16, pool=64, holdout=64, max_drift=2.0))
    w = G.to_w_plus(sample_w(G, 128, seed=11))
    base = score_latents(G, scorer, w, res=16)
    for a, name in enumerate(scorer.attributes):
        info = polished[name].info["refined"]
        assert info["polish_steps"] == 60 and info["steps"] == 0
        was = measure_effect(G, scorer, labels[name].offset(G.n_style, G.style_dim), a, w, base, 16)
        now = measure_effect(G, scorer, polished[name].offset(G.n_style, G.style_dim), a, w, base, 16)
        assert now.success > was.success + 0.1, (name, was, now)
    with pytest.raises(InputError, match="at least 1 step"):
        refine_directions(G, scorer, labels, settings=RefineSettings(steps=0, polish_steps=0))


def test_refinement_mixes_samples_with_faces(G):
    scorer = ChannelScorer()
    labels = directions_from_labels(G, scorer, n_samples=200, n_calibration=8, target_change=0.35)
    faces = G.to_w_plus(sample_w(G, 24, seed=3)) + 0.3 * torch.randn(24, G.n_style, G.style_dim,
                                                                      generator=torch.Generator().manual_seed(1))
    settings = RefineSettings(steps=10, batch=8, pool=32, holdout=16, max_drift=2.0, seed=2)
    mixed = refine_directions(G, scorer, labels, settings=settings, latents=(faces[:16], faces[16:]),
                              mix_samples=True)
    held = torch.cat([G.to_w_plus(sample_w(G, 16, truncation=settings.truncation, seed=2 + 71_711)), faces[16:]])
    base = score_latents(G, scorer, held, res=16)
    for a, name in enumerate(scorer.attributes):
        info = mixed[name].info["refined"]
        assert info["on"] == "samples+projected" and info["held_out"] == 16 + 8
        effect = measure_effect(G, scorer, mixed[name].offset(G.n_style, G.style_dim), a, held, base, 16)
        assert effect.as_dict() == info["after"], "measured on the held-out samples and faces together"
    with pytest.raises(InputError, match="faces' latents"):
        refine_directions(G, scorer, labels, settings=settings, mix_samples=True)


def test_refined_projections_come_closer_than_the_encoder(G):
    from anycost.directions.refine import projected_latents, refined_projections
    from anycost.editing.project import ProjectionSettings, psnr
    from anycost.models.encoder import Encoder, EncoderConfig

    torch.manual_seed(0)
    E = Encoder(EncoderConfig(n_style=G.n_style, style_dim=G.style_dim, depth=10, width=8, input_size=32)).eval()
    with torch.no_grad():
        targets = G.synthesize(G.to_w_plus(sample_w(G, 5, seed=8)))
    settings = ProjectionSettings(steps=30, report_every=30, use_lpips=False, consistency_weight=0.0)
    said: list[str] = []
    w = refined_projections(G, E, targets, settings, batch=2, progress=said.append)
    assert w.shape == (5, G.n_style, G.style_dim) and len(said) == 3
    w0 = projected_latents(G, E, targets)
    with torch.no_grad():
        for i in range(5):  # each face has its own latent, nearer its own target
            assert psnr(G.synthesize(w[i:i + 1]), targets[i:i + 1]) > psnr(G.synthesize(w0[i:i + 1]), targets[i:i + 1])
    with pytest.raises(InputError, match="encoder"):
        refined_projections(G, None, targets, settings)


def test_cli_refine_on_samples_and_refined_faces(tmp_path, capsys):
    """The demo's own recipe at toy size: polish one direction on samples mixed with synthetic faces that
    were projected and refined the way its editor refines them."""
    from anycost.cli import main
    from anycost.registry import resolve_model

    out = tmp_path / "m.safetensors"
    assert main(["fit-directions", "--model", "anycost-demo", "--refine", "--attributes", "smile",
                 "--refine-on", "samples+synth", "--refine-steps", "0", "--refine-polish", "2", "--refine-batch", "4",
                 "--refine-pool", "8", "--refine-faces", "6", "--refine-holdout", "4", "--refine-project-steps", "2",
                 "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert "refined 2 steps each (encoder_reg 0.003" in said, "the model's own projection pull"
    assert "projected 6/6 faces" in said and "projected 4/4 faces" in said
    before, after = (directions_in_model(read_model(p)) for p in (resolve_model("anycost-demo"), out))
    info = after["smile"].info["refined"]
    assert info["on"] == "samples+projected" and info["held_out"] == 4 + 4 and info["polish_steps"] == 2
    assert all(torch.equal(after[n].vector, before[n].vector) for n in before if n != "smile")


def test_refine_align_takes_faces_as_the_editor_does(tmp_path, capsys):
    """--refine-align: faces are found and aligned with the model's framing exactly as an editor aligns a
    user's region; images without a face are left out, and the count is said."""
    from PIL import Image

    from anycost.cli import main
    from anycost.commands.fit_directions import _to_input
    from anycost.data.synth_faces import render_index
    from anycost.editing.align import Framing, align_face
    from anycost.editing.region import Region
    from anycost.editing.session import Editor

    editor = Editor("anycost-demo", use_lpips=False)
    # drawn faces dlib finds (it misses about a third of them; an editor then crops the centre)
    drawn = (render_index(0, 10 ** 9 + 50 + i, 256)[0] for i in range(40))
    faces = [img for img in drawn if align_face(Region.from_array(img), 64).face_found][:7]
    assert len(faces) == 7
    blank = np.full((256, 256, 3), 128, np.uint8)
    crops = _to_input([blank, faces[0], faces[1]], editor.generator.resolution, Framing.from_info(editor.info))
    assert crops.shape == (2, 3, editor.generator.resolution, editor.generator.resolution)
    assert "no face found in 1 of 3 images: left out" in capsys.readouterr().out
    for crop, img in zip(crops, faces[:2], strict=True):
        assert torch.equal(crop[None], editor.open(img).target.cpu()), "the editor's own aligned crop"
    # --refine-unfound centre: the image without a face gets the editor's own centred crop instead
    kept = _to_input([blank, faces[0]], editor.generator.resolution, Framing.from_info(editor.info),
                     keep_unfound=True)
    assert "no face found in 1 of 2 images: centre-cropped, as an editor crops them" in capsys.readouterr().out
    for crop, img in zip(kept, [blank, faces[0]], strict=True):
        assert torch.equal(crop[None], editor.open(img).target.cpu())
    assert main(["fit-directions", "--model", "anycost-demo", "--refine", "--attributes", "smile", "--refine-on",
                 "synth", "--refine-unfound", "centre", "-o", str(tmp_path / "x.safetensors")]) == 2
    assert "pass --refine-align too" in capsys.readouterr().err and not (tmp_path / "x.safetensors").exists()

    folder = tmp_path / "faces"
    folder.mkdir()
    Image.fromarray(blank).save(folder / "a_blank.png")
    for i, img in enumerate(faces):
        Image.fromarray(img).save(folder / f"face{i}.png")
    out = tmp_path / "m.safetensors"
    assert main(["fit-directions", "--model", "anycost-demo", "--refine", "--attributes", "smile",
                 "--refine-on", str(folder), "--refine-align", "--refine-steps", "0", "--refine-polish", "2",
                 "--refine-batch", "2", "--refine-holdout", "3", "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"encoding 8 faces from {folder} (aligned)" in said and "no face found in 1 of 5 images: left out" in said
    info = directions_in_model(read_model(out))["smile"].info["refined"]
    assert info["held_out"] == 3 and info["polish_steps"] == 2
