"""Training a W+ encoder against a frozen Anycost generator.

Each step samples latents (random truncation, optional style mixing), renders them, and
teaches the encoder to map the rendered image back to its W+ code:

- latent loss: MSE between the predicted and the true W+;
- image loss: MSE (+ LPIPS when its backbone weights are available offline) between the
  image rendered from the prediction and the target;
- consistency loss: the prediction rendered by a random cheaper sub-generator (fewer
  channels, lower resolution) must match the full generator's target downsampled, so the
  code also previews well at any cost.

The encoder sees each target at a random resolution (it resizes its input itself), so it
copes with faces of any size. Optionally, a folder of real images adds steps with image
losses only (no true latent exists for them).
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import AnycostError, InputError
from ..measures.perceptual import load_lpips
from ..models.encoder import Encoder, EncoderConfig
from ..models.generator import Generator
from .checkpoint import save_atomic, write_or_explain
from .encoder_training_config import EncoderTrainConfig
from .harness import Logs, run_steps


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def augment(x: torch.Tensor, gen: torch.Generator, p: float) -> torch.Tensor:
    """What separates a real aligned crop from a render, applied to a share ``p`` of the batch: a little
    off-centre, rescaled and tilted (alignment is never exact), recoloured (light, white balance),
    softer (resampling, focus) and noisier (sensor, compression). Only the encoder's input changes:
    it learns to answer the clean latent anyway."""
    n = x.shape[0]
    if p <= 0 or n == 0:
        return x

    def u(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return (lo + (hi - lo) * torch.rand(n, *shape, generator=gen)).to(x.device, x.dtype)

    ang = u(-0.07, 0.07)  # about ±4°
    scale = u(0.92, 1.08)
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack([torch.stack([cos, -sin, u(-0.04, 0.04)], 1), torch.stack([sin, cos, u(-0.04, 0.04)], 1)], 1)
    y = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), mode="bilinear",
                      padding_mode="reflection", align_corners=False)
    mean = y.mean(dim=(1, 2, 3), keepdim=True)
    y = (y - mean) * u(0.85, 1.15, 1, 1, 1) + mean + u(-0.1, 0.1, 1, 1, 1)  # contrast, brightness
    grey = y.mean(dim=1, keepdim=True)
    y = (y - grey) * u(0.8, 1.2, 1, 1, 1) + grey + u(-0.04, 0.04, 3, 1, 1)  # saturation, white balance
    soft = F.avg_pool2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    y = torch.lerp(y, soft, u(0.0, 0.8, 1, 1, 1))
    y = y + u(0.0, 0.03, 1, 1, 1) * torch.randn(y.shape, generator=gen).to(y)
    chosen = (torch.rand(n, generator=gen) < p).to(x.device)[:, None, None, None]
    return torch.where(chosen, y.clamp(-1, 1), x)


def build_encoder(G: Generator, *, depth: int = 18, width: int = 32, input_size: int | None = None) -> Encoder:
    """An encoder sized for ``G`` with ``mean_latent`` set to G's mean w."""
    size = input_size or min(G.resolution, 256)
    E = Encoder(EncoderConfig(n_style=G.n_style, style_dim=G.style_dim, depth=depth, width=width,
                              input_size=size))
    with torch.no_grad():
        E.mean_latent.copy_(G.truncation_center.reshape(-1).to(E.mean_latent))
    return E


@dataclass
class TrainState:
    step: int = 0
    history: list[dict] = field(default_factory=list)


def sample_w_plus(G: Generator, n: int, gen: torch.Generator, truncation: tuple[float, float],
                  mix_prob: float) -> torch.Tensor:
    """Random W+ codes: mapped z, per-sample truncation, style mixing for some samples."""
    dev = next(G.parameters()).device
    z = torch.randn(2, n, G.style_dim, generator=gen).to(dev)
    w = G.mapping(z)  # (2, n, D)
    psi = (truncation[0] + (truncation[1] - truncation[0]) * torch.rand(n, 1, generator=gen)).to(dev)
    mean = G.truncation_center.to(dev)
    w = mean + psi * (w - mean)
    slots = torch.arange(G.n_style, device=dev)
    cross = torch.randint(1, max(2, G.n_style), (n, 1), generator=gen).to(dev)
    mix = (torch.rand(n, 1, generator=gen) < mix_prob).to(dev)
    take_second = (slots[None] >= cross) & mix  # (n, n_style)
    return torch.where(take_second[..., None], w[1][:, None], w[0][:, None])


