"""Loading generators and encoders from any supported file.

Two layouts are accepted:

- the project's model format (``.safetensors`` with JSON metadata, see ``modelfile``);
- the official PyTorch checkpoints: ``{'g_ema': state_dict}`` for generators (a bare
  generator state dict also works) and ``{'state_dict': state_dict}`` for the W+ encoder.
  Their architecture is inferred from the tensor shapes. They are read with
  ``torch.load(weights_only=True)``: a file that needs code to unpickle is refused.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import torch

from ..errors import ModelFileError
from ..models.encoder import Encoder, EncoderConfig
from ..models.generator import Generator, GeneratorConfig
from .modelfile import build_and_load, is_safetensors, read_model

PathLike = str | os.PathLike


def load_weights_only(path: Path) -> object:
    """``torch.load`` restricted to tensors and plain containers; every failure is a ModelFileError."""
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path} is empty")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ModelFileError(
            f"refused to load {path}: it contains pickled Python objects that would need code to be run "
            f"(only plain tensors and containers are accepted). Details: {str(e).splitlines()[0]}") from e
    except Exception as e:  # garbage input can make the unpickler fail in arbitrary ways
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelFileError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): {first}") from e


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
    """Load a generator from the project's format or an official checkpoint.

    ``expect`` pins the architecture (e.g. for a registered model name): a file that does
    not fit gets an error naming the missing/unexpected keys and shape mismatches.
    """
    path = Path(path)
    if is_safetensors(path):
        G = read_model(path).generator()
        if expect is not None and G.config.resolution_channels() != expect.resolution_channels():
            raise ModelFileError(f"{path} is a {G.resolution}px generator with widths {G.channels}, "
                                 f"not the expected {expect.resolution}px architecture")
    else:
        obj = load_weights_only(path)
        sd = _as_state_dict(obj, ("g_ema",), path, "generator")
        G = generator_from_state_dict(sd, path, expect)
    return G.to(device)


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
