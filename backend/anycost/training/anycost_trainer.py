"""Staged Anycost GAN training.

Stages (any subset, in this order, sharing the step budget by weight):

- ``plain``: the full generator at full resolution.
- ``multires``: each step samples an output resolution; the generator's intermediate ToRGB
  image at that resolution is judged by the multi-resolution discriminator.
- ``adaptive``: channels are first sorted by importance; each step then trains the sandwich of
  sub-generators (largest, smallest and random uniform/flexible ones) against a
  generator-conditioned discriminator, plus a consistency loss towards the full generator
  (or a frozen teacher).

Randomness that must agree across data-parallel ranks (resolution, sub-generators, decoder
crops) comes from one shared ``random.Random``; latents, noise and augmentation come from the
per-rank global generators. Both are checkpointed, so resumed runs continue exactly.
"""

from __future__ import annotations

import contextlib
import copy
import random
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..measures.perceptual import load_lpips
from ..models.generator import Generator, GeneratorConfig
from . import distributed as ddp
from .channel_sort import apply_permutations, permute_optimizer, sort_channels
from .checkpoint import (
    capture_rng,
    load_checkpoint,
    restore_rng,
    resume_path,
    save_checkpoint_in,
)
from .config import TrainConfig
from .data import open_data
from .diffaugment import DiffAugment
from .discriminator import Discriminator
from .fewshot import FewShotDiscriminator, reconstruction_loss, sle_pairs
from .losses import (
    consistency_loss,
    d_hinge_loss,
    d_logistic_loss,
    g_hinge_loss,
    g_nonsaturating_loss,
    lazy_r1_loss,
    path_length_penalty,
)
from .subnets import SubnetSampler

CKPT_FORMAT = "anycost-train-checkpoint"


