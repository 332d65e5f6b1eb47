"""Hostile model files: metadata that asks for huge networks, deep or huge JSON, wrong types. Each is
refused with one ModelFileError line before anything large is allocated or parsed.

The files are loaded in a child process whose data segment is capped at 1 GiB: a loader that believed
the metadata would fail there with an allocation error (or be killed) instead of refusing the file."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from model_support import tiny_generator
from safetensors.torch import save_file

from anycost.io.modelfile import FORMAT_NAME, FORMAT_VERSION, read_model, save_model
from anycost.models.encoder import Encoder, EncoderConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
MEMORY_CAP = 1 << 30

LOADER = r"""
import json, sys
from anycost.errors import ModelFileError
from anycost.io.modelfile import read_model
for path in sys.argv[1:]:
    try:
        mf = read_model(path)
        mf.generator()
        mf.encoder()
        mf.discriminator()
        print(json.dumps({"path": path, "loaded": True}), flush=True)
    except ModelFileError as e:
        print(json.dumps({"path": path, "error": str(e)}), flush=True)
    except BaseException as e:
        print(json.dumps({"path": path, "crash": f"{type(e).__name__}: {e}"[:300]}), flush=True)
"""


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_DATA, (MEMORY_CAP, MEMORY_CAP))


@pytest.fixture(scope="module")
def parts():
    from anycost.training.discriminator import Discriminator

    G = tiny_generator(16)
    E = Encoder(EncoderConfig(n_style=G.n_style, style_dim=G.style_dim, depth=10, width=8, input_size=32))
    D = Discriminator(16, channel_multiplier=1, channel_max=32)
    tensors = {f"generator.{k}": v.contiguous().clone() for k, v in G.state_dict().items()}
    tensors.update({f"encoder.{k}": v.contiguous().clone() for k, v in E.state_dict().items()})
    tensors.update({f"discriminator.{k}": v.contiguous().clone() for k, v in D.state_dict().items()})
    return {"generator": G.config.to_dict(), "encoder": E.config.to_dict(),
            "discriminator": {"resolution": 16, "channel_multiplier": 1, "channel_max": 32}}, tensors


def _write(path, tensors, components, info=None, raw_components: str | None = None, raw_info: str | None = None):
    meta = {"anycost.format": FORMAT_NAME, "anycost.format_version": FORMAT_VERSION,
            "anycost.components": raw_components if raw_components is not None else json.dumps(components),
            "anycost.info": raw_info if raw_info is not None else json.dumps(info or {"name": "hostile"})}
    save_file(tensors, str(path), metadata=meta)
    return path


def _with(components: dict, kind: str, **changes) -> dict:
    return {**components, kind: {**components[kind], **changes}}


def _load_capped(paths) -> dict[str, dict]:
    out = subprocess.run([sys.executable, "-c", LOADER, *map(str, paths)], capture_output=True, text=True,
                         timeout=300, preexec_fn=_cap_memory, cwd=REPO_ROOT)
    results = {}
    for line in out.stdout.splitlines():
        r = json.loads(line)
        results[r.pop("path")] = r
    assert len(results) == len(paths), f"the loader died (exit {out.returncode}): {out.stderr[-2000:]}"
    return results


def test_hostile_metadata_is_refused_in_one_line_before_allocating(tmp_path, parts):
    components, tensors = parts
    deep = "[" * 200_000 + "]" * 200_000
    cases = {
        # (file, words the one-line refusal must contain)
        "style_dim": (_write(tmp_path / "style_dim.safetensors", tensors, _with(components, "generator",
                                                                                style_dim=60000)), "style_dim"),
        "n_mlp": (_write(tmp_path / "n_mlp.safetensors", tensors, _with(components, "generator", n_mlp=2_000_000)),
                  "n_mlp"),
        "channel_max_float": (_write(tmp_path / "cmax_f.safetensors", tensors,
                                     _with(components, "generator", channel_max=1e6)), "channel_max"),
        "channel_max": (_write(tmp_path / "cmax.safetensors", tensors,
                               _with(components, "generator", channel_max=1_000_000)), "channel_max"),
        # every setting within its bounds, but together 10+ GB of weights the 600 KB file does not hold
        "in_bounds_but_not_the_tensors": (_write(tmp_path / "big.safetensors", tensors, _with(
            components, "generator", resolution=1024, style_dim=2048, n_mlp=32, channel_max=4096,
            channel_multiplier=64)), "does not fit the stored tensors"),
        "explicit_channels": (_write(tmp_path / "chans.safetensors", tensors, _with(
            components, "generator", channels={"4": 4096, "8": 4096, "16": 4096})), "does not fit the stored tensors"),
        "deep_json": (_write(tmp_path / "deep.safetensors", tensors, {}, raw_components=deep), "nests"),
        "components_list": (_write(tmp_path / "list.safetensors", tensors, {}, raw_components=json.dumps(
            [components["generator"]])), "JSON object"),
        "component_not_object": (_write(tmp_path / "str.safetensors", tensors, {}, raw_components=json.dumps(
            {"generator": "big", "encoder": components["encoder"]})), "JSON object"),
        "info_list": (_write(tmp_path / "info.safetensors", tensors, components, raw_info="[1, 2]"), "anycost.info"),
        "bool_resolution": (_write(tmp_path / "bool.safetensors", tensors, _with(components, "generator",
                                                                                 resolution=True)), "resolution"),
        "unknown_setting": (_write(tmp_path / "unknown.safetensors", tensors, _with(components, "generator",
                                                                                    evil=1)), "unknown"),
        "encoder_width": (_write(tmp_path / "enc_width.safetensors", tensors, _with(components, "encoder",
                                                                                    width=100_000)), "width"),
        "encoder_depth_in_bounds": (_write(tmp_path / "enc_depth.safetensors", tensors, _with(components, "encoder",
                                                                                             depth=50)), "encoder"),
        "conv_clamp": (_write(tmp_path / "clamp.safetensors", tensors, _with(components, "generator",
                                                                             conv_clamp="big")), "conv_clamp"),
        "discriminator_resolution": (_write(tmp_path / "d_res.safetensors", tensors, _with(
            components, "discriminator", resolution=2 ** 30)), "resolution"),
        "discriminator_in_bounds_but_not_the_tensors": (_write(tmp_path / "d_big.safetensors", tensors, _with(
            components, "discriminator", resolution=1024, channel_max=4096, channel_multiplier=64)),
            "does not fit the stored tensors"),
    }
    results = _load_capped([p for p, _ in cases.values()])
    for name, (path, words) in cases.items():
        r = results[str(path)]
        assert "error" in r, f"{name}: {r}"
        assert "\n" not in r["error"] and str(path) in r["error"], f"{name}: {r['error']!r}"
        assert words in r["error"], f"{name}: {r['error']!r}"


def test_a_huge_header_is_refused_before_it_is_parsed(tmp_path, parts):
    components, tensors = parts
    path = _write(tmp_path / "huge.safetensors", tensors, components,
                  raw_info=json.dumps({"name": "x", "notes": "x" * (12 * 1024 * 1024)}))
    t0 = time.perf_counter()
    with pytest.raises(Exception) as e:
        read_model(path)
    assert type(e.value).__name__ == "ModelFileError" and "header" in str(e.value) and "\n" not in str(e.value)
    assert time.perf_counter() - t0 < 30  # generous: the refusal reads 8 bytes


def test_valid_files_still_load_and_bounds_are_generous_for_real_models(tmp_path):
    G = tiny_generator(32)
    path = save_model(tmp_path / "ok.safetensors", generator=G)
    G2 = read_model(path).generator()
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), G2.state_dict().values(), strict=True))
    from anycost.io.modelfile import Component
    from anycost.training.discriminator import Discriminator

    D = Discriminator(32, channel_multiplier=1, channel_max=32, input_resolutions=[32])
    dpath = save_model(tmp_path / "d.safetensors", generator=G, components={"discriminator": Component(
        {"resolution": 32, "channel_multiplier": 1, "channel_max": 32, "input_resolutions": [32]},
        {k: v.clone() for k, v in D.state_dict().items()})})
    D2 = read_model(dpath).discriminator()
    assert all(torch.equal(a, b) for a, b in zip(D.state_dict().values(), D2.state_dict().values(), strict=True))
    from anycost.io.bounds import check_generator_settings
    from anycost.models.generator import GeneratorConfig

    official = GeneratorConfig().to_dict()  # the published 1024-px config-f generator
    check_generator_settings(official, set(GeneratorConfig.__dataclass_fields__))
