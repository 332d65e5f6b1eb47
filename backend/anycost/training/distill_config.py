"""The settings of ``anycost distill`` (no torch here: the command line is built from them at start-up)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import InputError
from ..settings_field import setting

PERCEPTUAL_CHOICES = ("auto", "lpips", "discriminator", "none")


@dataclass
class DistillConfig:
    """Settings of ``anycost distill``; every field is also its command-line flag."""

    steps: int = setting(2000, "training steps")
    batch: int = setting(4, "latents per step (per process)")
    lr: float = setting(0.0005, "Adam learning rate of the synthesis network")
    ratios: list[float] = setting([0.25, 0.5, 0.75, 1.0], "uniform channel ratios trained (comma-separated)")
    flexible_prob: float = setting(0.5, "chance a random sub-generator gets per-layer widths (0: uniform only)")
    n_random_subnets: int = setting(2, "random sub-generators per step, beside the widest and the narrowest")
    min_res: int = setting(0, "lowest output resolution trained (0: the model's resolution / 16, at least 16)")
    perceptual: str = setting("auto", "perceptual term: auto (LPIPS if cached, else the model's discriminator, "
                                      "else none), lpips, discriminator or none", choices=PERCEPTUAL_CHOICES)
    perceptual_weight: float = setting(1.0, "weight of the perceptual term")
    full_weight: float = setting(4.0, "weight of the full generator's own match to the teacher (limits its drift)")
    mixing_prob: float = setting(0.5, "chance a sample mixes two latents at a random style slot")
    data: str = setting("", "a folder of real images: adds an adversarial term", default_text="data-free")
    adversarial_weight: float = setting(0.1, "weight of the adversarial term (with --data)")
    r1_gamma: float = setting(10.0, "R1 penalty of the discriminator (with --data)")
    d_reg_every: int = setting(16, "steps between R1 penalties (with --data)")
    device: str = setting("cpu", "cpu, cuda or cuda:N")
    amp: bool = setting(True, "bf16 autocast on CUDA")
    seed: int = setting(0, "random seed")
    log_every: int = setting(10, "steps between log rows")
    checkpoint_every: int = setting(200, "steps between checkpoints (0: at the end only)")
    keep_last: int = setting(2, "checkpoints kept")
    eval_seeds: int = setting(8, "latents of the before/after consistency report")

    def validate(self) -> None:
        if self.steps < 0 or self.batch < 1 or not self.lr > 0:
            raise InputError("--steps must be ≥ 0, --batch ≥ 1 and --lr > 0")
        if not self.ratios or any(not 0 < float(r) <= 1 for r in self.ratios):
            raise InputError("--ratios must lie in (0, 1]")
        if self.perceptual not in PERCEPTUAL_CHOICES:
            raise InputError(f"--perceptual must be one of {', '.join(PERCEPTUAL_CHOICES)}, got {self.perceptual!r}")
        if not 0 <= self.flexible_prob <= 1 or not 0 <= self.mixing_prob <= 1:
            raise InputError("--flexible-prob and --mixing-prob must be in [0, 1]")
        if self.keep_last < 1 or self.checkpoint_every < 0 or self.eval_seeds < 1:
            raise InputError("--keep-last and --eval-seeds must be ≥ 1, --checkpoint-every ≥ 0")
        dev = str(self.device)
        if not (dev == "cpu" or dev == "cuda" or (dev.startswith("cuda:") and dev[5:].isdigit())):
            raise InputError(f"--device must be cpu, cuda or cuda:N, got {dev!r}")
        import torch

        if dev.startswith("cuda") and not torch.cuda.is_available():
            raise InputError("--device cuda was asked for but no CUDA device is available")

    def to_dict(self) -> dict:
        return asdict(self)
