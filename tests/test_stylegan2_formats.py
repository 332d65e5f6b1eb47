"""StyleGAN2 models people hold: NVIDIA stylegan2-ada-pytorch network pickles and rosinality checkpoints.

Parity against outputs of NVIDIA's own code (tests/fixtures/stylegan2_ada), the real-size key lists,
the allow-listed unpickler against hostile files, and the path from a pickle to an edit.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import pickle
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

import anycost
from anycost.errors import ModelFileError
from anycost.io.checkpoint import open_model
from anycost.io.modelfile import read_model
from anycost.io.network_pickle import PersistentObject, read_network_pickle
from anycost.io.stylegan2_ada import check_complete, generator_config, generator_key_map, map_tensors
from anycost.models.generator import Generator
from anycost.models.layers import make_kernel

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TOL = 1e-4


@pytest.fixture(scope="module")
def ada(ada_fixture):
    G = anycost.load_generator(ada_fixture / "network-snapshot.pkl")
    expected = torch.load(ada_fixture / "expected.pt", weights_only=True)
    return G, expected


def _ws(G, expected, case):
    if case["input"] == "ws":
        return case["ws"]
    w = G.mapping(expected["z"])
    return G.to_w_plus(G.truncate(w, case["truncation_psi"], cutoff=case["truncation_cutoff"]))


def test_config_and_truncation_centre_come_from_g_ema(ada, ada_fixture):
    G, _ = ada
    cfg = json.loads((ada_fixture / "config.json").read_text())
    assert G.resolution == cfg["img_resolution"] and G.style_dim == cfg["w_dim"]
    assert G.n_style == cfg["num_ws"] and G.config.n_mlp == cfg["mapping_layers"]
    assert G.channels == {4: 64, 8: 64, 16: 64, 32: 32}  # min(channel_base / res, channel_max)
    snap = read_network_pickle(ada_fixture / "network-snapshot.pkl")
    assert torch.equal(G.w_avg, snap["G_ema"].state_dict()["mapping.w_avg"])
    const = G.input.input[0]
    assert torch.equal(const, snap["G_ema"].state_dict()["synthesis.b4.const"])
    assert not torch.equal(const, snap["G"].state_dict()["synthesis.b4.const"])  # not the raw G
    w = torch.randn(2, G.style_dim)
    assert torch.allclose(G.truncate(w, 0.5), G.w_avg + 0.5 * (w - G.w_avg))
    assert not torch.allclose(G.truncate(w, 0.5), G.truncate(w, 0.5, center=G.mean_w()))


def test_mapping_and_truncation_match_nvidia(ada):
    G, expected = ada
    cases = [c for c in expected["cases"] if c["input"] == "z"]
    assert {(c["truncation_psi"], c["truncation_cutoff"]) for c in cases} == {(1.0, None), (0.7, None), (0.5, 4)}
    with torch.no_grad():
        for case in cases:
            err = (_ws(G, expected, case) - case["ws"]).abs().max().item()
            assert err <= TOL, (case["truncation_psi"], case["truncation_cutoff"], err)


@pytest.mark.parametrize("impl", ["reference", "fast"])
def test_synthesis_matches_nvidia(ada, impl):
    G, expected = ada
    worst = 0.0
    with torch.no_grad():
        for case in expected["cases"]:
            out = G.synthesize(_ws(G, expected, case), impl=impl)
            assert out.shape == case["out"].shape
            worst = max(worst, (out - case["out"]).abs().max().item())
    assert worst <= TOL, worst
    assert expected["cases"][0]["out"].abs().max() > 0.1  # the images are not trivially small


def test_cutoff_leaves_the_later_slots_alone(ada):
    G, expected = ada
    w = G.mapping(expected["z"])
    cut = G.truncate(w, 0.5, cutoff=4)
    assert cut.shape == (3, G.n_style, G.style_dim)
    assert torch.equal(cut[:, 4:], G.to_w_plus(w)[:, 4:])
    assert torch.allclose(cut[:, :4], G.to_w_plus(G.truncate(w, 0.5))[:, :4])
    with pytest.raises(ValueError, match="cutoff"):
        G.truncate(w, 0.5, cutoff=G.n_style + 1)


@pytest.mark.parametrize("fname,res,n_mlp,top", [
    ("ada_ffhq_metfaces_1024_G_ema_state_dict.json", 1024, 8, 32),
    ("ada_afhq_512_G_ema_state_dict.json", 512, 8, 64),
    ("ada_paper256_G_ema_state_dict.json", 256, 8, 64),
])
def test_real_size_key_lists_map_completely(ada_fixture, fname, res, n_mlp, top):
    listed = json.loads((ada_fixture / fname).read_text())
    shapes = {k: tuple(s) for k, s in listed}
    km = generator_key_map(shapes)
    check_complete(km, shapes, fname)  # nothing left over, nothing missing
    cfg = generator_config(shapes, what=fname)
    assert (cfg.resolution, cfg.n_mlp, cfg.style_dim, cfg.w_avg) == (res, n_mlp, 512, True)
    with torch.device("meta"):
        target = Generator(cfg).state_dict()
    sd = {k: (make_kernel((1, 3, 3, 1)) if k.endswith("resample_filter") else torch.empty(s, device="meta"))
          for k, s in shapes.items()}
    mapped = map_tensors(sd, km, target, fname)
    assert set(mapped) == set(target)
    assert all(tuple(mapped[k].shape) == tuple(target[k].shape) for k in target)
    assert cfg.resolution_channels()[res] == top
    used = set(km.copy) | set(km.checked)
    assert used >= set(shapes)


# ---------------------------------------------------------------------------- writing test pickles
@pytest.fixture
def nvidia_globals(monkeypatch):
    """The module globals NVIDIA's pickles name, so that test pickles can be written like theirs."""
    persistence = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):  # never called: the reader has its own
        raise AssertionError("the reader ran NVIDIA's reconstruct function")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    util = types.ModuleType("dnnlib.util")
    util.EasyDict = type("EasyDict", (dict,), {"__module__": "dnnlib.util"})
    persistence.EasyDict = util.EasyDict
    for name, module in (("torch_utils", types.ModuleType("torch_utils")), ("torch_utils.persistence", persistence),
                         ("dnnlib", types.ModuleType("dnnlib")), ("dnnlib.util", util)):
        monkeypatch.setitem(sys.modules, name, module)
    return persistence


