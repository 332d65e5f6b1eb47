"""The settings of classifier training (no torch here: the command line is built from them at start-up)."""

from __future__ import annotations

from dataclasses import dataclass

from ..settings_field import setting


@dataclass
class ClassifierTrainConfig:
    """Settings of ``anycost train-classifier``; each field's metadata holds its flag's help."""

    steps: int = setting(1500, "training steps")
    batch: int = setting(64, "images per step")
    lr: float = setting(2e-3, "AdamW learning rate")
    weight_decay: float = 1e-4
    flip: bool = setting(True, "random horizontal flips")
    # Attributes a horizontal flip mirrors around 0.5 (left ↔ right): their label becomes 1 − label.
    # Names the data does not have are ignored.
    mirrored: tuple[str, ...] = setting(("yaw", "roll", "lighting"),
                                        "attributes a horizontal flip mirrors (label → 1 − label)")
    # Random Gaussian blur (sigma up to this many input pixels) on half the samples, so the
    # classifier judges softer generated images the same as sharp training images.
    blur: float = setting(0.0, "random Gaussian blur up to this sigma (input pixels) on half the samples")
    seed: int = setting(0, "random seed")
    device: str = setting("cpu", "cpu, cuda or cuda:N")
