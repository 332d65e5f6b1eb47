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
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..measures.perceptual import load_lpips
from ..models.generator import Generator, GeneratorConfig
from . import distributed as ddp
from . import losses
from .channel_sort import apply_permutations, permute_optimizer, sort_channels
from .config import TrainConfig
from .data import open_data
from .diffaugment import DiffAugment
from .discriminator import Discriminator
from .fewshot import FewShotDiscriminator, reconstruction_loss, sle_pairs
from .harness import Every, postfix_of
from .run_state import RunFolderTrainer
from .subnets import SubnetSampler


class AnycostTrainer(RunFolderTrainer):
    kind = "anycost"
    what = "`anycost train`"
    untagged_ok = True  # its checkpoints carried no kind at first

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

        self.start_run_state()
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
        return (losses.d_hinge_loss if self.cfg.loss == "hinge" else losses.d_logistic_loss)(real_pred, fake_pred)

    def _g_loss(self, fake_pred):
        return (losses.g_hinge_loss if self.cfg.loss == "hinge" else losses.g_nonsaturating_loss)(fake_pred)

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
            r1 = losses.lazy_r1_loss(pred, real_r, cfg.r1_gamma, cfg.d_reg_every)
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
                    cons = losses.consistency_loss(fake, target, self.lpips, cfg.lpips_weight)
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
            pen, self.mean_path_length, _ = losses.path_length_penalty(img, w, self.mean_path_length)
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
    def parts(self) -> dict:
        return {"G": self.G, "G_ema": self.G_ema, "D": self.D, "opt_G": self.opt_G, "opt_D": self.opt_D}

    def own_state(self) -> dict:
        return {"stage": self.stage_at(self.step), "sorted": self.sorted,
                "teacher": self.teacher.state_dict() if self.teacher is not None else None,
                "mean_path_length": self.mean_path_length.detach().cpu()}

    def load_own_state(self, state: dict) -> None:
        self.sorted = bool(state["sorted"])
        if state.get("teacher") is not None:
            self.teacher = copy.deepcopy(self.G_ema).eval().requires_grad_(False)
            self.teacher.load_state_dict(state["teacher"])
        self.mean_path_length = state["mean_path_length"].to(self.device)

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
        from .metrics import consistency_metrics
        from .reporting import sample_grids

        cfg = self.cfg
        log = self.open_log(tensorboard=cfg.tensorboard)
        every = []
        if log is not None:
            def metrics(s: int, _) -> None:
                m = consistency_metrics(self.G_ema, cfg.ratios, n_seeds=cfg.metrics_seeds, lpips_model=self.lpips)
                log.append({"step": s, "stage": self.stage_at(s - 1), **m})

            every = [Every(cfg.sample_every, lambda s, _: sample_grids(self.G_ema, self.out, s, cfg.ratios)),
                     Every(cfg.metrics_every, metrics)]
        self.train(self.total, log=log, every=every, images_per_step=cfg.batch * self.world,
                   columns=lambda s: {"stage": self.stage_at(s - 1), "kimg": s * cfg.batch * self.world / 1000},
                   postfix=lambda logs: postfix_of(logs, lambda k: k.startswith("loss/") or k == "img_per_s"),
                   progress=self.rank == 0 and progress and not self.quiet)
        if log is None:
            return None
        sample_grids(self.G_ema, self.out, self.step, cfg.ratios)
        log.plot()
        return self.export()