def _checkpoint_payload(E: Encoder, opt: torch.optim.Optimizer, state: TrainState, cfg: EncoderTrainConfig) -> dict:
    return {"encoder": E.state_dict(), "optimizer": opt.state_dict(), "step": state.step,
            "encoder_config": E.config.to_dict(), "train_config": {k: (list(v) if isinstance(v, tuple) else v)
                                                                   for k, v in asdict(cfg).items()},
            "history": state.history[-1000:]}


def save_checkpoint(path: str | os.PathLike, payload: dict) -> None:
    """Atomic torch.save of plain tensors and containers (loads with weights_only=True)."""
    save_atomic(payload, path)


def load_checkpoint(path: str | os.PathLike) -> dict:
    from ..io.checkpoint import load_weights_only

    obj = load_weights_only(Path(path))
    if not isinstance(obj, dict) or "encoder" not in obj or "step" not in obj:
        raise InputError(f"{path} is not an encoder training checkpoint")
    return obj


class _RealImages:
    """Random batches from an image folder, loaded lazily at the loss resolution."""

    def __init__(self, folder: str, size: int):
        from .image_folder import list_images

        self.paths = list_images(folder)
        self.size = size

    def batch(self, n: int, rng: random.Random) -> torch.Tensor:
        from .image_folder import load_image

        return torch.stack([load_image(rng.choice(self.paths), self.size) for _ in range(n)])


class _EncoderSteps:
    """One encoder training step at a time; batches are seeded by the step, so a resumed run draws the
    same data as an uninterrupted one and no RNG state needs keeping."""

    def __init__(self, G: Generator, E: Encoder, cfg: EncoderTrainConfig, opt: torch.optim.Optimizer,
                 state: TrainState):
        self.G, self.E, self.cfg, self.opt, self.state = G, E, cfg, opt, state
        self.device = torch.device(cfg.device)
        self.loss_res = cfg.loss_res or min(G.resolution, 256)
        if self.loss_res not in G.resolutions:
            raise InputError(f"loss resolution must be one of {G.resolutions}, got {self.loss_res}")
        self.input_res = [r for r in G.resolutions if cfg.min_input_res <= r <= self.loss_res] or [self.loss_res]
        self.sub_res = [r for r in G.resolutions if r <= self.loss_res]
        self.lpips = load_lpips("alex", self.device) if cfg.lpips_weight > 0 else None
        self.real = (_RealImages(cfg.real_folder, self.loss_res) if cfg.real_folder and cfg.real_ratio > 0
                     else None)

    @property
    def step(self) -> int:
        return self.state.step

    def image_loss(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, Logs]:
        mse = F.mse_loss(pred, target)
        parts = {"img_mse": float(mse.detach())}
        loss = self.cfg.image_weight * mse
        if self.lpips is not None and pred.shape[-1] >= 32:
            lp = self.lpips(pred, target).mean()
            parts["lpips"] = float(lp.detach())
            loss = loss + self.cfg.lpips_weight * lp
        return loss, parts

    def train_step(self) -> Logs:
        cfg, G, E, step = self.cfg, self.G, self.E, self.state.step
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        rng = random.Random(cfg.seed * 1_000_003 + step)
        parts: Logs = {}
        if self.real is not None and rng.random() < cfg.real_ratio:
            target = self.real.batch(cfg.batch, rng).to(self.device)
            pred = E(_resize(target, rng.choice(self.input_res)))
            loss, parts = self.image_loss(G.synthesize(pred, res=self.loss_res), target)
            parts["real"] = 1.0
        else:
            with torch.no_grad():
                w_plus = sample_w_plus(G, cfg.batch, gen, cfg.truncation, cfg.mix_prob)
                target = G.synthesize(w_plus, res=self.loss_res)
            pred = E(_resize(augment(target, gen, cfg.augment), rng.choice(self.input_res)))
            lat = F.mse_loss(pred, w_plus)
            loss = cfg.latent_weight * lat
            parts["latent"] = float(lat.detach())
            if cfg.image_weight > 0 or self.lpips is not None:
                il, ip = self.image_loss(G.synthesize(pred, res=self.loss_res), target)
                loss, parts = loss + il, {**parts, **ip}
            if cfg.consistency_weight > 0:
                r = rng.choice(self.sub_res)
                ratio = rng.choice([q for q in cfg.ratios if q < 1] or [1.0])
                sub = G.synthesize(pred, res=r, channels=None if ratio == 1.0 else ratio)
                cons = F.mse_loss(sub, _resize(target, r))
                loss = loss + cfg.consistency_weight * cons
                parts["consistency"] = float(cons.detach())
        if not math.isfinite(float(loss.detach())):
            raise AnycostError(f"encoder training diverged at step {step} (loss {float(loss)}); "
                               "lower the learning rate")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        parts["loss"] = float(loss.detach())
        self.state.history.append({"step": step, **{k: round(v, 6) for k, v in parts.items()}})
        self.state.step += 1
        return parts


