"""Sub-generator sampling for adaptive-channel training and its one-hot encoding."""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

from ..models.channels import STANDARD_RATIOS, uniform_channels
from ..models.generator import Generator


def channel_candidates(G: Generator, ratios: Sequence[float] = STANDARD_RATIOS) -> list[list[int]]:
    """Candidate widths of every sliceable layer (ascending, de-duplicated)."""
    full = G.full_channels
    per_ratio = [full if float(r) == 1.0 else uniform_channels(full, G.resolution, G.channel_max, float(r))
                 for r in ratios]
    return [sorted({cfg[i] for cfg in per_ratio} | {full[i]}) for i in range(len(full))]


def encoding_size(candidates: list[list[int]]) -> int:
    return sum(len(c) for c in candidates)


def encode_channels(channels: Sequence[int] | None, candidates: list[list[int]]) -> torch.Tensor:
    """One-hot per layer (which candidate width it uses), concatenated; None = full widths.

    A width between candidates counts as the nearest one.
    """
    parts = []
    for i, cands in enumerate(candidates):
        c = cands[-1] if channels is None else int(channels[i])
        k = min(range(len(cands)), key=lambda j: abs(cands[j] - c))
        one = torch.zeros(len(cands))
        one[k] = 1.0
        parts.append(one)
    return torch.cat(parts)


class SubnetSampler:
    """Samples channel configurations; every rank seeds it alike so all ranks train the same sub-network."""

    def __init__(self, G: Generator, ratios: Sequence[float] = STANDARD_RATIOS, flexible_prob: float = 0.5,
                 n_random: int = 2):
        self.G = G
        self.ratios = [float(r) for r in ratios]
        self.candidates = channel_candidates(G, self.ratios)
        self.flexible_prob = flexible_prob
        self.n_random = n_random
        self.full = list(G.full_channels)
        self.smallest = [c[0] for c in self.candidates]

    def uniform(self, rng: random.Random) -> list[int]:
        r = rng.choice(self.ratios)
        return self.full if r == 1.0 else uniform_channels(self.full, self.G.resolution, self.G.channel_max, r)

    def flexible(self, rng: random.Random) -> list[int]:
        return [rng.choice(c) for c in self.candidates]

    def random(self, rng: random.Random) -> list[int]:
        return self.flexible(rng) if rng.random() < self.flexible_prob else self.uniform(rng)

    def sandwich(self, rng: random.Random) -> list[list[int]]:
        """The sandwich rule: the largest, the smallest, then ``n_random`` random sub-networks."""
        return [self.full, self.smallest] + [self.random(rng) for _ in range(self.n_random)]

    def encode(self, channels: Sequence[int] | None) -> torch.Tensor:
        return encode_channels(channels, self.candidates)

    @property
    def cond_dim(self) -> int:
        return encoding_size(self.candidates)
