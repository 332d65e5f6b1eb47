"""The settings of the sub-generator search (no torch here: the command line is built from them at start-up)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..settings_field import setting
from .budget import FIT_RENDERS, TOLERANCE


@dataclass
class EvolutionSettings:
    """The evolution per budget; each field's metadata holds its ``anycost search`` flag's help."""

    population: int = setting(24, "configurations per generation")
    generations: int = setting(10, "generations per budget")
    parents: int = setting(8, "best configurations kept to breed the next generation")
    mutation_share: float = 0.5  # of the children; the others come from crossover
    layer_prob: float = 0.3
    res_prob: float = 0.2
    seed: int = setting(0, "random seed")


@dataclass
class SearchSettings:
    """The whole search; each field's metadata holds its ``anycost search`` flag's help."""

    evolution: EvolutionSettings = field(default_factory=EvolutionSettings)
    latents: int = setting(8, "latents scored during the search")
    validation_latents: int = setting(16, "latents the best few are scored on before one is chosen")
    finalists: int = 4
    truncation: float = 0.8
    tolerance: float = TOLERANCE  # of the fit rule (budget.py) applied to the finalists' measured times
    min_gain: float = 0.05  # score (≈ dB) by which a finalist must beat the best uniform ratio on validation
    measure_passes: int = FIT_RENDERS
    # seconds for the whole search; the best so far is kept
    time_limit: float | None = setting(None, "seconds; the best found so far is kept")

    def to_dict(self) -> dict:
        return asdict(self)
