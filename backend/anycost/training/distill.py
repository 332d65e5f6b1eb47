"""Distillation: the Anycost recipe applied to a pretrained StyleGAN2.

A plain StyleGAN2's channel-reduced sub-generators draw noise and its intermediate RGB images
do not match its final image, so previews would lie. Distillation makes them agree:

1. Channels are sorted by importance (``channel_sort``): the full generator computes exactly
   what it did, and the first channels of every layer are the ones that matter most.
2. The frozen original is the teacher. Each step renders the teacher's full image for a batch of
   latents, samples an output resolution, and trains the sandwich of sub-generators (the full
   width, the narrowest, and random uniform/flexible widths) to match the teacher's image
   downsampled to that resolution: MSE plus a perceptual term — LPIPS when its backbone weights
   are cached, else the features of the model's own discriminator when the source file had one,
   else pixels only. The full generator at full resolution is trained towards the teacher too,
   which keeps it what it was (its drift is reported).
3. With data (``data``), an adversarial term from a generator-conditioned discriminator (as
   ``anycost train`` uses) is added; by default training is data-free (latents only).

The mapping network is frozen: W space, and with it every encoder and edit direction made for
the model, stays valid. Runs checkpoint atomically and resume exactly; torchrun runs them on
several GPUs; on CUDA renders run under bf16 autocast.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..io.checkpoint import file_sha256
from ..measures.perceptual import lpips_distance
from ..measures.psnr import psnr
from ..models.generator import Generator
from . import distributed as ddp
from .channel_sort import sort_channels
from .checkpoint import latest_checkpoint, load_checkpoint
from .distill_config import PERCEPTUAL_CHOICES, DistillConfig  # noqa: F401 - part of this module's API
from .run_state import RunFolderTrainer
from .subnets import SubnetSampler


def resolutions_trained(G: Generator, min_res: int = 0) -> list[int]:
    lowest = min_res or max(16, G.resolution // 16)
    return [r for r in G.resolutions if r >= min(lowest, G.resolution)]


def downsample(img: torch.Tensor, res: int) -> torch.Tensor:
    """The teacher's image at a sub-generator's resolution: area averaging (powers of two)."""
    return img if img.shape[-1] == res else F.interpolate(img, size=(res, res), mode="area")


# ---------------------------------------------------------------------------- perceptual terms
class DiscriminatorFeatures(torch.nn.Module):
    """A perceptual distance from the model's own discriminator: channel-normalised feature maps of
    its first blocks, compared like LPIPS compares its backbone's (mean squared difference)."""

    def __init__(self, D: torch.nn.Module, n_levels: int = 3):
        super().__init__()
        self.D = D.eval().requires_grad_(False)
        top = D.input_resolutions[0] if hasattr(D, "input_resolutions") else D.resolution
        self.size = int(top)
        self.keep = tuple(self.size >> i for i in range(n_levels) if self.size >> i >= 8)

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        _, kept = self.D.trunk(x, keep=self.keep)
        return [f / (f.float().pow(2).sum(1, keepdim=True).sqrt() + 1e-8) for f in kept.values()]

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = self._features(a), self._features(b)
        return torch.stack([(x.float() - y.float()).pow(2).sum(1).mean() for x, y in zip(fa, fb, strict=True)]).mean()


def choose_perceptual(kind: str, discriminator: torch.nn.Module | None, device: torch.device
                      ) -> tuple[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None]:
    """(what is used, distance) for ``kind``; 'auto' takes LPIPS, else the discriminator, else none."""
    import warnings

    from ..measures.perceptual import load_lpips

    if kind in ("auto", "lpips"):
        with warnings.catch_warnings():  # the caller says in one line what is used instead
            warnings.simplefilter("ignore")
            model = load_lpips("alex", device)
        if model is not None:
            return "lpips", lambda a, b: lpips_distance(model, a, b).mean()
        if kind == "lpips":
            raise InputError("--perceptual lpips: the LPIPS backbone weights are not in the torch cache "
                             "(see docs/training.md); use --perceptual auto")
    if kind in ("auto", "discriminator"):
        if discriminator is not None:
            feats = DiscriminatorFeatures(discriminator.to(device))
            return "discriminator", feats
        if kind == "discriminator":
            raise InputError("--perceptual discriminator: the model file keeps no discriminator")
    return "none", None


