"""Loading generators and encoders from any supported file.

Every reader produces the one in-memory form, a ``ModelFile`` (components + info), which
``open_model`` returns whatever the file:

- the project's model format (``.safetensors`` with JSON metadata, see ``modelfile``);
- official Anycost and rosinality checkpoints (``torch.save`` files): ``{'g_ema': state_dict, …}``
  for generators (a bare generator state dict also works), ``{'state_dict': …}`` for the W+
  encoder. Their architecture is inferred from the tensor shapes. They are read with
  ``torch.load(weights_only=True)``; the one class allowed beyond tensors and containers is
  ``argparse.Namespace`` (rosinality's ``args``), as data. rosinality's ``latent_avg`` becomes the
  truncation centre, its discriminator ``d`` is kept;
- NVIDIA stylegan2-ada-pytorch network pickles, through the allow-listed reader in
  ``network_pickle`` (no code from the file ever runs): ``G_ema`` with its ``w_avg``, and ``D``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import re
from pathlib import Path

import torch

from ..errors import ModelFileError
from ..models.encoder import Encoder, EncoderConfig
from ..models.generator import Generator, GeneratorConfig
from .modelfile import Component, ModelFile, build_and_load, is_safetensors, read_model

PathLike = str | os.PathLike

# rosinality's training checkpoints hold these beside g_ema; official Anycost files hold g_ema only.
_ROSINALITY_KEYS = {"g", "d", "g_optim", "d_optim", "args", "latent_avg"}


def load_weights_only(path: Path) -> object:
    """``torch.load`` restricted to tensors, plain containers and ``argparse.Namespace``; every
    failure is a ModelFileError."""
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path} is empty")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ModelFileError(
            f"refused to load {path}: it contains pickled Python objects that would need code to be run "
            f"(only plain tensors and containers are accepted). Details: {str(e).splitlines()[0]}") from e
    except Exception as e:  # garbage input can make the unpickler fail in arbitrary ways
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelFileError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): {first}") from e


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _kind_of_file(path: Path) -> str:
    """'safetensors', 'pickle' (a network pickle) or 'torch' (torch.save, or anything else: torch.load
    then gives its own verdict, as our one-line error)."""
    from .network_pickle import is_network_pickle

    if is_safetensors(path):
        return "safetensors"
    if not os.access(path, os.R_OK):
        raise ModelFileError(f"cannot read {path}: permission denied")
    return "pickle" if is_network_pickle(path) else "torch"


def open_model(path: PathLike, *, expect: GeneratorConfig | None = None) -> ModelFile:
    """Any supported model file as a ``ModelFile``; foreign formats are imported in memory.

    ``expect`` pins the generator architecture (a registered model name)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    kind = _kind_of_file(path)
    if kind == "safetensors":
        mf = read_model(path)
    elif kind == "pickle":
        from .network_pickle import read_network_pickle

        mf = _import_network_pickle(path, read_network_pickle(path))
    else:
        mf = _import_torch_checkpoint(path, load_weights_only(path), expect)
    if expect is not None and "generator" in mf.components:
        have = GeneratorConfig.from_dict(mf.components["generator"].config).resolution_channels()
        if have != expect.resolution_channels():
            raise ModelFileError(f"{path} is a generator with widths {have}, not the expected "
                                 f"{expect.resolution}px architecture")
    return mf


def _source_info(path: Path, fmt: str, cfg: GeneratorConfig, **extra: object) -> dict:
    return {"format": fmt, "file": path.name, "sha256": file_sha256(path), "resolution": cfg.resolution,
            "w_avg": cfg.w_avg, **extra}


def _import_network_pickle(path: Path, snapshot: dict) -> ModelFile:
    from .network_pickle import PersistentObject
    from .stylegan2_ada import import_discriminator, import_generator

    G = snapshot.get("G_ema")
    if not isinstance(G, PersistentObject):
        found = sorted(k for k in snapshot if isinstance(k, str))
        raise ModelFileError(f"{path} holds no G_ema network (keys: {found}); is it a stylegan2-ada-pytorch "
                             "network pickle?")
    gen = import_generator(G, f"{path} (G_ema)")
    comps = {"generator": Component(gen.config, gen.tensors)}
    D = snapshot.get("D")
    d_note = "absent"
    if isinstance(D, PersistentObject):
        disc, why = import_discriminator(D, f"{path} (D)")
        if disc is not None:
            comps["discriminator"] = Component(disc.config, disc.tensors)
            d_note = "kept"
        else:
            d_note = f"not kept: {why}"
    cfg = GeneratorConfig.from_dict(gen.config)
    kwargs = snapshot.get("training_set_kwargs")
    data = Path(str(kwargs.get("path"))).name if isinstance(kwargs, dict) and kwargs.get("path") else None
    info = {"name": path.stem, "channel_configs": "full",
            "source": _source_info(path, "stylegan2-ada-pytorch network pickle", cfg, discriminator=d_note,
                                   training_set=data)}
    face = _face_from_names(path.name, data)
    if face is not None:
        info["face"] = face
    return ModelFile(path, info, comps)


