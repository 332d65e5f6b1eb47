"""Importance-based channel sorting of a generator before adaptive-channel training.

Anycost sub-generators keep the *first* channels of every layer, so the most important
channels should come first. Each layer's output channels are reordered by the L1 norm of
their convolution weights and every consumer (next conv's input, its modulation rows, ToRGB
inputs, skip-layer excitation) is reordered alike: the full generator computes exactly the
same function afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from ..models.generator import Generator

# Per tensor name: (dimension, layer index whose permutation applies to it).
PermSpec = dict[str, list[tuple[int, int]]]


def _output_layer(res: int) -> int:
    """Index of the layer whose output is the feature map at ``res`` (the second conv there)."""
    return 1 if res == 4 else 2 * int(math.log2(res)) - 3


def permutation_spec(G: Generator) -> PermSpec:
    spec: PermSpec = {"input.input": [(1, 0)]}

    def styled(prefix: str, lin: int, lout: int) -> None:
        spec[f"{prefix}.conv.weight"] = [(1, lout), (2, lin)]
        spec[f"{prefix}.conv.modulation.weight"] = [(0, lin)]
        spec[f"{prefix}.conv.modulation.bias"] = [(0, lin)]
        spec[f"{prefix}.activate.bias"] = [(0, lout)]

    def to_rgb(prefix: str, lin: int) -> None:
        spec[f"{prefix}.conv.weight"] = [(2, lin)]
        spec[f"{prefix}.conv.modulation.weight"] = [(0, lin)]
        spec[f"{prefix}.conv.modulation.bias"] = [(0, lin)]

    styled("conv1", 0, 1)
    to_rgb("to_rgb1", 1)
    for j in range(len(G.convs)):
        styled(f"convs.{j}", j + 1, j + 2)
    for b in range(len(G.to_rgbs)):
        to_rgb(f"to_rgbs.{b}", 3 + 2 * b)
    for lo, hi in G.config.sle:
        llo, lhi = _output_layer(lo), _output_layer(hi)
        spec[f"sle.{hi}.conv1.weight"] = [(0, lhi), (1, llo)]
        spec[f"sle.{hi}.conv1.bias"] = [(0, lhi)]
        spec[f"sle.{hi}.conv2.weight"] = [(0, lhi), (1, lhi)]
        spec[f"sle.{hi}.conv2.bias"] = [(0, lhi)]
    return spec


def channel_importance(G: Generator) -> list[torch.Tensor]:
    """L1 norm of each layer's output-channel weights (the constant input: of its values)."""
    with torch.no_grad():
        imp = [G.input.input[0].abs().sum(dim=(1, 2)), G.conv1.conv.weight[0].abs().sum(dim=(1, 2, 3))]
        imp += [conv.conv.weight[0].abs().sum(dim=(1, 2, 3)) for conv in G.convs]
    return [t.detach().float().cpu() for t in imp]


def importance_permutations(G: Generator) -> list[torch.Tensor]:
    """Per layer, the channel order from most to least important (stable for ties)."""
    return [torch.sort(-imp, stable=True).indices for imp in channel_importance(G)]


def permute_state(state: Mapping[str, torch.Tensor], spec: PermSpec,
                  perms: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """A copy of ``state`` with every listed tensor reordered; other entries pass through."""
    out = {}
    for name, t in state.items():
        for dim, layer in spec.get(name, ()):
            t = t.index_select(dim, perms[layer].to(t.device))
        out[name] = t
    return out


@torch.no_grad()
def apply_permutations(G: Generator, perms: list[torch.Tensor]) -> None:
    spec = permutation_spec(G)
    G.load_state_dict(permute_state(G.state_dict(), spec, perms))


@torch.no_grad()
def permute_optimizer(opt: torch.optim.Optimizer, G: Generator, perms: list[torch.Tensor]) -> None:
    """Reorder per-parameter optimiser moments (Adam's exp_avg, exp_avg_sq) to follow the parameters."""
    spec = permutation_spec(G)
    for name, p in G.named_parameters():
        st = opt.state.get(p)
        if not st or name not in spec:
            continue
        for k, v in list(st.items()):
            if torch.is_tensor(v) and v.shape == p.shape:
                st[k] = permute_state({name: v}, spec, perms)[name]


def sort_channels(G: Generator) -> list[torch.Tensor]:
    """Sort ``G`` in place by channel importance; returns the permutations applied (reuse them
    for the EMA copy and the optimiser so all stay aligned)."""
    perms = importance_permutations(G)
    apply_permutations(G, perms)
    return perms
