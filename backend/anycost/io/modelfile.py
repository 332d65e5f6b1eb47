"""The project's own model format: one ``.safetensors`` file per model.

Tensors are namespaced by component (``generator.style.1.weight``, ``encoder.fc.weight``,
``directions.smile``, …). The safetensors header metadata carries JSON:

- ``anycost.format`` — ``"anycost-model"``; ``anycost.format_version`` — ``"1"``;
- ``anycost.components`` — ``{component: config}`` (architecture settings per component);
- ``anycost.info`` — free-form model information (name, resolutions, channel configs,
  provenance, licence, …).

Nothing in the file is executable; loading never unpickles.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import ModelFileError
from ..fsutil import atomic_write
from ..models.encoder import Encoder, EncoderConfig
from ..models.generator import Generator, GeneratorConfig
from . import bounds

FORMAT_NAME = "anycost-model"
FORMAT_VERSION = "1"
SAFETENSORS_SUFFIX = ".safetensors"


@dataclass
class Component:
    """One part of a model: its settings and its tensors (keys without the component prefix)."""

    config: dict = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)


def is_safetensors(path: str | os.PathLike) -> bool:
    """True when the file starts like a safetensors file (u64 header size, then '{')."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 2 <= n < 100_000_000 and head[8:9] == b"{"


def _state_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    # safetensors refuses shared or non-contiguous storage: store private contiguous copies.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def save_model(path: str | os.PathLike, *, generator: Generator | None = None, encoder: Encoder | None = None,
               components: dict[str, Component] | None = None, info: dict | None = None,
               half: bool = False) -> Path:
    """Write a model file atomically (a temporary file in the same folder, then rename).

    ``half`` stores floating-point tensors as float16 (half the size; they load back as float32),
    for shipped models where size matters more than the last bits.
    """
    from safetensors.torch import save_file

    comps: dict[str, Component] = dict(components or {})
    if generator is not None:
        comps["generator"] = Component(generator.config.to_dict(), _state_tensors(generator))
    if encoder is not None:
        comps["encoder"] = Component(encoder.config.to_dict(), _state_tensors(encoder))
    if not comps:
        raise ValueError("a model file needs at least one component")
    tensors: dict[str, torch.Tensor] = {}
    configs: dict[str, dict] = {}
    for name, comp in comps.items():
        if "." in name or not name:
            raise ValueError(f"component names may not contain '.': {name!r}")
        configs[name] = comp.config
        for key, t in comp.tensors.items():
            t = t.detach().to("cpu")
            if half and t.is_floating_point():
                t = t.to(torch.float16)
            tensors[f"{name}.{key}"] = t.contiguous()
    info = dict(info or {})
    if half:
        info["stored_dtype"] = "float16"
    if generator is not None:
        info.setdefault("resolutions", generator.resolutions)
        info.setdefault("full_channels", generator.full_channels)
        info.setdefault("n_style", generator.n_style)
        info.setdefault("style_dim", generator.style_dim)
    meta = {
        "anycost.format": FORMAT_NAME,
        "anycost.format_version": FORMAT_VERSION,
        "anycost.components": json.dumps(configs, sort_keys=True),
        "anycost.info": json.dumps(info, sort_keys=True),
    }
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta), suffix=".tmp")