def write_snapshot(path, snapshot: dict, persistence, version: int = 6) -> None:
    class P(pickle.Pickler):
        def reducer_override(self, obj):
            if isinstance(obj, PersistentObject):
                meta = {"type": "class", "version": version, "module_src": "", "class_name": obj.class_name,
                        "state": obj.state}
                return persistence._reconstruct_persistent_obj, (meta,)
            if type(obj).__name__ == "_EasyDict":
                return persistence.EasyDict, (), None, None, iter(obj.items())
            return NotImplemented

    with open(path, "wb") as f:
        P(f, protocol=4).dump(snapshot)


def _snapshot(ada_fixture) -> dict:
    snap = read_network_pickle(ada_fixture / "network-snapshot.pkl")
    snap["training_set_kwargs"] = dict(snap["training_set_kwargs"])
    return snap


def test_rewritten_snapshot_still_loads(tmp_path, ada_fixture, nvidia_globals, ada):
    """The writer below makes pickles the reader takes: the failures in the next tests are the defects."""
    p = tmp_path / "copy.pkl"
    write_snapshot(p, _snapshot(ada_fixture), nvidia_globals)
    G2 = anycost.load_generator(p)
    w = ada[0].styles_from_seed(1)
    with torch.no_grad():
        assert torch.equal(G2.synthesize(w), ada[0].synthesize(w))


