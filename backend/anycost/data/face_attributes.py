"""The labelled attributes of a synthetic portrait and how they are sampled.

Each image of a dataset has its own random stream, ``SeedSequence([seed, index])``, so any subset, order
or number of workers yields the same attributes (and therefore the same pixels).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

# Label names, in column order of every label matrix. Other code keys on these names: keep them stable.
# All values are in [0, 1]. ``yaw``, ``roll`` and ``lighting`` are centred on 0.5 (frontal, upright,
# even light); ``eyeglasses`` is binary.
ATTRIBUTES: tuple[str, ...] = (
    "smile",  # 0 = corners slightly down, 1 = broad smile
    "mouth_open",  # 0 = closed, 1 = wide open (teeth show when smiling)
    "age",  # 0 = young (large eyes, smooth skin), 1 = old (wrinkles, grey hair, paler skin)
    "hair_length",  # 0 = cropped above the ears, 1 = well past the shoulders
    "bangs",  # 0 = open forehead, 1 = fringe down to the brows
    "eyeglasses",  # 0 or 1
    "beard",  # 0 = clean-shaven, low = light stubble, 1 = full dense beard
    "hair_darkness",  # 0 = light blond / ginger, 1 = black / dark auburn
    "hair_redness",  # 0 = neutral / ash, 1 = red
    "skin_tone",  # 0 = very light, 1 = very dark
    "yaw",  # 0 = head turned to the image's left, 0.5 = frontal, 1 = turned to the image's right
    "roll",  # 0 = tilted counter-clockwise (on screen), 0.5 = upright, 1 = clockwise
    "lighting",  # 0 = key light from the image's left, 0.5 = frontal, 1 = from the right
)

MAX_YAW_DEG = 35.0
MAX_ROLL_DEG = 20.0
MAX_LIGHT_DEG = 75.0
N_STYLE = 32  # continuous nuisance parameters per face (proportions, colours, styles)


@dataclass(frozen=True)
class FaceAttributes:
    """Everything that determines one portrait. The first fields are the labels (see ``ATTRIBUTES``);
    ``style`` holds continuous nuisance parameters in [0, 1] and ``detail_seed`` drives small random
    details (hair strands, background texture, noise)."""

    smile: float = 0.5
    mouth_open: float = 0.0
    age: float = 0.3
    hair_length: float = 0.3
    bangs: float = 0.0
    eyeglasses: float = 0.0
    beard: float = 0.0
    hair_darkness: float = 0.6
    hair_redness: float = 0.1
    skin_tone: float = 0.3
    yaw: float = 0.5
    roll: float = 0.5
    lighting: float = 0.5
    style: tuple[float, ...] = (0.5,) * N_STYLE
    detail_seed: int = 0

    def labels(self) -> np.ndarray:
        return np.array([getattr(self, name) for name in ATTRIBUTES], dtype=np.float32)

    def replace(self, **changes: float) -> FaceAttributes:
        return dataclasses.replace(self, **changes)


def image_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of image ``index`` of the dataset with ``seed``; independent of every other."""
    if seed < 0 or index < 0:
        raise InputError(f"seed and index must be non-negative (got seed={seed}, index={index})")
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))


def sample_attributes(rng: np.random.Generator) -> FaceAttributes:
    """Draw one face. Labels are independent of each other and of the nuisance parameters."""
    u = rng.random

    def gated(p_zero: float, lo: float) -> float:
        return 0.0 if u() < p_zero else float(lo + (1.0 - lo) * u())

    labels = dict(
        smile=float(u()),
        mouth_open=gated(0.5, 0.1),
        age=float(u()),
        hair_length=float(u()),
        bangs=gated(0.55, 0.2),
        eyeglasses=float(u() < 0.3),
        beard=gated(0.7, 0.2),
        hair_darkness=float(u()),
        hair_redness=float(u() ** 1.5),
        skin_tone=float(u()),
        yaw=float(np.clip(rng.normal(0.5, 0.2), 0.0, 1.0)),
        roll=float(np.clip(rng.normal(0.5, 0.2), 0.0, 1.0)),
        lighting=float(u()),
    )
    style = tuple(float(x) for x in rng.random(N_STYLE))
    return FaceAttributes(**labels, style=style, detail_seed=int(rng.integers(0, 2**31 - 1)))


def face_attributes(seed: int, index: int) -> FaceAttributes:
    """The attributes of image ``index`` of the dataset with ``seed``."""
    return sample_attributes(image_rng(seed, index))
