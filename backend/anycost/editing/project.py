"""Projection: an image → a W+ latent that the generator renders back as that image.

The encoder gives an instant answer; refinement then optimises W+ directly. Refinement is
progressive: ``Projector.iter_project`` yields intermediate latents and images so a caller
(the editor, the service) can show them while it runs, within a step or time budget, and
stops early when cancelled.

The loss is pixel MSE + LPIPS (when its weights are available locally) on the full
generator, a term on a sampled sub-generator so cheap previews of the result stay faithful
(consistency-aware projection), and a pull towards the encoder's answer that keeps the
latent where edit directions behave.

The answer (on finishing, running out of budget or being cancelled) is the best latent seen,
judged by the deterministic part of the loss: everything but the sub-generator term, whose
random draw changes from step to step and would make losses of different steps incomparable.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..models.encoder import Encoder
from ..models.generator import Generator

CancelCheck = Callable[[], bool] | threading.Event | None


@dataclass
class ProjectionStep:
    """One progress report of a projection."""

    step: int  # 0 = the starting latent (the encoder's answer, the mean latent or w_init), then steps run
    w_plus: torch.Tensor  # (1, n_style, style_dim), detached
    image: torch.Tensor  # (1, 3, R, R) in [-1, 1], the full render of w_plus
    loss: float  # the deterministic loss (the terms in ``terms`` but "consistency") of w_plus
    psnr: float  # of ``image`` against the target, dB (images in [-1, 1])
    elapsed: float  # seconds since the projection started
    final: bool = False
    cancelled: bool = False
    terms: tuple[str, ...] = ("mse",)  # loss terms in use: mse, lpips, encoder, consistency


@dataclass
class ProjectionSettings:
    steps: int = 100
    time_budget: float | None = None  # seconds for refinement; None = steps only
    lr: float = 0.03
    optimizer: str = "adam"  # 'adam' or 'lbfgs'
    mse_weight: float = 1.0
    lpips_weight: float = 0.5
    encoder_reg: float = 1e-3  # pull towards the encoder's W+
    consistency_weight: float = 0.3  # loss on a sampled sub-generator
    consistency_ratios: tuple[float, ...] = (0.25, 0.5, 0.75)
    report_every: int = 10  # yield an intermediate result every N steps
    seed: int = 0
    use_lpips: bool = True


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2)."""
    mse = F.mse_loss(a.float(), b.float()).item()
    return float("inf") if mse == 0 else 10.0 * math.log10(4.0 / mse)


def _is_cancelled(cancel: CancelCheck) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


@contextmanager
def _frozen(*modules: torch.nn.Module | None):
    """Disable parameter gradients for the duration (restored afterwards)."""
    saved = []
    for m in modules:
        if m is None:
            continue
        for p in m.parameters():
            saved.append((p, p.requires_grad))
            p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)