def _face_from_names(*names: str | None) -> bool | None:
    """AFHQ (animal faces) and LSUN (cars, churches, cats, …) are not human faces to align."""
    text = " ".join(n.lower() for n in names if n)
    if re.search(r"afhq|lsun", text):
        return False
    return None


def _import_torch_checkpoint(path: Path, obj: object, expect: GeneratorConfig | None) -> ModelFile:
    sd = _as_state_dict(obj, ("g_ema",), path, "generator")
    top = set(obj) if isinstance(obj, dict) else set()
    cfg = expect or infer_generator_config(sd, path)
    tensors = dict(sd)
    latent_avg = obj.get("latent_avg") if isinstance(obj, dict) else None
    if isinstance(latent_avg, torch.Tensor) and latent_avg.numel() == cfg.style_dim:
        cfg = GeneratorConfig.from_dict({**cfg.to_dict(), "w_avg": True})
        tensors["w_avg"] = latent_avg.detach().float().reshape(cfg.style_dim)
    comps = {"generator": Component(cfg.to_dict(), tensors)}
    rosinality = "g_ema" in top and bool(top & _ROSINALITY_KEYS)
    info: dict = {"name": path.stem}
    extra: dict = {}
    if rosinality:
        fmt = "rosinality checkpoint"
        info["channel_configs"] = "full"  # a plain StyleGAN2: sub-generators not trained for consistency
        d_note = "absent"
        if isinstance(obj, dict) and isinstance(obj.get("d"), dict):
            disc, why = _rosinality_discriminator(obj["d"], cfg.resolution, f"{path} (d)")
            if disc is not None:
                comps["discriminator"] = disc
                d_note = "kept"
            else:
                d_note = f"not kept: {why}"
        extra["discriminator"] = d_note
        args = obj.get("args") if isinstance(obj, dict) else None
        if isinstance(args, argparse.Namespace):
            extra["args"] = {k: v for k, v in vars(args).items() if isinstance(v, (str, int, float, bool))}
    else:
        fmt = "official Anycost checkpoint" if "g_ema" in top else "generator state dict"
    info["source"] = _source_info(path, fmt, cfg, **extra)
    face = _face_from_names(path.name)
    if face is not None:
        info["face"] = face
    return ModelFile(path, info, comps)


def _rosinality_discriminator(sd: dict, resolution: int, what: str) -> tuple[Component | None, str | None]:
    """rosinality's ``Discriminator`` in the project's layout: its ``convs.0`` is the fromRGB of the top
    resolution, ``convs.i`` the residual block at resolution/2^(i-1); the rest has the same names."""
    from ..training.discriminator import discriminator_from_config

    if not all(isinstance(v, torch.Tensor) for v in sd.values()):
        return None, "it is not a state dict"
    out: dict[str, torch.Tensor] = {}
    channels: dict[int, int] = {}
    try:
        for k, v in sd.items():
            m = re.match(r"convs\.(\d+)\.(.*)", k)
            if m is None:
                out[k] = v
                continue
            i, rest = int(m.group(1)), m.group(2)
            if i == 0:
                out[f"from_rgbs.{resolution}.{rest}"] = v
            else:
                r = resolution >> (i - 1)
                out[f"blocks.{r}.{rest}"] = v
                if rest == "conv1.0.weight":
                    channels[r] = int(v.shape[0])
        channels[4] = int(sd["final_conv.0.weight"].shape[0])
        cfg = {"resolution": resolution, "channels": {str(k): v for k, v in sorted(channels.items())},
               "input_resolutions": [resolution], "mbstd_group": 4}
        D = discriminator_from_config(cfg)
        build_and_load(D, out, what)
    except (KeyError, ValueError, IndexError, ModelFileError) as e:
        return None, str(e)
    return Component(cfg, {k: v.detach().float() for k, v in out.items()}), None