# ---------------------------------------------------------------------------- the report
@torch.no_grad()
def teacher_consistency(G: Generator, teacher: Generator, ratios: Sequence[float], resolutions: Sequence[int],
                        *, n: int = 8, seed: int = 4242, lpips_model: torch.nn.Module | None = None,
                        batch: int = 4) -> dict[str, float]:
    """PSNR (and LPIPS) of every resolution × uniform ratio of ``G`` against the teacher's full image,
    downsampled: ``{"psnr/r0.5/res64": dB, …}``; ``drift`` is the full generator against the teacher."""
    acc: dict[str, list[float]] = {}
    dev = next(G.parameters()).device
    for start in range(0, n, batch):
        k = min(batch, n - start)
        w = teacher.to_w_plus(teacher.truncate(teacher.mapping(teacher.sample_z(k, seed + start, device=dev)), 0.8))
        target = teacher.synthesize(w, impl="reference")
        for res in resolutions:
            t = downsample(target, res)
            for r in ratios:
                out = G.synthesize(w, res=res, channels=None if float(r) == 1 else float(r), impl="reference")
                acc.setdefault(f"psnr/r{float(r):g}/res{res}", []).extend(psnr(out, t).tolist())
                if lpips_model is not None:
                    acc.setdefault(f"lpips/r{float(r):g}/res{res}", []).extend(
                        lpips_distance(lpips_model, out, t).tolist())
    out = {k: float(sum(min(v, 99.0) for v in vals) / len(vals)) for k, vals in acc.items()}
    out["drift"] = out.get(f"psnr/r1/res{G.resolution}", float("inf"))
    return out


def format_consistency(before: dict[str, float], after: dict[str, float] | None, ratios: Sequence[float],
                       resolutions: Sequence[int]) -> str:
    """A res × ratio table of PSNR against the teacher: 'before → after' per cell."""
    head = "res \\ ratio " + "".join(f"{float(r):>16g}" for r in ratios)
    lines = ["consistency with the teacher: PSNR (dB), before → after (99 = identical)", head]
    for res in resolutions:
        cells = []
        for r in ratios:
            key = f"psnr/r{float(r):g}/res{res}"
            b = before.get(key, float("nan"))
            cells.append(f"{b:6.2f} → {after[key]:6.2f}" if after else f"{b:16.2f}")
        lines.append(f"{res:>11d} " + "".join(f"{c:>16s}" for c in cells))
    if any(k.startswith("lpips/") for k in (after or before)):
        lines.append("LPIPS against the teacher, after: " + ", ".join(
            f"{k[6:]} {v:.3f}" for k, v in sorted((after or before).items()) if k.startswith("lpips/")))
    if after is not None:
        lines.append(f"full generator's drift from the teacher: {after['drift']:.2f} dB PSNR "
                     f"(before: {before['drift']:.2f})")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- the trainer