class Projector:
    def __init__(self, G: Generator, encoder: Encoder | None = None, *, lpips_model=None,
                 settings: ProjectionSettings | None = None):
        self.G = G
        self.encoder = encoder
        self.settings = settings or ProjectionSettings()
        self._lpips = lpips_model
        self._lpips_loaded = lpips_model is not None

    @property
    def device(self) -> torch.device:
        return next(self.G.parameters()).device

    def lpips(self):
        """The LPIPS module (loaded once), or None when its backbone weights are not cached."""
        if not self._lpips_loaded:
            from ..measures.perceptual import backbone_path, load_lpips

            # VGG-LPIPS suits inversion best; take whichever backbone is cached (one warning if none)
            net = "vgg" if backbone_path("vgg").is_file() else "alex"
            self._lpips = load_lpips(net, self.device)
            self._lpips_loaded = True
        return self._lpips

    def prepare_target(self, image: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1] at any size → the generator's resolution. An editor projects one face
        (N = 1); a batch projects each face with its own latent, and the final step's best-latent choice
        is made for the batch as a whole."""
        if image.ndim != 4 or image.shape[1] != 3 or image.shape[0] < 1:
            raise ValueError(f"target must be (N, 3, H, W), got {tuple(image.shape)}")
        r = self.G.resolution
        image = image.to(self.device, torch.float32)
        if image.shape[-1] != r or image.shape[-2] != r:
            image = F.interpolate(image, size=(r, r), mode="bicubic", align_corners=False, antialias=True)
        return image.clamp(-1, 1)

    @torch.no_grad()
    def encode(self, target: torch.Tensor) -> torch.Tensor:
        """The instant answer: the encoder's W+, or the mean latent without an encoder."""
        target = self.prepare_target(target)
        if self.encoder is None:
            return self.G.to_w_plus(self.G.truncation_center).clone()
        self.encoder.eval()
        return self.encoder(target).float()

    def _render(self, w: torch.Tensor, **kw) -> torch.Tensor:
        return self.G.synthesize(w, noise="const", **kw)

    def iter_project(self, target: torch.Tensor, *, w_init: torch.Tensor | None = None,
                     anchor: torch.Tensor | None = None, cancel: CancelCheck = None,
                     settings: ProjectionSettings | None = None) -> Iterator[ProjectionStep]:
        """Yield the starting latent, refinement progress every ``report_every`` steps, then the final
        step, which holds the best latent seen.

        ``w_init`` is where refinement starts (default: the encoder's answer); ``anchor`` is what the
        encoder term pulls towards (default: the starting latent), so a caller that resumes from an
        earlier or loaded latent can still keep it near the encoder's answer."""
        s = settings or self.settings
        t0 = time.perf_counter()
        target = self.prepare_target(target)
        w0 = (self.encode(target) if w_init is None else w_init.to(self.device, torch.float32)).detach()
        anchor = w0 if anchor is None else anchor.to(self.device, torch.float32).detach()
        if anchor.shape != w0.shape:
            raise ValueError(f"anchor has shape {tuple(anchor.shape)}, the latent {tuple(w0.shape)}")
        refine = s.steps > 0
        # loaded before the first answer so that step 0's loss uses the same terms as the rest (cached after)
        lp = self.lpips() if refine and s.use_lpips and s.lpips_weight > 0 else None
        terms = ("mse",) + (("lpips",) if lp is not None else ())
        if refine:
            terms += (("encoder",) if s.encoder_reg > 0 else ())
            terms += (("consistency",) if s.consistency_weight > 0 and s.consistency_ratios else ())

        def objective(img: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            """The deterministic part of the loss (no sampled sub-generator): comparable across steps."""
            loss = s.mse_weight * F.mse_loss(img, target)
            if lp is not None:
                loss = loss + s.lpips_weight * lp(img, target).mean()
            if refine and s.encoder_reg > 0:
                loss = loss + s.encoder_reg * (w - anchor).square().sum(-1).mean()
            return loss

        with torch.no_grad():
            img0 = self._render(w0)
            loss0 = float(objective(img0, w0))
        first = ProjectionStep(0, w0.clone(), img0, loss0, psnr(img0, target), time.perf_counter() - t0,
                               final=not refine, terms=terms)
        yield first
        if not refine:
            return
        if _is_cancelled(cancel):
            first.cancelled = first.final = True
            return

        w = w0.clone().requires_grad_(True)
        best = [loss0, w0.clone()]  # lowest deterministic loss seen and its latent
        rng = torch.Generator().manual_seed(s.seed)
        low_res = [r for r in self.G.resolutions if r >= min(32, self.G.resolution)]

        def keep_if_best(loss: float, latent: torch.Tensor) -> None:
            if loss < best[0]:
                best[0], best[1] = loss, latent.detach().clone()

        def loss_fn() -> torch.Tensor:
            img = self._render(w)
            loss = objective(img, w)
            keep_if_best(float(loss.detach()), w)  # the loss of w as it is now, before the update
            if s.consistency_weight > 0 and s.consistency_ratios:
                ratio = s.consistency_ratios[int(torch.randint(len(s.consistency_ratios), (1,), generator=rng))]
                res = low_res[int(torch.randint(len(low_res), (1,), generator=rng))]
                sub = self._render(w, res=res, channels=ratio)
                tgt = target if res == target.shape[-1] else F.interpolate(
                    target, size=(res, res), mode="bilinear", align_corners=False, antialias=True)
                loss = loss + s.consistency_weight * F.mse_loss(sub, tgt)
            return loss

        if s.optimizer == "adam":
            opt = torch.optim.Adam([w], lr=s.lr, betas=(0.9, 0.999))
        elif s.optimizer == "lbfgs":
            opt = torch.optim.LBFGS([w], lr=1.0, max_iter=1, history_size=10, line_search_fn="strong_wolfe")
        else:
            raise ValueError(f"optimizer must be 'adam' or 'lbfgs', got {s.optimizer!r}")

        def report(step: int, final: bool = False, cancelled: bool = False) -> ProjectionStep:
            with torch.no_grad():
                wd = w.detach().clone()
                img = self._render(wd)
                loss = float(objective(img, wd))
                keep_if_best(loss, wd)
                if final and not torch.equal(best[1], wd):
                    wd, loss = best[1].clone(), best[0]
                    img = self._render(wd)
            return ProjectionStep(step, wd, img, loss, psnr(img, target), time.perf_counter() - t0,
                                  final=final, cancelled=cancelled, terms=terms)

        t_refine = time.perf_counter()
        step = 0
        with _frozen(self.G, self.encoder):
            while step < s.steps:
                if _is_cancelled(cancel):
                    yield report(step, final=True, cancelled=True)
                    return
                if s.time_budget is not None and time.perf_counter() - t_refine >= s.time_budget:
                    break
                if s.optimizer == "adam":
                    # cosine decay with a short warm-up, as optimisation-based inversion usually does
                    frac = step / max(1, s.steps)
                    for g in opt.param_groups:
                        g["lr"] = s.lr * min(1.0, (step + 1) / 5) * 0.5 * (1 + math.cos(math.pi * frac))
                    opt.zero_grad(set_to_none=True)
                    loss_fn().backward()
                    opt.step()
                else:
                    def closure() -> torch.Tensor:
                        opt.zero_grad(set_to_none=True)
                        loss = loss_fn()
                        loss.backward()
                        return loss

                    opt.step(closure)
                step += 1
                if step % max(1, s.report_every) == 0 and step < s.steps:
                    yield report(step)
        yield report(step, final=True)

    def project(self, target: torch.Tensor, **kw) -> ProjectionStep:
        """Run ``iter_project`` to the end and return its final step."""
        steps = list(self.iter_project(target, **kw))
        return steps[-1]
