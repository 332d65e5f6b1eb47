"""Training settings: defaults, presets, config files (JSON/TOML) and their merging.

Precedence, lowest first: defaults → preset → config file → command-line flags. A config file
uses the same keys as the flags (``--keep-last`` ↔ ``keep_last``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..errors import InputError
from ..settings_field import setting

STAGE_NAMES = ("plain", "multires", "adaptive")


@dataclass
class TrainConfig:
    # data / run
    data: str = setting("", "image folder, synth:faces (rendered on the fly) or synth:faces:N (N fixed faces)")
    res: int = setting(256, "output resolution (power of two)")
    out: str = setting("runs/anycost", "output folder (checkpoints, samples, logs, model.safetensors)")
    steps: int | None = setting(None, "training steps", exclusive="length")
    kimg: float | None = setting(None, "training length in thousands of real images", exclusive="length")
    batch: int = setting(16, "batch size per process")
    device: str = setting("cpu", "cpu, cuda or cuda:N (under torchrun: the local GPU)")
    seed: int = setting(0, "random seed")
    keep_last: int = setting(3, "checkpoints to keep")
    tensorboard: bool = setting(False, "also log to TensorBoard if installed")
    # the presets' names are the keys of PRESETS (below)
    preset: str = setting("anycost", "settings bundle; it replaces the defaults of the other settings",
                          choices=("anycost", "fewshot", "tiny"))
    # generator
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: float = 2
    channel_max: int = 512
    sle: bool = False
    # discriminator
    d_channel_multiplier: float = 2
    d_channel_max: int = 512
    fewshot: bool = False  # FastGAN discriminator with reconstruction decoders
    # stages: "name:weight,…" — weights are shares of the total steps
    stages: str = setting("plain:0.4,multires:0.3,adaptive:0.3", "stage plan: stage:share of the steps, …")
    # losses
    loss: str = "logistic"  # or "hinge"
    r1_gamma: float = 10.0
    d_reg_every: int = 16
    pl_weight: float = 0.0
    g_reg_every: int = 4
    diffaug: str = ""  # e.g. "color,translation,cutout"
    recon_weight: float = 1.0
    consistency_weight: float = 1.0
    lpips_weight: float = 1.0
    distill: str = "full"  # "full" (the current full generator) or "teacher" (frozen copy)
    # optimisation
    lr: float = 0.002
    ema_kimg: float = 10.0
    ema_rampup: float | None = None
    mixing_prob: float = 0.9
    amp: bool = True  # mixed precision, CUDA only
    # adaptive channels
    ratios: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.75, 1.0])
    flexible_prob: float = 0.5
    n_random_subnets: int = 2
    # intervals (steps; 0 = never)
    log_every: int = setting(10, "steps between loss log rows")
    sample_every: int = setting(500, "steps between sample grids (0: end only)")
    checkpoint_every: int = setting(1000, "steps between checkpoints (0: end only)")
    metrics_every: int = setting(1000, "steps between consistency metrics (0: never)")
    metrics_seeds: int = 8

    def to_dict(self) -> dict:
        return asdict(self)

    # ---------------------------------------------------------------- derived
    def total_steps(self, world: int = 1) -> int:
        if self.steps is not None:
            return int(self.steps)
        if self.kimg is not None:
            return max(1, -(-int(self.kimg * 1000) // (self.batch * world)))
        raise InputError("give the training length with --steps or --kimg")

    def stage_plan(self, total: int) -> list[tuple[str, int, int]]:
        """[(stage, first_step, end_step)] covering 0..total."""
        parts = parse_stages(self.stages)
        wsum = sum(w for _, w in parts)
        plan = []
        start = 0
        for i, (name, w) in enumerate(parts):
            end = total if i == len(parts) - 1 else start + round(total * w / wsum)
            end = min(max(end, start), total)
            if end > start:
                plan.append((name, start, end))
            start = end
        return plan

    def validate(self) -> None:
        if self.res < 8 or self.res & (self.res - 1) or self.res > 1024:
            raise InputError(f"--res must be a power of two in 8..1024, got {self.res}")
        dev = str(self.device)
        if not (dev == "cpu" or dev == "cuda" or (dev.startswith("cuda:") and dev[5:].isdigit())):
            raise InputError(f"--device must be cpu, cuda or cuda:N, got {dev!r}")
        if self.batch < 1:
            raise InputError("--batch must be at least 1")
        if self.loss not in ("logistic", "hinge"):
            raise InputError(f"loss must be 'logistic' or 'hinge', got {self.loss!r}")
        if self.distill not in ("full", "teacher"):
            raise InputError(f"distill must be 'full' or 'teacher', got {self.distill!r}")
        if self.keep_last < 1:
            raise InputError("--keep-last must be at least 1")
        if not self.ratios or any(not 0 < r <= 1 for r in self.ratios):
            raise InputError("ratios must lie in (0, 1]")
        parse_stages(self.stages)
        from .diffaugment import parse_policy

        try:
            parse_policy(self.diffaug)
        except ValueError as e:
            raise InputError(str(e)) from e


def parse_stages(text: str) -> list[tuple[str, float]]:
    out = []
    for item in str(text).split(","):
        item = item.strip()
        if not item:
            continue
        name, _, weight = item.partition(":")
        name = name.strip()
        if name not in STAGE_NAMES:
            raise InputError(f"unknown training stage {name!r}; stages are {', '.join(STAGE_NAMES)}")
        try:
            w = float(weight) if weight else 1.0
        except ValueError as e:
            raise InputError(f"stage weight must be a number: {item!r}") from e
        if w < 0:
            raise InputError(f"stage weight must not be negative: {item!r}")
        out.append((name, w))
    if not out or sum(w for _, w in out) <= 0:
        raise InputError("at least one training stage with a positive weight is needed")
    return out


PRESETS: dict[str, dict] = {
    # Large data: StyleGAN2 losses and all three Anycost stages.
    "anycost": {},
    # ~100 images: FastGAN discriminator, hinge, DiffAugment, SLE, a small model, then a short
    # adaptive stage so the sub-generators work.
    "fewshot": {
        "res": 256, "style_dim": 256, "n_mlp": 4, "channel_multiplier": 1, "channel_max": 256,
        "d_channel_multiplier": 1, "d_channel_max": 256, "sle": True, "fewshot": True, "loss": "hinge",
        "r1_gamma": 0.0, "diffaug": "color,translation,cutout", "batch": 8, "ema_kimg": 1.0,
        "stages": "plain:0.6,multires:0.2,adaptive:0.2", "steps": 20000,
    },
    # Smoke runs and tests: seconds on a CPU.
    "tiny": {
        "res": 32, "style_dim": 16, "n_mlp": 1, "channel_multiplier": 1, "channel_max": 16,
        "d_channel_multiplier": 1, "d_channel_max": 16, "batch": 2, "steps": 6, "ema_kimg": 0.01,
        "stages": "plain:1,multires:1,adaptive:1", "d_reg_every": 2, "log_every": 1, "sample_every": 0,
        "checkpoint_every": 0, "metrics_every": 0, "metrics_seeds": 2, "n_random_subnets": 1,
    },
}


def load_config_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file not found: {path}")
    text = path.read_bytes()
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text.decode("utf-8"))
        else:
            data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"config file {path} could not be parsed: {e}") from e
    if not isinstance(data, dict):
        raise InputError(f"config file {path} must hold a table/object of settings")
    return {k.replace("-", "_"): v for k, v in data.items()}


def build_config(overrides: dict | None = None, config_file: str | Path | None = None,
                 base: dict | None = None) -> TrainConfig:
    """Merge preset, config file and explicit overrides (None values in overrides are ignored).

    ``base`` (a resumed run's settings) replaces defaults and preset.
    """
    known = {f.name for f in fields(TrainConfig)}
    file_values = load_config_file(config_file) if config_file else {}
    cli = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = (set(file_values) | set(cli)) - known
    if unknown:
        raise InputError(f"unknown training settings: {', '.join(sorted(unknown))}")
    preset = cli.get("preset", file_values.get("preset", "anycost"))
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; presets are {', '.join(PRESETS)}")
    values: dict = {"preset": preset}
    if base is not None:
        values = {k: v for k, v in base.items() if k in known}
    else:
        values.update(PRESETS[preset])
    values.update(file_values)
    values.update(cli)
    if "steps" in cli or "kimg" in cli:
        # An explicit length on the command line replaces the other unit from lower layers.
        values.pop("kimg" if "steps" in cli else "steps", None)
        values.update({k: cli[k] for k in ("steps", "kimg") if k in cli})
    elif "kimg" in file_values and "steps" not in file_values:
        values.pop("steps", None)
    try:
        cfg = TrainConfig(**values)
    except TypeError as e:
        raise InputError(f"invalid training settings: {e}") from e
    cfg.validate()
    return cfg
