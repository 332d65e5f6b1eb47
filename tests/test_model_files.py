"""Model files: the project's format, the official layout, conversion, and every kind of bad file."""

from __future__ import annotations

import pickle
import struct

import pytest
import torch

import anycost
from anycost.errors import ModelFileError
from anycost.io.checkpoint import load_generator
from anycost.io.modelfile import Component, read_model, save_model
from anycost.models.generator import Generator, GeneratorConfig


def _small(seed: int = 0, **kw) -> Generator:
    torch.manual_seed(seed)
    cfg = dict(resolution=32, style_dim=16, n_mlp=2, channel_multiplier=1, channel_max=32)
    cfg.update(kw)
    return Generator(**cfg).eval()


def test_round_trip_keeps_numbers_and_metadata(tmp_path):
    G = _small(sle=[(8, 32)])
    E = anycost.Encoder(n_style=G.n_style, style_dim=16, depth=10, width=8, input_size=32)
    extra = {"directions": Component({"smile": {"layers": [0, 1]}}, {"smile": torch.randn(16)})}
    path = save_model(tmp_path / "m.safetensors", generator=G, encoder=E, components=extra,
                      info={"name": "tiny", "provenance": {"seed": 3}})
    mf = read_model(path)
    assert mf.info["name"] == "tiny" and mf.info["resolutions"] == [8, 16, 32]
    assert mf.info["full_channels"] == G.full_channels
    assert set(mf.components) == {"generator", "encoder", "directions"}
    assert torch.equal(mf.components["directions"].tensors["smile"], extra["directions"].tensors["smile"])
    G2 = mf.generator()
    assert G2.config == G.config
    w = G.styles_from_seed(1)
    with torch.no_grad():
        assert torch.equal(G.synthesize(w, channels=0.5), G2.synthesize(w, channels=0.5))
    E2 = mf.encoder()
    assert E2 is not None and E2.config == E.config
    assert not list(tmp_path.glob(".*tmp")), "temporary file left behind"


def test_official_layout_and_converter(tmp_path, official_fixture):
    from anycost.cli import main

    out = tmp_path / "converted.safetensors"
    assert main(["convert", str(official_fixture / "generator.pt"), "-o", str(out)]) == 0
    a = load_generator(official_fixture / "generator.pt")
    b = load_generator(out)
    w = a.styles_from_seed(0)
    with torch.no_grad():
        assert torch.equal(a.synthesize(w, channels=0.25), b.synthesize(w, channels=0.25))
    assert read_model(out).info["source"]["file"] == "generator.pt"


def test_bare_state_dict_accepted(tmp_path):
    G = _small()
    p = tmp_path / "bare.pt"
    torch.save(G.state_dict(), p)
    assert load_generator(p).full_channels == G.full_channels


def test_not_a_checkpoint(tmp_path):
    p = tmp_path / "notes.pt"
    p.write_text("hello, this is text")
    with pytest.raises(ModelFileError, match="not a readable PyTorch checkpoint"):
        load_generator(p)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ModelFileError, match="empty"):
        load_generator(empty)
    with pytest.raises(ModelFileError, match="not found"):
        load_generator(tmp_path / "missing.pt")


def test_truncated_files(tmp_path):
    G = _small()
    p = tmp_path / "g.pt"
    torch.save({"g_ema": G.state_dict()}, p)
    data = p.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        load_generator(cut)
    s = save_model(tmp_path / "g.safetensors", generator=G)
    data = s.read_bytes()
    cut2 = tmp_path / "cut.safetensors"
    cut2.write_bytes(data[: len(data) - 100])
    with pytest.raises(ModelFileError, match="damaged or truncated"):
        load_generator(cut2)


def test_pickle_with_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    p = tmp_path / "evil.pt"
    with open(p, "wb") as f:
        pickle.dump({"g_ema": Evil()}, f)
    with pytest.raises(ModelFileError, match="refused"):
        load_generator(p)
    assert not marker.exists()
    p2 = tmp_path / "evil_zip.pt"
    torch.save({"g_ema": {"x": torch.zeros(1)}, "obj": Evil()}, p2)
    marker.unlink(missing_ok=True)
    with pytest.raises(ModelFileError, match="refused"):
        load_generator(p2)
    assert not marker.exists()


def test_wrong_architecture_names_keys_and_shapes(tmp_path):
    G = _small()
    sd = G.state_dict()
    sd.pop("convs.1.conv.weight")
    sd["convs.0.conv.modulation.bias"] = torch.zeros(5)
    sd["extra.thing"] = torch.zeros(1)
    p = tmp_path / "broken.pt"
    torch.save({"g_ema": sd}, p)
    with pytest.raises(ModelFileError) as ei:
        load_generator(p)
    msg = str(ei.value)
    assert "convs.1.conv.weight" in msg and "missing" in msg
    assert "extra.thing" in msg and "unexpected" in msg
    assert "convs.0.conv.modulation.bias" in msg and "shape" in msg


def test_expected_architecture_is_enforced(tmp_path):
    G = _small()
    p = tmp_path / "small.pt"
    torch.save({"g_ema": G.state_dict()}, p)
    expect = GeneratorConfig(resolution=1024)
    with pytest.raises(ModelFileError, match="does not fit"):
        load_generator(p, expect=expect)
    s = save_model(tmp_path / "small.safetensors", generator=G)
    with pytest.raises(ModelFileError, match="not the expected"):
        load_generator(s, expect=expect)


def test_foreign_safetensors_and_bad_metadata(tmp_path):
    from safetensors.torch import save_file

    p = tmp_path / "foreign.safetensors"
    save_file({"a": torch.zeros(2)}, p)
    with pytest.raises(ModelFileError, match="not an Anycost model"):
        load_generator(p)
    p2 = tmp_path / "future.safetensors"
    save_file({"generator.a": torch.zeros(2)}, p2,
              metadata={"anycost.format": "anycost-model", "anycost.format_version": "99"})
    with pytest.raises(ModelFileError, match="version 99"):
        load_generator(p2)
    # a header that claims more bytes than the file has
    p3 = tmp_path / "liar.safetensors"
    p3.write_bytes(struct.pack("<Q", 50) + b'{"a": {"dtype": "F32"')
    with pytest.raises(ModelFileError):
        load_generator(p3)


def test_non_finite_weights_refused(tmp_path):
    G = _small()
    sd = G.state_dict()
    sd["style.1.weight"][0, 0] = float("nan")
    p = tmp_path / "nan.pt"
    torch.save({"g_ema": sd}, p)
    with pytest.raises(ModelFileError, match="non-finite"):
        load_generator(p)


def test_half_precision_storage(tmp_path):
    G = _small()
    full = save_model(tmp_path / "f.safetensors", generator=G)
    half = save_model(tmp_path / "h.safetensors", generator=G, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    mf = read_model(half)
    assert mf.info["stored_dtype"] == "float16"
    G2 = mf.generator()
    assert all(p.dtype == torch.float32 for p in G2.parameters())
    w = G.styles_from_seed(0)
    with torch.no_grad():
        a, b = G.synthesize(w), G2.synthesize(w)
    assert (a - b).abs().max() < 0.05 and not torch.equal(a, b)


def test_written_files_get_normal_permissions(tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        p = save_model(tmp_path / "m.safetensors", generator=_small())
    finally:
        os.umask(umask)
    assert p.stat().st_mode & 0o777 == 0o644
