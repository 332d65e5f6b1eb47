"""LPIPS when its backbone weights are in the local torch cache; never downloads.

The ``lpips`` package ships its calibrated linear layers but fetches the ImageNet backbone
from the network. Here the backbone is built untrained and filled from the torch hub cache
file; when that file is absent a warning is given once and callers fall back to pixel losses.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# torchvision's cache file names for the LPIPS backbones.
BACKBONE_FILES = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
}

_cache: dict[tuple[str, str, str], nn.Module] = {}
_warned: set[str] = set()


def backbone_path(net: str = "alex") -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILES[net]


def warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def load_lpips(net: str = "alex", device: torch.device | str = "cpu") -> nn.Module | None:
    """A frozen LPIPS module, or None (with a one-time warning) when the backbone is not cached."""
    if net not in BACKBONE_FILES:
        raise ValueError(f"LPIPS backbone must be one of {sorted(BACKBONE_FILES)}, got {net!r}")
    path = backbone_path(net)
    key = (net, str(path), str(device))
    if key in _cache:
        return _cache[key]
    if not path.is_file():
        warn_once(f"lpips-{net}", f"LPIPS backbone weights not found at {path}; perceptual terms fall back "
                                  "to pixel losses (place the torchvision file there to enable LPIPS)")
        return None
    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file means "no LPIPS"
        warn_once(f"lpips-{net}-bad", f"LPIPS backbone file {path} could not be read ({e}); using pixel losses")
        return None
    feats = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    loaded = 0
    for slice_mod in (getattr(model.net, f"slice{i}") for i in range(1, model.net.N_slices + 1)):
        for name, layer in slice_mod.named_children():
            for pname, p in layer.named_parameters(recurse=False):
                src = feats.get(f"{name}.{pname}")
                if src is None or src.shape != p.shape:
                    warn_once(f"lpips-{net}-shape", f"LPIPS backbone file {path} does not match; using pixel losses")
                    return None
                p.data.copy_(src)
                loaded += 1
    if loaded == 0:
        return None
    model = model.to(device).eval().requires_grad_(False)
    _cache[key] = model
    return model


def lpips_distance(model: nn.Module, a: torch.Tensor, b: torch.Tensor, min_size: int = 64) -> torch.Tensor:
    """Per-sample LPIPS of images in [-1, 1]; small images are upsampled so the backbone has room."""
    if a.shape[-1] < min_size:
        a = F.interpolate(a, size=(min_size, min_size), mode="bilinear", align_corners=False)
        b = F.interpolate(b, size=(min_size, min_size), mode="bilinear", align_corners=False)
    return model(a.float(), b.float()).flatten()
