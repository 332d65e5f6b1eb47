"""The space of sub-generators a search explores, and the moves of the evolution within it.

A sub-generator is an output resolution and one width per sliceable layer. Layers past the
output resolution are never run; they are written at full width so that equal
sub-generators compare equal.

- ``flexible``: every layer picks one of its trained widths (the widths of the uniform ratios
  at that layer), independently.
- ``uniform``: one ratio for the whole network (models trained on uniform ratios only).
- ``full``: full width only; only the resolution varies (plain StyleGAN2 models).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..models.channels import STANDARD_RATIOS, uniform_channels
from ..models.generator import Generator

SpaceKind = Literal["flexible", "uniform", "full"]
SPACE_KINDS: tuple[str, ...] = ("flexible", "uniform", "full")


@dataclass(frozen=True)
class SubConfig:
    res: int
    channels: tuple[int, ...]
    ratio: float | None = field(default=None, compare=False)  # set when it is a uniform ratio

    def label(self) -> str:
        return f"{self.res}:{self.ratio:g}" if self.ratio is not None else f"{self.res}:flexible"


def layers_used(res: int) -> int:
    """Sliceable layers a render at ``res`` runs: the input, conv1, then two per resolution."""
    return 2 * (res.bit_length() - 1) - 2


def model_space_kind(info: dict | None, registered: str | None = None) -> SpaceKind:
    """The space a model was trained for: what its file declares, else how it was trained, else its
    registry entry (official checkpoints carry no information), else uniform.

    The project's trainers sample flexible per-layer widths, so their models are flexible.
    """
    info = info or {}
    declared = info.get("channel_configs")
    if declared in SPACE_KINDS:
        return declared
    training = info.get("training")
    if isinstance(training, dict):
        prob = training.get("flexible_prob")
        return "uniform" if prob is not None and float(prob) <= 0 else "flexible"
    if registered in SPACE_KINDS:
        return registered  # type: ignore[return-value]
    return "uniform"


class SearchSpace:
    def __init__(self, G: Generator, kind: SpaceKind = "flexible", *, ratios: Sequence[float] = STANDARD_RATIOS,
                 min_res: int | None = None, max_res: int | None = None):
        if kind not in SPACE_KINDS:
            raise ValueError(f"search space must be one of {SPACE_KINDS}, got {kind!r}")
        self.kind = kind
        self.full = tuple(G.full_channels)
        self.resolution = G.resolution
        lo = min(max(32, G.resolution // 8), G.resolution) if min_res is None else int(min_res)
        hi = G.resolution if max_res is None else int(max_res)
        self.resolutions = [r for r in G.resolutions if lo <= r <= hi]
        if not self.resolutions:
            raise ValueError(f"no output resolution of {G.resolutions} lies in {lo}..{hi}")
        self.ratios = sorted({float(r) for r in ratios} | {1.0})
        if any(not 0 < r <= 1 for r in self.ratios):
            raise ValueError(f"channel ratios must be in (0, 1], got {self.ratios}")
        self._uniform = {r: tuple(self.full) if r == 1.0 else tuple(uniform_channels(self.full, G.resolution,
                                                                                     G.channel_max, r))
                         for r in self.ratios}
        # widths every layer was trained at, ascending
        self.candidates = [sorted({u[i] for u in self._uniform.values()}) for i in range(len(self.full))]

    # ------------------------------------------------------------------ configs
    def canonical(self, res: int, channels: Sequence[int], ratio: float | None = None) -> SubConfig:
        n = layers_used(res)
        ch = tuple(int(c) for c in channels[:n]) + self.full[n:]
        if ratio is None:
            ratio = self.ratio_of(res, ch)
        return SubConfig(int(res), ch, ratio)

    def ratio_of(self, res: int, channels: Sequence[int]) -> float | None:
        """The uniform ratio giving these widths at this resolution, if any (the smallest such)."""
        n = layers_used(res)
        for r in self.ratios:
            if tuple(channels[:n]) == self._uniform[r][:n]:
                return r
        return None

    def uniform(self, res: int, ratio: float) -> SubConfig:
        return self.canonical(res, self._uniform[float(ratio)], float(ratio))

    def uniform_configs(self) -> list[SubConfig]:
        """Every (resolution, ratio) pair, without repeats (ratios can coincide under ``channel_max``)."""
        out: dict[SubConfig, None] = {}
        ratios = [1.0] if self.kind == "full" else self.ratios
        for res in self.resolutions:
            for r in ratios:
                out.setdefault(self.uniform(res, r), None)
        return list(out)

    def contains(self, cfg: SubConfig) -> bool:
        if cfg.res not in self.resolutions or len(cfg.channels) != len(self.full):
            return False
        if self.kind != "flexible":
            return self.ratio_of(cfg.res, cfg.channels) is not None and (self.kind == "uniform"
                                                                          or cfg.channels == self.full)
        n = layers_used(cfg.res)
        return all(c in self.candidates[i] for i, c in enumerate(cfg.channels[:n]))

    def size(self) -> int:
        if self.kind != "flexible":
            return len(self.uniform_configs())
        total = 0
        for res in self.resolutions:
            k = 1
            for c in self.candidates[: layers_used(res)]:
                k *= len(c)
            total += k
        return total

    # ------------------------------------------------------------------ moves
    def random(self, rng: random.Random) -> SubConfig:
        res = rng.choice(self.resolutions)
        if self.kind != "flexible":
            return self.uniform(res, rng.choice(self.ratios) if self.kind == "uniform" else 1.0)
        return self.canonical(res, [rng.choice(c) for c in self.candidates])

    def mutate(self, cfg: SubConfig, rng: random.Random, layer_prob: float = 0.3,
               res_prob: float = 0.2) -> SubConfig:
        res = cfg.res
        if len(self.resolutions) > 1 and rng.random() < res_prob:
            res = self._step(self.resolutions, res, rng)
        if self.kind != "flexible":
            ratio = cfg.ratio if cfg.ratio is not None else 1.0
            if self.kind == "uniform" and rng.random() < max(layer_prob, 0.5):
                ratio = self._step(self.ratios, ratio, rng)
            return self.uniform(res, ratio)
        ch = list(cfg.channels)
        old_n, n = layers_used(cfg.res), layers_used(res)
        for i in range(n):
            cands = self.candidates[i]
            if i >= old_n:  # a layer the parent did not run: any trained width
                ch[i] = rng.choice(cands)
            elif len(cands) > 1 and rng.random() < layer_prob:
                ch[i] = self._step(cands, ch[i], rng) if rng.random() < 0.5 else rng.choice(cands)
        return self.canonical(res, ch)

    def crossover(self, a: SubConfig, b: SubConfig, rng: random.Random) -> SubConfig:
        res = rng.choice((a.res, b.res))
        if self.kind != "flexible":
            ratio = rng.choice((a.ratio, b.ratio))
            return self.uniform(res, ratio if ratio is not None else 1.0)
        ch = [x if rng.random() < 0.5 else y for x, y in zip(a.channels, b.channels, strict=True)]
        return self.canonical(res, ch)

    def shrink(self, cfg: SubConfig, rng: random.Random) -> SubConfig | None:
        """One step cheaper (a narrower layer, a smaller ratio, else a lower resolution); None at the bottom."""
        if self.kind == "uniform":
            i = self.ratios.index(cfg.ratio if cfg.ratio is not None else 1.0)
            if i > 0:
                return self.uniform(cfg.res, self.ratios[i - 1])
        elif self.kind == "flexible":
            n = layers_used(cfg.res)
            wide = [i for i in range(n) if cfg.channels[i] > self.candidates[i][0]]
            if wide:
                i = rng.choice(wide)
                ch = list(cfg.channels)
                ch[i] = self.candidates[i][self.candidates[i].index(ch[i]) - 1]
                return self.canonical(cfg.res, ch)
        k = self.resolutions.index(cfg.res)
        if k == 0:
            return None
        res = self.resolutions[k - 1]
        if self.kind == "flexible":
            return self.canonical(res, cfg.channels)
        return self.uniform(res, cfg.ratio if cfg.ratio is not None else 1.0)

    @staticmethod
    def _step(values: Sequence, current, rng: random.Random):
        if len(values) < 2:
            return current
        i = list(values).index(current) if current in values else 0
        j = i + rng.choice((-1, 1))
        if not 0 <= j < len(values):  # at an end: step the other way
            j = 2 * i - j
        return values[j]