class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_code_in_a_pickle_never_runs(tmp_path, ada_fixture, nvidia_globals, monkeypatch):
    marker = tmp_path / "pwned"
    # at the top level
    top = tmp_path / "evil.pkl"
    top.write_bytes(pickle.dumps({"G_ema": _Evil(marker)}, protocol=4))
    with pytest.raises(ModelFileError, match=r"refused.*(posix|os)\.system"):
        anycost.load_generator(top)
    # deep inside an otherwise genuine snapshot
    snap = _snapshot(ada_fixture)
    snap["G_ema"].modules["synthesis"].state["evil"] = _Evil(marker)
    deep = tmp_path / "deep.pkl"
    write_snapshot(deep, snap, nvidia_globals)
    with pytest.raises(ModelFileError, match=r"system"):
        anycost.load_generator(deep)
    # an unknown module's class, and the CLI path writes nothing
    evil = types.ModuleType("evil.modules")
    Klass = type("Klass", (), {"__module__": "evil.modules"})
    evil.Klass = Klass
    monkeypatch.setitem(sys.modules, "evil", types.ModuleType("evil"))
    monkeypatch.setitem(sys.modules, "evil.modules", evil)
    unknown = tmp_path / "unknown.pkl"
    unknown.write_bytes(pickle.dumps({"G_ema": Klass()}, protocol=4))
    with pytest.raises(ModelFileError, match=r"evil\.modules\.Klass"):
        anycost.load_generator(unknown)
    out = tmp_path / "out.safetensors"
    r = subprocess.run([sys.executable, "-m", "anycost", "convert", str(deep), "-o", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "refused" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not out.exists() and not marker.exists()
    assert os.system("true") == 0  # the marker's absence is not a broken os.system


def test_code_in_a_nested_storage_blob_never_runs(tmp_path, ada_fixture, nvidia_globals):
    """A storage blob is a torch.save inside the pickle; torch's data-only loader must refuse code there."""
    marker = tmp_path / "pwned"
    import io

    buf = io.BytesIO()
    torch.save(_Evil(marker), buf, _use_new_zipfile_serialization=False)

    class Blob:
        def __reduce__(self):
            return torch.storage._load_from_bytes, (buf.getvalue(),)

    p = tmp_path / "blob.pkl"
    p.write_bytes(pickle.dumps({"G_ema": Blob()}, protocol=4))
    with pytest.raises(ModelFileError, match="storage blob"):
        anycost.load_generator(p)
    assert not marker.exists()


def _one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text
    return text


def test_bad_pickles_get_one_clear_line(tmp_path, ada_fixture, nvidia_globals):
    good = (ada_fixture / "network-snapshot.pkl").read_bytes()
    cases = {}
    (tmp_path / "truncated.pkl").write_bytes(good[: len(good) // 2])
    cases["truncated.pkl"] = "not a readable network pickle"
    (tmp_path / "empty.pkl").write_bytes(b"")
    cases["empty.pkl"] = "empty"
    snap = _snapshot(ada_fixture)
    write_snapshot(tmp_path / "future.pkl", snap, nvidia_globals, version=7)
    cases["future.pkl"] = "newer version"
    snap = _snapshot(ada_fixture)
    snap["G_ema"].state["c_dim"] = 10
    write_snapshot(tmp_path / "conditional.pkl", snap, nvidia_globals)
    cases["conditional.pkl"] = "conditional"
    snap = _snapshot(ada_fixture)
    syn = snap["G_ema"].modules["synthesis"]
    syn.state["_modules"] = collections.OrderedDict(
        [("input", PersistentObject("SynthesisInput", 6, {"_modules": {}, "_parameters": {}, "_buffers": {}}))])
    write_snapshot(tmp_path / "sg3.pkl", snap, nvidia_globals)
    cases["sg3.pkl"] = "StyleGAN3"
    snap = _snapshot(ada_fixture)
    snap["G_ema"].modules["synthesis"].modules["b8"].state["architecture"] = "resnet"
    write_snapshot(tmp_path / "resnet.pkl", snap, nvidia_globals)
    cases["resnet.pkl"] = "'resnet' architecture"
    snap = _snapshot(ada_fixture)
    snap["G_ema"].modules["synthesis"].modules["b8"].modules["conv0"].state["_parameters"]["weight"][0, 0, 0, 0] = \
        float("nan")
    write_snapshot(tmp_path / "nan.pkl", snap, nvidia_globals)
    cases["nan.pkl"] = "non-finite"
    snap = _snapshot(ada_fixture)
    del snap["G_ema"]
    write_snapshot(tmp_path / "no_g_ema.pkl", snap, nvidia_globals)
    cases["no_g_ema.pkl"] = "no G_ema"
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2, 3], protocol=4))
    cases["list.pkl"] = "not a network snapshot"
    for name, words in cases.items():
        with pytest.raises(ModelFileError) as e:
            open_model(tmp_path / name).generator()
        assert words in _one_line(e), (name, str(e.value))
        out = tmp_path / f"{name}.safetensors"
        r = subprocess.run([sys.executable, "-m", "anycost", "convert", str(tmp_path / name), "-o", str(out)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, (name, r.stderr)
        assert not out.exists() and not list(tmp_path.glob(".*tmp")), name


def test_conv_clamp_is_read_and_applied(tmp_path, ada_fixture, nvidia_globals, ada):
    snap = _snapshot(ada_fixture)
    for _, m in snap["G_ema"].walk():
        if m.class_name in ("SynthesisLayer", "ToRGBLayer"):
            m.state["conv_clamp"] = 0.5
    p = tmp_path / "clamped.pkl"
    write_snapshot(p, snap, nvidia_globals)
    G = anycost.load_generator(p)
    assert G.config.conv_clamp == 0.5
    w = G.styles_from_seed(3)
    with torch.no_grad():
        ref, fast = G.synthesize(w, impl="reference"), G.synthesize(w, impl="fast")
        plain = ada[0].synthesize(w, impl="reference")
    assert (ref - fast).abs().max() <= TOL
    assert (ref - plain).abs().max() > 1e-2  # the clamp bites at 0.5


# ---------------------------------------------------------------------------- rosinality checkpoints
def _rosinality_d(D) -> dict:
    """The project's discriminator state dict under rosinality's names."""
    out = {}
    top = D.resolution
    for k, v in D.state_dict().items():
        if k.startswith("from_rgbs."):
            out["convs.0." + k.split(".", 2)[2]] = v
        elif k.startswith("blocks."):
            _, r, rest = k.split(".", 2)
            out[f"convs.{top.bit_length() - int(r).bit_length() + 1}.{rest}"] = v
        else:
            out[k] = v
    return out


class TrainArgs:
    """A training script's own options class, as some forks save it: code, not data."""

    size = 32


def test_rosinality_checkpoint_with_args_namespace(tmp_path):
    from anycost.training.discriminator import Discriminator

    torch.manual_seed(0)
    G = Generator(resolution=32, style_dim=32, n_mlp=2, channel_multiplier=1, channel_max=32).eval()
    D = Discriminator(32, channel_multiplier=1, channel_max=32)
    latent_avg = torch.randn(32)
    args = argparse.Namespace(size=32, channel_multiplier=1, iter=800000, path="ffhq-lmdb", r1=10.0, augment=False)
    ckpt = {"g": G.state_dict(), "d": _rosinality_d(D), "g_ema": G.state_dict(), "g_optim": {"state": {}},
            "d_optim": {"state": {}}, "args": args, "latent_avg": latent_avg}
    p = tmp_path / "550000.pt"
    torch.save(ckpt, p)
    mf = open_model(p)
    src = mf.info["source"]
    assert src["format"] == "rosinality checkpoint" and src["discriminator"] == "kept" and src["w_avg"]
    assert src["args"]["iter"] == 800000 and len(src["sha256"]) == 64
    assert mf.info["channel_configs"] == "full"
    G2 = mf.generator()
    assert torch.equal(G2.w_avg, latent_avg)
    w = G.styles_from_seed(2)
    with torch.no_grad():
        assert torch.equal(G2.synthesize(w), G.synthesize(w))
        x = torch.randn(4, 3, 32, 32)
        assert torch.allclose(mf.discriminator()(x), D(x), atol=1e-5)
    # any other class in 'args' is still refused
    ckpt["args"] = TrainArgs()
    torch.save(ckpt, p)
    with pytest.raises(ModelFileError, match="refused"):
        open_model(p)


def test_official_checkpoint_is_not_taken_for_rosinality(official_fixture):
    mf = open_model(official_fixture / "generator.pt")
    assert mf.info["source"]["format"] == "official Anycost checkpoint"
    assert "channel_configs" not in mf.info and "discriminator" not in mf.components


# ---------------------------------------------------------------------------- from a pickle to images and edits
def _cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "anycost", *args], capture_output=True, text=True, timeout=300)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def _uint8(img: torch.Tensor) -> np.ndarray:
    return ((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()


def test_convert_then_generate_gives_the_fixture_images(tmp_path, ada_fixture):
    out = tmp_path / "snapshot.safetensors"
    _cli("convert", str(ada_fixture / "network-snapshot.pkl"), "-o", str(out))
    mf = read_model(out)
    src = mf.info["source"]
    assert src["format"] == "stylegan2-ada-pytorch network pickle" and src["file"] == "network-snapshot.pkl"
    assert src["resolution"] == 32 and src["w_avg"] is True and src["discriminator"] == "kept"
    assert src["sha256"] == hashlib.sha256((ada_fixture / "network-snapshot.pkl").read_bytes()).hexdigest()
    assert "discriminator" in mf.components and mf.info["channel_configs"] == "full"
    expected = torch.load(ada_fixture / "expected.pt", weights_only=True)
    np.save(tmp_path / "z.npy", expected["z"].numpy())
    for i, case in enumerate(expected["cases"]):
        if case["input"] == "z":
            args = ["--z", str(tmp_path / "z.npy"), "--truncation", str(case["truncation_psi"])]
            if case["truncation_cutoff"] is not None:
                args += ["--truncation-cutoff", str(case["truncation_cutoff"])]
        else:
            np.save(tmp_path / "ws.npy", case["ws"].numpy())
            args = ["--w", str(tmp_path / "ws.npy")]
        _cli("generate", "--model", str(out), *args, "-o", str(tmp_path / f"case{i}.png"))
        for k, img in enumerate(case["out"]):
            got = np.asarray(Image.open(tmp_path / f"case{i}-{k:06d}.png").convert("RGB")).astype(int)
            assert np.abs(got - _uint8(img).astype(int)).max() <= 1, (i, k)


def test_models_lists_where_a_model_came_from(tmp_path, ada_fixture):
    models = tmp_path / "models"
    models.mkdir()
    _cli("convert", str(ada_fixture / "network-snapshot.pkl"), "-o", str(models / "mine.safetensors"))
    (models / "ffhq.pkl").write_bytes((ada_fixture / "network-snapshot.pkl").read_bytes())
    env = {**os.environ, "ANYCOST_MODELS_DIR": str(models)}
    r = subprocess.run([sys.executable, "-m", "anycost", "models"], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "from stylegan2-ada-pytorch network pickle network-snapshot.pkl (sha256" in r.stdout
    assert "not trained for consistency" in r.stdout
    assert "ffhq" in r.stdout and "network pickle (read as data)" in r.stdout


def test_a_network_pickle_edits_directly_with_approximate_previews(tmp_path, ada_fixture):
    from anycost.editing.session import Editor
    from anycost.service.server import Server  # noqa: F401 - the service's welcome reads the same notices

    ed = Editor(ada_fixture / "network-snapshot.pkl", use_lpips=False)
    assert ed.space_kind == "full" and ed.preview_ratios == (1.0,)
    assert any("not trained for consistency" in n for n in ed.notices)
    assert ed.preview_cost().channels is None  # resolution-reduced, never a channel slice
    ed.load_directions(_sefa(tmp_path, ed.generator))
    face = (np.random.default_rng(0).random((48, 48, 3)) * 255).astype(np.uint8)
    s = ed.open(face, align=False)
    s.set(**{next(iter(ed.directions)): 1.0})
    assert s.render("preview").shape[-1] in ed.generator.resolutions
    assert s.result().shape[:2] == (48, 48)


def _sefa(tmp_path, G):
    from anycost.directions import save_directions_file, sefa_directions

    return save_directions_file(tmp_path / "sefa.safetensors", sefa_directions(G, k=2))


def test_service_says_previews_are_approximate(tmp_path, ada_fixture):
    from service_support import Backend

    from anycost.io.checkpoint import load_generator
    from anycost_client import Client

    dirs = _sefa(tmp_path, load_generator(ada_fixture / "network-snapshot.pkl"))
    backend = Backend(tmp_path, ada_fixture / "network-snapshot.pkl", dirs)
    try:
        ready = backend.events("model_ready")[0]
        assert any("not trained for consistency" in n for n in ready["notices"])
        with Client.connect(backend.conn) as client:
            model = client.welcome["models"][0]
            assert any("not trained for consistency" in n for n in model["notices"])
            assert all(level.endswith(":1") for level in client.welcome["costs"]["levels"])
    finally:
        backend.stop()