def _as_state_dict(obj: object, keys: tuple[str, ...], path: Path, what: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for k in keys:
            if k in obj and isinstance(obj[k], dict):
                obj = obj[k]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        top = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
        raise ModelFileError(f"{path} does not hold a {what} state dict (expected keys {list(keys)}; found {top})")
    return obj  # type: ignore[return-value]


def infer_generator_config(sd: dict[str, torch.Tensor], path: Path | str = "checkpoint") -> GeneratorConfig:
    """Architecture of an official generator state dict, read off its tensor shapes."""
    try:
        style_dim = sd["style.1.weight"].shape[1]
        n_mlp = len([k for k in sd if re.fullmatch(r"style\.\d+\.weight", k)])
        n_rgbs = len([k for k in sd if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k)])
        channels = {4: int(sd["input.input"].shape[1])}
        for b in range(n_rgbs):
            channels[2 ** (b + 3)] = int(sd[f"convs.{2 * b}.conv.weight"].shape[1])
    except (KeyError, IndexError) as e:
        raise ModelFileError(f"{path} is not an Anycost/StyleGAN2 generator: missing {e}") from e
    if any(k.startswith("sle.") for k in sd):
        raise ModelFileError(f"{path}: skip-layer-excitation generators are only stored in the project's "
                             "model format (.safetensors), which records their settings")
    resolution = 2 ** (n_rgbs + 2)
    if resolution > 1024 or n_rgbs < 1:
        raise ModelFileError(f"{path}: {n_rgbs} ToRGB layers do not describe a supported resolution")
    return GeneratorConfig(resolution=resolution, style_dim=int(style_dim), n_mlp=n_mlp,
                           channel_max=max(channels.values()), channels=channels)


def generator_from_state_dict(sd: dict[str, torch.Tensor], path: Path | str = "checkpoint",
                              expect: GeneratorConfig | None = None) -> Generator:
    cfg = expect or infer_generator_config(sd, path)
    G = Generator(cfg)
    build_and_load(G, sd, f"{path} (generator)")
    return G.eval()


def load_generator(path: PathLike, *, device: str | torch.device = "cpu",
                   expect: GeneratorConfig | None = None) -> Generator:
    """Load a generator from any supported file (see the module docstring).

    ``expect`` pins the architecture (e.g. for a registered model name): a file that does
    not fit gets an error naming the missing/unexpected keys and shape mismatches.
    """
    return open_model(path, expect=expect).generator(device)


def infer_encoder_config(sd: dict[str, torch.Tensor], path: Path | str = "checkpoint") -> EncoderConfig:
    try:
        style_dim = int(sd["mean_latent"].shape[0])
        n_out = int(sd["fc.weight"].shape[0])
        width = int(sd["conv1.weight"].shape[0])
    except KeyError as e:
        raise ModelFileError(f"{path} is not a W+ encoder: missing {e}") from e
    if n_out % style_dim:
        raise ModelFileError(f"{path}: encoder head size {n_out} is not a multiple of style_dim {style_dim}")
    bottleneck = "layer1.0.conv3.weight" in sd
    counts = tuple(len({k.split(".")[1] for k in sd if k.startswith(f"layer{i}.")}) for i in range(1, 5))
    depths = {((3, 4, 6, 3), True): 50, ((1, 1, 1, 1), False): 10, ((2, 2, 2, 2), False): 18,
              ((3, 4, 6, 3), False): 34}
    depth = depths.get((counts, bottleneck))
    if depth is None:
        raise ModelFileError(f"{path}: unsupported encoder backbone (blocks per stage {counts})")
    return EncoderConfig(n_style=n_out // style_dim, style_dim=style_dim, depth=depth, width=width)


def load_encoder(path: PathLike, *, device: str | torch.device = "cpu") -> Encoder:
    """Load a W+ encoder from the project's format or the official ``{'state_dict': …}`` layout."""
    path = Path(path)
    if is_safetensors(path):
        E = read_model(path).encoder()
        if E is None:
            raise ModelFileError(f"{path} holds no encoder")
    else:
        sd = _as_state_dict(load_weights_only(path), ("state_dict",), path, "encoder")
        E = Encoder(infer_encoder_config(sd, path))
        build_and_load(E, sd, f"{path} (encoder)")
    return E.to(device).eval()
