"""The settings of encoder training (no torch here: the command line is built from them at start-up)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from ..models.channels import STANDARD_RATIOS
from ..settings_field import setting

REAL_RATIO = 0.25  # share of steps on real images when a folder of them is given


@dataclass
class EncoderTrainConfig:
    """Settings of encoder training (``anycost train-encoder``); each field's metadata holds its flag's help."""

    steps: int = setting(2000, "training steps")
    batch: int = setting(8, "latents per step")
    lr: float = setting(1e-4, "Adam learning rate")
    latent_weight: float = setting(1.0, "weight of the W+ match")
    image_weight: float = setting(1.0, "weight of the image match")
    lpips_weight: float = setting(0.8, "used only when LPIPS weights are cached")
    consistency_weight: float = setting(0.5, "weight of the sub-generators' match to the full generator")
    # psi drawn uniformly per sample
    truncation: tuple[float, float] = setting((0.5, 1.0), "psi range lo,hi for sampled latents", metavar="LO,HI")
    # chance a sample mixes two latents at a random slot
    mix_prob: float = setting(0.5, "style-mixing probability")
    loss_res: int | None = setting(None, "image-loss resolution", default_text="min(res, 256)")
    min_input_res: int = 16  # smallest resolution the encoder is shown a target at
    # chance a rendered target reaches the encoder as a real crop might look (see augment)
    augment: float = setting(0.5, "share of rendered targets shown as a real crop might look: slightly off-centre, "
                                  "recoloured, softer, noisier; makes the encoder hold on real faces")
    # Channel ratios of the consistency term: the model's trained ones (a plain StyleGAN2 has only 1.0,
    # its sub-generators being its intermediate resolutions).
    ratios: tuple[float, ...] = STANDARD_RATIOS
    real_folder: str | None = setting(None, "folder of real face images for extra image-loss steps", flag="--real",
                                       metavar="FOLDER")
    # fraction of steps that use real images (image losses only); None: REAL_RATIO with a real_folder, else 0
    real_ratio: float | None = setting(None, "fraction of steps on real images (with --real)",
                                       default_text=f"{REAL_RATIO} with --real")
    seed: int = setting(0, "random seed")
    device: str = setting("cpu", "cpu, cuda or cuda:N")
    checkpoint: str | None = setting(None, "training checkpoint file", default_text="OUTPUT + .ckpt.pt")
    checkpoint_every: int = setting(200, "steps between checkpoints")

    def __post_init__(self) -> None:
        lo, hi = (float(t) for t in self.truncation)
        if not 0 <= lo <= hi <= 1:
            raise InputError(f"truncation range must satisfy 0 ≤ lo ≤ hi ≤ 1, got {self.truncation}")
        self.truncation = (lo, hi)
        if self.steps < 0 or self.batch < 1 or self.lr <= 0:
            raise InputError("steps must be ≥ 0, batch ≥ 1 and lr > 0")
        if self.real_ratio is None:
            self.real_ratio = REAL_RATIO if self.real_folder else 0.0
        if not 0 <= self.real_ratio <= 1 or not 0 <= self.mix_prob <= 1:
            raise InputError("real_ratio and mix_prob must be in [0, 1]")
        if self.real_ratio > 0 and not self.real_folder:
            raise InputError("real_ratio > 0 needs a folder of real images")
        if not 0 <= self.augment <= 1:
            raise InputError("augment must be in [0, 1]")
        self.ratios = tuple(float(r) for r in self.ratios)
        if not self.ratios or any(not 0 < r <= 1 for r in self.ratios):
            raise InputError("ratios must lie in (0, 1]")