class AnycostTrainer:
    def __init__(self, cfg: TrainConfig, data=None, *, rank: int = 0, world: int = 1, quiet: bool = False):
        cfg.validate()
        self.cfg = cfg
        self.rank, self.world = rank, world
        self.quiet = quiet
        self.device = torch.device(cfg.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise InputError("--device cuda was asked for but no CUDA device is available")
        self.out = Path(cfg.out)
        self.total = cfg.total_steps(world)
        self.plan = cfg.stage_plan(self.total)
        stages = {name for name, _, _ in self.plan}

        # Identical initial weights on every rank (also broadcast below, to be safe).
        torch.manual_seed(cfg.seed)
        self.G = Generator(self.generator_config()).to(self.device)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.subnets = SubnetSampler(self.G, cfg.ratios, cfg.flexible_prob, cfg.n_random_subnets)
        cond_dim = self.subnets.cond_dim if "adaptive" in stages else 0
        d_kwargs = dict(channel_multiplier=cfg.d_channel_multiplier, channel_max=cfg.d_channel_max,
                        cond_dim=cond_dim)
        D_cls = FewShotDiscriminator if cfg.fewshot else Discriminator
        self.D = D_cls(cfg.res, **d_kwargs).to(self.device)
        ddp.broadcast_module(self.G)
        ddp.broadcast_module(self.D)
        self.G_ema.load_state_dict(self.G.state_dict())

        # Adam as in StyleGAN2, with the lazy-regularisation correction of lr and betas.
        g_c = cfg.g_reg_every / (cfg.g_reg_every + 1) if cfg.pl_weight > 0 else 1.0
        d_c = cfg.d_reg_every / (cfg.d_reg_every + 1) if cfg.r1_gamma > 0 else 1.0
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=cfg.lr * g_c, betas=(0.0, 0.99 ** g_c))
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=cfg.lr * d_c, betas=(0.0, 0.99 ** d_c))

        self.step = 0
        self.sorted = False
        self.teacher: Generator | None = None
        self.mean_path_length = torch.zeros((), device=self.device)
        self.sched = random.Random(cfg.seed)
        torch.manual_seed(cfg.seed * 7919 + 17 + rank)
        random.seed(cfg.seed * 7919 + 29 + rank)
        np.random.seed((cfg.seed * 7919 + 31 + rank) % 2 ** 32)

        self.augment = DiffAugment(cfg.diffaug) if cfg.diffaug else None
        needs_lpips = cfg.lpips_weight > 0 and (cfg.fewshot or "adaptive" in stages)
        self.lpips = load_lpips("alex", self.device) if needs_lpips else None
        self.amp = bool(cfg.amp) and self.device.type == "cuda"
        self.data = data if data is not None else open_data(cfg.data, cfg.res, self.G.resolutions, cfg.batch,
                                                            cfg.seed, rank, world)
        self._log = None

    # ------------------------------------------------------------------ setup
    def generator_config(self) -> GeneratorConfig:
        c = self.cfg
        return GeneratorConfig(resolution=c.res, style_dim=c.style_dim, n_mlp=c.n_mlp,
                               channel_multiplier=c.channel_multiplier, channel_max=c.channel_max,
                               sle=sle_pairs(c.res) if c.sle else [])

    def stage_at(self, step: int) -> str:
        for name, start, end in self.plan:
            if start <= step < end:
                return name
        return self.plan[-1][0]

    def _autocast(self):
        if self.amp:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ sampling
    def _latents(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        z1 = torch.randn(n, self.G.style_dim).to(self.device)
        if float(torch.rand(())) < self.cfg.mixing_prob and self.G.n_style > 1:
            z2 = torch.randn(n, self.G.style_dim).to(self.device)
            return z1, z2, int(torch.randint(1, self.G.n_style, ()))
        return z1, None, self.G.n_style

    def _noise(self, n: int) -> list[torch.Tensor]:
        return [torch.randn(n, 1, *self.G.noises.get(i).shape[-2:]).to(self.device)
                for i in range(self.G.num_layers)]

    @staticmethod
    def _w_plus(G: Generator, latents) -> torch.Tensor:
        z1, z2, cross = latents
        w1 = G.mapping(z1)
        return G.to_w_plus(w1) if z2 is None else G.mix_styles(w1, G.mapping(z2), cross)

    def _cond(self, chans: list[int] | None) -> torch.Tensor | None:
        if self.D.cond_dim == 0:
            return None
        return self.subnets.encode(chans).to(self.device).unsqueeze(0)

    def _aug(self, x: torch.Tensor) -> torch.Tensor:
        return self.augment(x) if self.augment is not None else x

    def _d_loss(self, real_pred, fake_pred):
        return (d_hinge_loss if self.cfg.loss == "hinge" else d_logistic_loss)(real_pred, fake_pred)

    def _g_loss(self, fake_pred):
        return (g_hinge_loss if self.cfg.loss == "hinge" else g_nonsaturating_loss)(fake_pred)

    def _finish(self, module: torch.nn.Module) -> None:
        ddp.average_gradients(module.parameters())

    # ------------------------------------------------------------------ stages
    def enter_adaptive(self) -> None:
        """Sort channels by importance (G, its EMA and G's Adam moments alike); make the teacher."""
        perms = sort_channels(self.G)
        apply_permutations(self.G_ema, perms)
        permute_optimizer(self.opt_G, self.G, perms)
        self.sorted = True
        if self.cfg.distill == "teacher":
            self.teacher = copy.deepcopy(self.G_ema).eval().requires_grad_(False)

    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        stage = self.stage_at(self.step)
        if stage == "adaptive" and not self.sorted:
            self.enter_adaptive()
        batch = self.data.next_batch()
        res = cfg.res if stage == "plain" else self.sched.choice(self.G.resolutions)
        d_chans = self.subnets.random(self.sched) if stage == "adaptive" else None
        g_chans = self.subnets.sandwich(self.sched) if stage == "adaptive" else [None]
        real = batch[res].to(self.device)
        n = real.shape[0]
        logs: dict[str, float] = {"res": float(res)}

        # ---- discriminator
        self.G.requires_grad_(False)
        self.D.requires_grad_(True)
        cond = self._cond(d_chans)
        with torch.no_grad(), self._autocast():
            fake = self.G.synthesize(self._w_plus(self.G, self._latents(n)), res=res, channels=d_chans,
                                     noise=self._noise(n), impl="reference")
        with self._autocast():
            fake_pred = self.D(self._aug(fake.detach()), cond)
            if cfg.fewshot:
                real_pred, rec = reconstruction_loss(self.D, self._aug(real), cond, self.sched, self.lpips)
                logs["loss/recon"] = float(rec.detach())
            else:
                real_pred, rec = self.D(self._aug(real), cond), 0.0
            d_loss = self._d_loss(real_pred, fake_pred) + cfg.recon_weight * rec
        self.opt_D.zero_grad(set_to_none=True)
        d_loss.backward()
        self._finish(self.D)
        self.opt_D.step()
        logs["loss/d"] = float(d_loss.detach())
        logs["d/real"] = float(real_pred.detach().float().mean())
        logs["d/fake"] = float(fake_pred.detach().float().mean())

        if cfg.r1_gamma > 0 and self.step % cfg.d_reg_every == 0:
            real_r = real.detach().requires_grad_(True)
            pred = self.D(self._aug(real_r), cond)  # full precision: the penalty is a gradient norm
            r1 = lazy_r1_loss(pred, real_r, cfg.r1_gamma, cfg.d_reg_every)
            self.opt_D.zero_grad(set_to_none=True)
            r1.backward()
            self._finish(self.D)
            self.opt_D.step()
            logs["loss/r1"] = float(r1.detach()) / (cfg.r1_gamma / 2 * cfg.d_reg_every)

        # ---- generator
        self.G.requires_grad_(True)
        self.D.requires_grad_(False)
        self.opt_G.zero_grad(set_to_none=True)
        teacher = self.teacher if self.teacher is not None else self.G
        g_total, cons_total = 0.0, 0.0
        for chans in g_chans:
            latents, noise = self._latents(n), self._noise(n)
            with self._autocast():
                fake = self.G.synthesize(self._w_plus(self.G, latents), res=res, channels=chans, noise=noise)
                g_loss = self._g_loss(self.D(self._aug(fake), self._cond(chans)))
                if stage == "adaptive" and chans != self.subnets.full and cfg.consistency_weight > 0:
                    with torch.no_grad():
                        target = teacher.synthesize(self._w_plus(teacher, latents), res=res, noise=noise,
                                                    impl="reference")
                    cons = consistency_loss(fake, target, self.lpips, cfg.lpips_weight)
                    cons_total += float(cons.detach())
                    g_loss = g_loss + cfg.consistency_weight * cons
            (g_loss / len(g_chans)).backward()
            g_total += float(g_loss.detach())
        self._finish(self.G)
        self.opt_G.step()
        logs["loss/g"] = g_total / len(g_chans)
        if stage == "adaptive":
            logs["loss/consistency"] = cons_total / max(1, len(g_chans) - 1)

        if cfg.pl_weight > 0 and self.step % cfg.g_reg_every == 0:
            m = max(1, n // 2)
            w = self._w_plus(self.G, self._latents(m))
            img = self.G.synthesize(w, res=res, noise=self._noise(m))
            pen, self.mean_path_length, _ = path_length_penalty(img, w, self.mean_path_length)
            loss = cfg.pl_weight * cfg.g_reg_every * pen + 0 * img.float().sum()
            self.opt_G.zero_grad(set_to_none=True)
            loss.backward()
            self._finish(self.G)
            self.opt_G.step()
            logs["loss/pl"] = float(pen.detach())

        self.update_ema()
        self.step += 1
        return logs

    @torch.no_grad()
    def update_ema(self) -> None:
        """EMA with a half-life of ``ema_kimg`` thousand images (StyleGAN2), optional ramp-up."""
        cfg = self.cfg
        batch = cfg.batch * self.world
        ema_nimg = cfg.ema_kimg * 1000
        if cfg.ema_rampup:
            ema_nimg = min(ema_nimg, (self.step + 1) * batch * cfg.ema_rampup)
        beta = 0.5 ** (batch / max(ema_nimg, 1e-8))
        for pe, p in zip(self.G_ema.parameters(), self.G.parameters(), strict=True):
            pe.lerp_(p.detach(), 1 - beta)
        for be, b in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
            be.copy_(b)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """Everything needed to continue exactly (gathers every rank's RNG and data position)."""
        rng = ddp.all_gather_object(capture_rng())
        data_state = ddp.all_gather_object(self.data.state_dict())
        return {
            "format": CKPT_FORMAT, "version": 1, "config": self.cfg.to_dict(), "step": self.step,
            "stage": self.stage_at(self.step), "sorted": self.sorted, "world": self.world,
            "G": self.G.state_dict(), "G_ema": self.G_ema.state_dict(), "D": self.D.state_dict(),
            "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
            "teacher": self.teacher.state_dict() if self.teacher is not None else None,
            "mean_path_length": self.mean_path_length.detach().cpu(),
            "sched_rng": self.sched.getstate(), "rng": rng, "data": data_state,
        }

    def load_state_dict(self, state: dict) -> None:
        try:
            self.G.load_state_dict(state["G"])
            self.G_ema.load_state_dict(state["G_ema"])
            self.D.load_state_dict(state["D"])
            self.opt_G.load_state_dict(state["opt_G"])
            self.opt_D.load_state_dict(state["opt_D"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise InputError(f"the checkpoint does not fit these model settings: {e}") from e
        self.step = int(state["step"])
        self.sorted = bool(state["sorted"])
        if state.get("teacher") is not None:
            self.teacher = copy.deepcopy(self.G_ema).eval().requires_grad_(False)
            self.teacher.load_state_dict(state["teacher"])
        self.mean_path_length = state["mean_path_length"].to(self.device)
        self.sched.setstate(_tuple(state["sched_rng"]))
        ranks = len(state["rng"])
        if ranks != self.world:
            warnings.warn(f"checkpoint was written by {ranks} process(es), resuming with {self.world}: "
                          "the run continues but not bit-for-bit", RuntimeWarning, stacklevel=2)
        restore_rng(state["rng"][self.rank % ranks])
        self.data.load_state_dict(state["data"][self.rank % ranks])

    def save_checkpoint(self) -> Path | None:
        state = self.state_dict()  # every rank takes part in the gather
        if self.rank != 0:
            return None
        return save_checkpoint_in(self.out, state, self.step, self.cfg.keep_last)

    def resume(self, path: str | Path | None = None) -> Path:
        path = resume_path(self.out, path)
        self.load_state_dict(load_checkpoint(path))
        return path

    # ------------------------------------------------------------------ outputs
    def export(self, path: str | Path | None = None) -> Path:
        from ..io.modelfile import save_model

        cfg = self.cfg
        path = Path(path) if path else self.out / "model.safetensors"
        info = {
            "name": Path(cfg.out).name or "anycost-model",
            "channel_ratios": sorted(float(r) for r in cfg.ratios),
            "channels_sorted": self.sorted,
            "training": {
                "tool": "anycost train", "preset": cfg.preset, "data": cfg.data, "steps": self.step,
                "kimg": round(self.step * cfg.batch * self.world / 1000, 3), "stages": cfg.stages,
                "batch": cfg.batch, "world_size": self.world, "seed": cfg.seed, "loss": cfg.loss,
                "fewshot": cfg.fewshot, "diffaug": cfg.diffaug,
                "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        }
        return save_model(path, generator=self.G_ema, info=info)

    def run(self, progress: bool = True) -> Path | None:
        """Train to the end, with logs, samples, metrics and checkpoints; returns the model file (rank 0)."""
        from tqdm import tqdm

        from .metrics import consistency_metrics
        from .reporting import LossLog, sample_grids

        cfg = self.cfg
        main = self.rank == 0
        log = LossLog(self.out, cfg.tensorboard) if main else None
        if log is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            log.truncate(self.step)
            (self.out / "config.json").write_text(_json(cfg.to_dict()))
        bar = tqdm(total=self.total, initial=self.step, disable=not (main and progress and not self.quiet),
                   dynamic_ncols=True)
        t_last, imgs = time.perf_counter(), 0
        while self.step < self.total:
            logs = self.train_step()
            imgs += cfg.batch * self.world
            s = self.step
            if cfg.log_every and s % cfg.log_every == 0:
                now = time.perf_counter()
                logs["img_per_s"] = imgs / max(now - t_last, 1e-9)
                t_last, imgs = now, 0
                if log is not None:
                    log.append({"step": s, "stage": self.stage_at(s - 1), "kimg": s * cfg.batch * self.world / 1000,
                                **logs})
                bar.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in logs.items()
                                 if k.startswith("loss/") or k == "img_per_s"})
            if main and cfg.sample_every and s % cfg.sample_every == 0:
                sample_grids(self.G_ema, self.out, s, cfg.ratios)
            if main and cfg.metrics_every and s % cfg.metrics_every == 0:
                m = consistency_metrics(self.G_ema, cfg.ratios, n_seeds=cfg.metrics_seeds, lpips_model=self.lpips)
                log.append({"step": s, "stage": self.stage_at(s - 1), **m})
            if cfg.checkpoint_every and s % cfg.checkpoint_every == 0:
                self.save_checkpoint()
            bar.update(1)
        bar.close()
        if not (cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0):
            self.save_checkpoint()
        if not main:
            return None
        sample_grids(self.G_ema, self.out, self.step, cfg.ratios)
        log.plot()
        return self.export()


def _tuple(x):
    return tuple(_tuple(v) for v in x) if isinstance(x, list | tuple) else x


def _json(d: dict) -> str:
    import json

    return json.dumps(d, indent=2, sort_keys=True)