def train_encoder(G: Generator, E: Encoder, cfg: EncoderTrainConfig, *, resume: bool = False,
                  progress: bool = True, log: Callable[[int, dict], None] | None = None,
                  log_every: int = 50) -> TrainState:
    """Train ``E`` in place against ``G`` (frozen); returns the step count and loss history."""
    if (E.config.n_style, E.config.style_dim) != (G.n_style, G.style_dim):
        raise InputError(f"encoder predicts {E.config.n_style}×{E.config.style_dim} styles, "
                         f"the generator needs {G.n_style}×{G.style_dim}")
    device = torch.device(cfg.device)
    G = G.to(device).eval().requires_grad_(False)
    E = E.to(device).train()
    opt = torch.optim.Adam(E.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
    state = TrainState()
    if resume and cfg.checkpoint and Path(cfg.checkpoint).is_file():
        ck = load_checkpoint(cfg.checkpoint)
        if ck["encoder_config"] != E.config.to_dict():
            raise InputError(f"checkpoint {cfg.checkpoint} is for encoder settings {ck['encoder_config']}, "
                             f"not {E.config.to_dict()}")
        E.load_state_dict(ck["encoder"])
        opt.load_state_dict(ck["optimizer"])
        state = TrainState(int(ck["step"]), list(ck.get("history", [])))
    steps = _EncoderSteps(G, E, cfg, opt, state)
    path = cfg.checkpoint

    def checkpoint(_seconds: float) -> None:
        if path:
            write_or_explain(lambda: save_atomic(_checkpoint_payload(E, opt, state, cfg), path),
                             f"the step-{state.step} encoder checkpoint {path}", "run it again with --resume")

    run_steps(steps, cfg.steps, log=log, log_every=log_every, log_last=True, postfix_every=1,
              postfix=lambda parts: {"loss": f"{parts['loss']:.4f}"}, checkpoint=checkpoint if path else None,
              checkpoint_every=cfg.checkpoint_every, progress=progress, desc="encoder", unit="step",
              resume_hint="run it again with --resume")
    E.eval()
    return state


@torch.no_grad()
def evaluate_encoder(G: Generator, E: Encoder, *, n: int = 64, seed: int = 12345, res: int | None = None,
                     truncation: float = 0.7, batch: int = 16) -> dict[str, float]:
    """Held-out reconstruction quality on fresh samples: latent MSE and image MSE (full and ¼ cost)."""
    E.eval()
    dev = next(G.parameters()).device
    res = res or min(G.resolution, 256)
    w = G.truncate(G.mapping(G.sample_z(n, seed, device=dev)), truncation)
    wp = G.to_w_plus(w)
    lat = img = sub = 0.0
    small = G.resolutions[max(0, len(G.resolutions) - 3)]
    for chunk in wp.split(batch):
        target = G.synthesize(chunk, res=res)
        pred = E(target.to(next(E.parameters()).device)).to(dev)
        lat += float(F.mse_loss(pred, chunk, reduction="sum"))
        img += float(F.mse_loss(G.synthesize(pred, res=res), target, reduction="sum"))
        sub += float(F.mse_loss(G.synthesize(pred, res=small, channels=0.5), _resize(target, small),
                                reduction="sum"))
    return {"latent_mse": lat / wp.numel(), "image_mse": img / (n * 3 * res * res),
            "sub_image_mse": sub / (n * 3 * small * small), "mean_latent_mse":
            float(F.mse_loss(E.mean_latent.expand_as(wp).to(dev), wp))}