@dataclass
class ModelFile:
    """A model file read into memory."""

    path: Path
    info: dict
    components: dict[str, Component]

    def generator(self, device: str | torch.device = "cpu") -> Generator:
        comp = self.components.get("generator")
        if comp is None:
            raise ModelFileError(f"{self.path} holds no generator (components: {sorted(self.components)})")
        cfg = validated_config("generator", comp.config, comp.tensors, self.path)
        G = build_and_load(_build(Generator, cfg, self.path, "generator"), comp.tensors, f"{self.path} (generator)")
        return G.to(device).eval()

    def discriminator(self, device: str | torch.device = "cpu") -> torch.nn.Module | None:
        """The discriminator kept from the source model (StyleGAN2-ADA ``D``, rosinality ``d``), or None."""
        comp = self.components.get("discriminator")
        if comp is None:
            return None
        from ..models.channels import resolution_channels
        from ..training.discriminator import discriminator_from_config

        cfg = comp.config
        try:  # bounded and checked against the stored shapes before anything is built, like the generator
            bounds.check_discriminator_settings(cfg, {*bounds.DISCRIMINATOR_BOUNDS, "channels", "input_resolutions"})
            res = cfg["resolution"]
            ch = ({int(k): v for k, v in cfg["channels"].items()} if cfg.get("channels") else
                  resolution_channels(res, cfg.get("channel_multiplier", 2), cfg.get("channel_max", 512)))
            inputs = cfg.get("input_resolutions") or [r for r in ch if r >= 8]
            bounds.check_discriminator_shapes(res, ch, inputs, {k: tuple(t.shape) for k, t in comp.tensors.items()})
            D = discriminator_from_config(cfg)
        except (TypeError, ValueError, KeyError, OverflowError) as e:
            raise ModelFileError(f"{self.path}: discriminator settings are invalid: {_one_line(e)}") from e
        return build_and_load(D, comp.tensors, f"{self.path} (discriminator)").to(device).eval()

    def encoder(self, device: str | torch.device = "cpu") -> Encoder | None:
        comp = self.components.get("encoder")
        if comp is None:
            return None
        cfg = validated_config("encoder", comp.config, comp.tensors, self.path)
        E = build_and_load(_build(Encoder, cfg, self.path, "encoder"), comp.tensors, f"{self.path} (encoder)")
        return E.to(device).eval()


def read_header_info(path: str | os.PathLike) -> dict | None:
    """A project model file's ``info`` from its header alone (no tensors read); None for other files."""
    from safetensors import SafetensorError, safe_open

    if not is_safetensors(path):
        return None
    try:
        _check_header_size(path)
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        info = bounds.parse_json(meta.get("anycost.info", "null"), "info") \
            if meta.get("anycost.format") == FORMAT_NAME else None
    except (SafetensorError, OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def read_header_components(path: str | os.PathLike) -> dict:
    """A project model file's component settings from its header alone; {} for other files."""
    from safetensors import SafetensorError, safe_open

    if not is_safetensors(path):
        return {}
    try:
        _check_header_size(path)
        with safe_open(str(path), framework="pt") as f:
            comps = bounds.parse_json((f.metadata() or {}).get("anycost.components", "{}"), "components")
    except (SafetensorError, OSError, ValueError):
        return {}
    return comps if isinstance(comps, dict) else {}


def _check_header_size(path: str | os.PathLike) -> None:
    """ValueError when the safetensors header is larger than model files have (read before it is parsed)."""
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) == 8:
        bounds.check_header_size(int.from_bytes(head, "little"))


def validated_config(kind: str, settings: object, tensors: dict[str, torch.Tensor],
                     path: str | os.PathLike = "model") -> GeneratorConfig | EncoderConfig:
    """The ``kind`` ('generator' or 'encoder') settings of a model file as a config, checked against the
    bounds of ``io/bounds.py`` and against the shapes of the stored ``tensors`` before any module exists,
    so a small file cannot make the loader allocate what its settings claim. Problems: ModelFileError."""
    shapes = {k: tuple(t.shape) for k, t in tensors.items()}
    try:
        if kind == "generator":
            bounds.check_generator_settings(settings, set(GeneratorConfig.__dataclass_fields__))
            gcfg = GeneratorConfig.from_dict(settings)  # type: ignore[arg-type]
            bounds.check_generator_shapes(gcfg.resolution, gcfg.style_dim, gcfg.n_mlp, gcfg.resolution_channels(),
                                          shapes)
            return gcfg
        bounds.check_encoder_settings(settings, set(EncoderConfig.__dataclass_fields__))
        ecfg = EncoderConfig.from_dict(settings)  # type: ignore[arg-type]
        bounds.check_encoder_shapes(ecfg.n_style, ecfg.style_dim, ecfg.depth, ecfg.width, shapes)
        return ecfg
    except (TypeError, ValueError, KeyError, OverflowError) as e:
        raise ModelFileError(f"{path}: {kind} settings are invalid: {_one_line(e)}") from e


