"""The settings of ``anycost train-autoencoder`` (no torch here: the command line is built from them at start-up)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import InputError
from ..models.channels import STANDARD_RATIOS
from ..settings_field import setting


@dataclass
class AutoencoderConfig:
    """Settings of ``anycost train-autoencoder``; each field's metadata holds its flag's help."""

    data: str = setting("synth:faces", "image folder, synth:faces or synth:faces:N")
    out: str = setting("runs/autoencoder", "run folder (checkpoints, samples, losses, model file)", required=True)
    res: int = setting(128, "output resolution")
    min_res: int = setting(32, "smallest trained output resolution")
    steps: int = setting(3000, "training steps")
    batch: int = setting(8, "images per step")
    # generator
    style_dim: int = setting(256, "latent width", group="generator")
    n_mlp: int = setting(4, "mapping network layers", group="generator")
    channel_multiplier: float = setting(0.5, "channel width multiplier", group="generator")
    channel_max: int = setting(128, "widest layer's channels", group="generator")
    ratios: list[float] = setting(list(STANDARD_RATIOS), "channel ratios (comma-separated; 1 is always trained)",
                                  group="generator")
    flexible_prob: float = 0.5
    # encoder
    enc_depth: int = setting(10, "encoder ResNet depth", group="encoder", choices=(10, 18, 34, 50))
    enc_width: int = setting(32, "encoder stem width", group="encoder")
    enc_input: int = setting(64, "encoder input size", group="encoder")
    # optimisation
    lr: float = setting(2e-3, "generator learning rate", group="optimisation")
    enc_lr: float = setting(1e-3, "encoder learning rate", group="optimisation")
    lpips_weight: float = setting(0.5, "used only when LPIPS weights are cached", group="optimisation")
    # Pixel MSE averages away small features (eyes, mouth, glasses); an attribute classifier's features keep them.
    feature_net: str | None = setting(None, "model file with an attribute classifier whose features and scores "
                                            "the reconstruction must match (a face-aware perceptual loss that "
                                            "needs no download)", group="optimisation")
    feature_weight: float = setting(0.05, "weight of the --feature-net loss", group="optimisation")
    # The feature net reads some attributes only partly right on the real image (a drawn smile); the
    # synthetic faces know their own labels, so the reconstruction can be asked for the true ones.
    label_weight: float = setting(0.0, "pull the --feature-net's scores of each reconstruction towards the "
                                       "face's own labels (synth:faces data, which knows them)",
                                  group="optimisation")
    sandwich: bool = setting(True, "train the sandwich of sub-generators (--no-sandwich: the full generator only)",
                             group="generator")
    # latent regularisation
    noise_std: float = setting(0.2, "Gaussian noise added to w in training", group="optimisation")
    kl_weight: float = setting(5e-4, "pull of w towards a unit Gaussian", group="optimisation")
    # strong: otherwise the per-slot residuals carry the face and samples of w alone are not faces
    residual_weight: float = setting(1.0, "penalty on per-slot W+ residuals", group="optimisation")
    # noise and KL ramp up from zero over this fraction of steps, so the decoder learns to use w
    # before noise hides it (otherwise the latent collapses, as in a VAE without KL annealing)
    warmup: float = setting(0.25, "fraction of steps over which latent noise and the KL pull ramp up",
                            group="optimisation")
    # multi-resolution curriculum: the largest output resolution grows over this fraction of steps
    curriculum: float = setting(0.3, "fraction of steps over which the largest trained resolution grows",
                                group="optimisation")
    top_prob: float = setting(0.5, "probability of training at the largest unlocked resolution", group="optimisation")
    # prior fit
    prior_samples: int = setting(2000, "images encoded to fit the latent prior", group="optimisation")
    mapping_steps: int = setting(100, "regression steps refining the mapping network", group="optimisation")
    # start from a model file's generator and encoder (fine-tuning); its architecture replaces the above
    init: str | None = setting(None, "start from this model's generator and encoder (name or file; its architecture "
                                     "replaces the generator/encoder options). Pair with --warmup 0 --curriculum 0",
                               group="run", metavar="MODEL")
    # bookkeeping
    seed: int = setting(0, "random seed", group="run")
    device: str = setting("cpu", "cpu, cuda or cuda:N")
    log_every: int = setting(10, "steps between log rows", group="run")
    sample_every: int = setting(500, "steps between sample grids (0: at the end only)", group="run")
    checkpoint_every: int = setting(250, "steps between checkpoints (0: at the end only)", group="run")
    keep_last: int = setting(2, "checkpoints kept", group="run")

    def validate(self) -> None:
        if self.res < 8 or self.res & (self.res - 1) or self.res > 1024:
            raise InputError(f"--res must be a power of two in 8..1024, got {self.res}")
        if self.min_res > self.res or self.min_res < 8 or self.min_res & (self.min_res - 1):
            raise InputError(f"--min-res must be a power of two in 8..{self.res}, got {self.min_res}")
        for name in ("steps", "batch", "style_dim", "n_mlp", "channel_max", "enc_width", "enc_input",
                     "prior_samples"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be positive")
        if self.batch < 2:
            raise InputError("--batch must be at least 2 (the encoder uses batch normalisation)")
        if self.enc_depth not in (10, 18, 34, 50):
            raise InputError("--enc-depth must be one of 10, 18, 34, 50")
        if not self.ratios or any(not 0 < float(r) <= 1 for r in self.ratios):
            raise InputError("channel ratios must lie in (0, 1]")
        if (self.noise_std < 0 or self.kl_weight < 0 or self.residual_weight < 0 or self.lpips_weight < 0
                or self.feature_weight < 0 or self.label_weight < 0):
            raise InputError("noise and loss weights must be non-negative")
        if self.label_weight > 0 and not (self.feature_net and self.feature_weight > 0):
            raise InputError("--label-weight scores reconstructions with the --feature-net: give one "
                             "(and a positive --feature-weight)")
        if not 0 <= self.warmup < 1:
            raise InputError("--warmup must be in [0, 1)")
        if not 0 <= self.curriculum < 1 or not 0 < self.top_prob <= 1:
            raise InputError("--curriculum must be in [0, 1) and --top-prob in (0, 1]")

    def to_dict(self) -> dict:
        return asdict(self)