class Distiller(RunFolderTrainer):
    """Distils ``student`` (a copy of the source generator) towards the frozen source generator."""

    kind = "distill"
    what = "`anycost distill`"
    resume_hint = "run the same command again to resume"

    def __init__(self, G: Generator, cfg: DistillConfig, *, discriminator: torch.nn.Module | None = None,
                 source: Path | None = None, rank: int = 0, world: int = 1, data=None):
        cfg.validate()
        self.cfg = cfg
        self.rank, self.world = rank, world
        self.device = torch.device(cfg.device)
        self.source = source
        self.source_sha256 = file_sha256(source) if source is not None else None
        self.teacher = copy.deepcopy(G).to(self.device).eval().requires_grad_(False)
        self.G = copy.deepcopy(G).to(self.device).train()
        self.perms = sort_channels(self.G)  # same function, most important channels first
        self.G.style.requires_grad_(False)  # W space stays the teacher's (encoders and directions stay valid)
        ddp.broadcast_module(self.G)
        self.params = [p for p in self.G.parameters() if p.requires_grad]
        self.opt = torch.optim.Adam(self.params, lr=cfg.lr, betas=(0.0, 0.99))
        self.subnets = SubnetSampler(self.G, cfg.ratios, cfg.flexible_prob, cfg.n_random_subnets)
        self.resolutions = resolutions_trained(self.G, cfg.min_res)
        self.perceptual_kind, self.perceptual = choose_perceptual(cfg.perceptual, discriminator, self.device)
        self.amp = bool(cfg.amp) and self.device.type == "cuda"
        self.start_run_state()
        self.sched = random.Random(cfg.seed)
        torch.manual_seed(cfg.seed * 7919 + 17 + rank)
        self.before: dict[str, float] | None = None
        self.out = Path("distill-run")  # run() sets the run folder
        self.D = self.opt_D = self.data = None
        if cfg.data:
            self._setup_adversarial(discriminator, data)

    def _setup_adversarial(self, kept: torch.nn.Module | None, data) -> None:
        from .data import open_data
        from .discriminator import ConditionedDiscriminator

        cfg = self.cfg
        G = self.G
        channels = dict(kept.channels) if kept is not None else dict(G.channels)
        self.D = ConditionedDiscriminator(G.resolution, self.subnets.cond_dim, channels=channels,
                                          input_resolutions=self.resolutions,
                                          mbstd_group=getattr(kept, "mbstd_group", 4)).to(self.device)
        if kept is not None:  # start from the model's own discriminator where its layers fit
            own = self.D.state_dict()
            fits = {k: v for k, v in kept.state_dict().items() if k in own and own[k].shape == v.shape}
            self.D.load_state_dict(fits, strict=False)
        ddp.broadcast_module(self.D)
        c = cfg.d_reg_every / (cfg.d_reg_every + 1) if cfg.r1_gamma > 0 else 1.0
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=cfg.lr * c, betas=(0.0, 0.99 ** c))
        self.data = data if data is not None else open_data(cfg.data, G.resolution, self.resolutions, cfg.batch,
                                                            cfg.seed, self.rank, self.world)

    def _autocast(self):
        if self.amp:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _latents(self, n: int) -> torch.Tensor:
        """W+ from the teacher's mapping (the student's is the same, frozen), with style mixing."""
        T = self.teacher
        with torch.no_grad():
            w1 = T.mapping(torch.randn(n, T.style_dim).to(self.device))
            if float(torch.rand(())) < self.cfg.mixing_prob and T.n_style > 1:
                w2 = T.mapping(torch.randn(n, T.style_dim).to(self.device))
                return T.mix_styles(w1, w2, int(torch.randint(1, T.n_style, ())))
            return T.to_w_plus(w1)

    def _noise(self, n: int) -> list[torch.Tensor]:
        return [torch.randn(n, 1, *self.G.noises.get(i).shape[-2:]).to(self.device)
                for i in range(self.G.num_layers)]

    def _match(self, out: torch.Tensor, target: torch.Tensor, full_target: torch.Tensor) -> tuple[torch.Tensor, float]:
        mse = F.mse_loss(out.float(), target.float())
        loss = mse
        if self.perceptual is not None and self.cfg.perceptual_weight > 0:
            ref = full_target if self.perceptual_kind == "discriminator" else target
            loss = loss + self.cfg.perceptual_weight * self.perceptual(out.float(), ref.float())
        return loss, float(mse.detach())

    def _cond(self, chans: list[int] | None) -> torch.Tensor:
        return self.subnets.encode(chans).to(self.device).unsqueeze(0)

    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        R = self.G.resolution
        res = self.sched.choice(self.resolutions)
        configs = [(res, c) for c in self.subnets.sandwich(self.sched)]
        if res != R:
            configs.append((R, self.subnets.full))  # the full generator stays the teacher's
        d_chans = self.subnets.random(self.sched) if self.D is not None else None
        n = cfg.batch
        w, noise = self._latents(n), self._noise(n)
        with torch.no_grad(), self._autocast():
            target_full = self.teacher.synthesize(w, noise=noise, impl="reference").float()
        logs: dict[str, float] = {"res": float(res)}
        if self.D is not None:
            logs.update(self._d_step(d_chans, res))
        self.opt.zero_grad(set_to_none=True)
        total, mses = 0.0, []
        for r, chans in configs:
            full = chans == self.subnets.full
            with self._autocast():
                out = self.G.synthesize(w, res=r, channels=None if full else chans, noise=noise, impl="reference")
            loss, mse = self._match(out, downsample(target_full, r), target_full)
            if full and r == R:
                loss = cfg.full_weight * loss
                logs["mse/full"] = mse
            mses.append(mse)
            if self.D is not None and cfg.adversarial_weight > 0:
                from .losses import g_nonsaturating_loss

                with self._autocast():
                    pred = self.D(out, self._cond(None if full else chans))
                loss = loss + cfg.adversarial_weight * g_nonsaturating_loss(pred.float())
            (loss / len(configs)).backward()
            total += float(loss.detach())
        ddp.average_gradients(self.params)
        self.opt.step()
        logs["loss"] = total / len(configs)
        logs["mse/sub"] = sum(mses) / len(mses)
        if not math.isfinite(logs["loss"]):
            raise InputError(f"distillation diverged at step {self.step} (loss {logs['loss']}); lower --lr")
        self.step += 1
        return logs

    def _d_step(self, chans: list[int], res: int) -> dict[str, float]:
        from .losses import d_logistic_loss, lazy_r1_loss

        cfg = self.cfg
        real = self.data.next_batch()[res].to(self.device)
        cond = self._cond(chans)
        with torch.no_grad(), self._autocast():
            fake = self.G.synthesize(self._latents(real.shape[0]), res=res, channels=chans,
                                     noise=self._noise(real.shape[0]), impl="reference")
        self.D.requires_grad_(True)
        with self._autocast():
            loss = d_logistic_loss(self.D(real, cond).float(), self.D(fake, cond).float())
        self.opt_D.zero_grad(set_to_none=True)
        loss.backward()
        ddp.average_gradients(self.D.parameters())
        self.opt_D.step()
        logs = {"loss/d": float(loss.detach())}
        if cfg.r1_gamma > 0 and self.step % cfg.d_reg_every == 0:
            real_r = real.detach().requires_grad_(True)
            r1 = lazy_r1_loss(self.D(real_r, cond), real_r, cfg.r1_gamma, cfg.d_reg_every)
            self.opt_D.zero_grad(set_to_none=True)
            r1.backward()
            ddp.average_gradients(self.D.parameters())
            self.opt_D.step()
        self.D.requires_grad_(False)
        return logs

    # ------------------------------------------------------------------ report
    def consistency(self, lpips_model: torch.nn.Module | None = None) -> dict[str, float]:
        self.G.eval()
        try:
            return teacher_consistency(self.G, self.teacher, self.cfg.ratios, self.resolutions,
                                       n=self.cfg.eval_seeds, lpips_model=lpips_model)
        finally:
            self.G.train()

    # ------------------------------------------------------------------ state
    def parts(self) -> dict:
        return {"G": self.G, "opt": self.opt, "D": self.D, "opt_D": self.opt_D}

    def own_state(self) -> dict:
        return {"source_sha256": self.source_sha256, "before": self.before, "perceptual": self.perceptual_kind}

    def load_own_state(self, state: dict) -> None:
        if self.source_sha256 and state.get("source_sha256") not in (None, self.source_sha256):
            raise InputError("the checkpoint was made from another model file (its SHA-256 differs); "
                             "start afresh with --restart")
        self.before = state.get("before")

    # ------------------------------------------------------------------ the loop
    def run(self, run_dir: Path, *, progress: bool = True, on_step: Callable[[int, int], None] | None = None
            ) -> dict[str, float]:
        """Train to ``cfg.steps`` with logs and checkpoints in ``run_dir``; returns the final report."""
        cfg = self.cfg
        self.out = Path(run_dir)
        lpips_model = _lpips_for_report(self)
        if self.before is None:
            self.before = self.consistency(lpips_model)
        self.train(cfg.steps, log=self.open_log(write_config=False), progress=self.rank == 0 and progress,
                   desc="distill", unit="step",
                   postfix=lambda logs: {"mse": f"{logs['mse/sub']:.4f}", "full": f"{logs.get('mse/full', 0):.5f}"},
                   on_step=(lambda s, _: on_step(s, cfg.steps)) if on_step is not None else None)
        return self.consistency(lpips_model)

    def export_info(self, after: dict[str, float]) -> dict:
        """What the distilled model file records about its distillation."""
        cfg = self.cfg
        r = self.G.resolution
        half = self.resolutions[-2] if len(self.resolutions) > 1 else r
        return {
            "channel_configs": "flexible" if cfg.flexible_prob > 0 else "uniform",
            "channel_ratios": sorted(float(x) for x in cfg.ratios),
            "channels_sorted": True,
            "distilled": {
                "tool": "anycost distill", "steps": self.step, "batch": cfg.batch, "world_size": self.world,
                "lr": cfg.lr, "perceptual": self.perceptual_kind, "data": cfg.data or None, "seed": cfg.seed,
                "device": str(cfg.device), "seconds": round(self.seconds, 1),
                "resolutions": self.resolutions, "source_sha256": self.source_sha256,
                "psnr_before": {k: round(v, 2) for k, v in (self.before or {}).items() if k.startswith("psnr/")},
                "psnr_after": {k: round(v, 2) for k, v in after.items() if k.startswith("psnr/")},
                "drift_psnr": round(after["drift"], 2),
                "consistency_r0.5": round(after.get(f"psnr/r0.5/res{r}", float("nan")), 2),
                "consistency_half_res": round(after.get(f"psnr/r1/res{half}", float("nan")), 2),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        }


def _lpips_for_report(d: Distiller) -> torch.nn.Module | None:
    """LPIPS for the report when its weights are cached (the same check the perceptual term makes)."""
    from ..measures.perceptual import load_lpips

    return load_lpips("alex", d.device) if d.perceptual_kind == "lpips" else None


def find_resume(run_dir: Path) -> Path | None:
    """The newest distillation checkpoint in ``run_dir``, if any."""
    path = latest_checkpoint(run_dir)
    if path is None:
        return None
    state = load_checkpoint(path)
    return path if state.get("kind") == "distill" else None


# ---------------------------------------------------------------------------- the whole job
def is_anycost_trained(info: dict, registered: str | None = None) -> bool:
    """True when a model's sub-generators were already trained (an Anycost model, or distilled)."""
    from ..search.space import model_space_kind

    return bool(info.get("distilled")) or model_space_kind(info, registered) != "full"


def default_run_dir(out: Path) -> Path:
    return out.with_name(out.stem + ".distill-run")


def distill_model(model: str | Path, out: str | Path, cfg: DistillConfig, *, run_dir: Path | None = None,
                  force: bool = False, restart: bool = False, progress: bool = True,
                  say: Callable[[str], None] = print,
                  on_step: Callable[[int, int], None] | None = None) -> dict[str, float]:
    """``anycost distill``: distil ``model`` into ``out`` (a project model file), resuming a run found in
    ``run_dir``; returns the final consistency report. Everything else in the model file is kept."""
    from ..io.checkpoint import open_model
    from ..registry import KNOWN_MODELS, resolve_model
    from .model_update import update_model

    out = Path(out)
    if out.suffix != ".safetensors":
        raise InputError(f"the distilled model must be a .safetensors file, got {out}")
    source = resolve_model(model)
    spec = KNOWN_MODELS.get(str(model))
    mf = open_model(source, expect=spec.architecture if spec else None)
    if is_anycost_trained(mf.info, spec.channel_configs if spec else None) and not force:
        raise InputError(f"{source} is already trained for Anycost sub-generators "
                         f"({'distilled' if mf.info.get('distilled') else 'an Anycost model'}); "
                         "--force distills it again")
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(out)
    rank, local_rank, world = ddp.init_from_env(cfg.device)
    finished = False
    try:
        if world > 1 and cfg.device == "cuda":
            cfg.device = f"cuda:{local_rank}"
        resume = None if restart else find_resume(run_dir)
        if restart and rank == 0:
            from .checkpoint import list_checkpoints

            for p in list_checkpoints(run_dir):
                p.unlink()
        d = Distiller(mf.generator(), cfg, discriminator=mf.discriminator(), source=source, rank=rank, world=world)
        if resume is not None:
            d.load_state_dict(load_checkpoint(resume))
            say(f"resumed from {resume} at step {d.step}")
        if rank == 0:
            why = {"lpips": "LPIPS",
                   "discriminator": "features of the model's own discriminator (LPIPS backbone weights are not in "
                                    "the torch cache)",
                   "none": "none — pixels only (no LPIPS backbone weights in the torch cache and no discriminator "
                           "in the model file)"}[d.perceptual_kind]
            if cfg.perceptual == "none":
                why = "none (--perceptual none)"
            say(f"distilling {source.name}: {d.G.resolution} px, resolutions {d.resolutions}, ratios "
                f"{[float(r) for r in cfg.ratios]}; perceptual term: {why}")
        after = d.run(run_dir, progress=progress, on_step=on_step)
        if rank == 0:
            say(format_consistency(d.before or {}, after, cfg.ratios, d.resolutions))
            G = d.G.eval().requires_grad_(False).cpu()
            update_model(source, out, generator=G, info=d.export_info(after))
            say(f"wrote {out} ({d.step} steps, {d.seconds / 60:.1f} min)")
        finished = True
    finally:
        ddp.shutdown(clean=finished)  # every rank waits for rank 0's model file, then leaves
    return after