def _build(cls: type, cfg, path: str | os.PathLike, kind: str):
    try:
        return cls(cfg)
    except (TypeError, ValueError, KeyError) as e:
        raise ModelFileError(f"{path}: {kind} settings are invalid: {_one_line(e)}") from e


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if text else type(e).__name__


def read_safetensors(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Header metadata and tensors of a safetensors file; a damaged file is a ModelFileError."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        _check_header_size(path)
    except OSError as e:
        raise ModelFileError(f"{path} cannot be read: {e.strerror or e}") from e
    except ValueError as e:
        raise ModelFileError(f"{path}: {e}") from e
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return meta, load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ModelFileError(f"{path} is damaged or truncated: {_one_line(e)}") from e


def read_model(path: str | os.PathLike) -> ModelFile:
    """Read a project model file; every failure is a ModelFileError that names the file."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    if not is_safetensors(path):
        raise ModelFileError(f"{path} is not a model file in the project's format (.safetensors)")
    meta, tensors = read_safetensors(path)
    if meta.get("anycost.format") != FORMAT_NAME:
        raise ModelFileError(f"{path} is a safetensors file but not an Anycost model (no anycost metadata)")
    version = meta.get("anycost.format_version")
    if version != FORMAT_VERSION:
        raise ModelFileError(f"{path} uses model format version {version}; this build reads {FORMAT_VERSION}")
    try:
        configs = bounds.parse_json(meta.get("anycost.components", "{}"), "the metadata 'anycost.components'")
        info = bounds.parse_json(meta.get("anycost.info", "{}"), "the metadata 'anycost.info'")
    except ValueError as e:
        raise ModelFileError(f"{path}: {e}") from e
    if not isinstance(configs, dict) or not all(isinstance(c, dict) for c in configs.values()):
        raise ModelFileError(f"{path}: the metadata 'anycost.components' must be a JSON object of objects "
                             "(component name → settings)")
    if not isinstance(info, dict):
        raise ModelFileError(f"{path}: the metadata 'anycost.info' must be a JSON object")
    comps = {name: Component(cfg, {}) for name, cfg in configs.items()}
    for key, t in tensors.items():
        if t.dtype in (torch.float16, torch.bfloat16):
            t = t.float()  # stored small, computed in float32
        name, _, sub = key.partition(".")
        if name not in comps or not sub:
            raise ModelFileError(f"{path}: tensor {key!r} belongs to no declared component")
        comps[name].tensors[sub] = t
    return ModelFile(path, info, comps)


def describe_mismatch(module: torch.nn.Module, state: dict[str, torch.Tensor], limit: int = 8) -> str | None:
    """A readable list of missing/unexpected keys and shape mismatches, or None when it fits."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if not (missing or unexpected or shapes):
        return None

    def fmt(title: str, items: list[str]) -> str:
        more = f" … and {len(items) - limit} more" if len(items) > limit else ""
        return f"{title} ({len(items)}): " + ", ".join(items[:limit]) + more

    parts = []
    if missing:
        parts.append(fmt("missing keys", missing))
    if unexpected:
        parts.append(fmt("unexpected keys", unexpected))
    if shapes:
        parts.append(fmt("shape mismatches", shapes))
    return "; ".join(parts)


def build_and_load(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> torch.nn.Module:
    problem = describe_mismatch(module, state)
    if problem:
        raise ModelFileError(f"{what} does not fit the architecture: {problem}")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ModelFileError(f"{what} has non-finite values in {', '.join(bad[:5])}")
    module.load_state_dict(state, strict=True)
    return module
