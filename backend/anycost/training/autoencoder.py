"""Supervised Anycost training: a regularised autoencoder (encoder E → W+ → Anycost generator G).

Adversarial training is far too slow without a GPU; reconstruction is not. Each step encodes a
batch of real images, perturbs the shared latent with Gaussian noise and decodes it with the
sandwich of sub-generators (full, smallest, one random uniform/flexible config) at a sampled
output resolution, each judged against the real image downsampled to that resolution.

The latent is kept sampleable: the encoder's W+ is split into a shared w (slot mean) and a
per-slot residual that is penalised; w gets fixed-size noise and a KL-like pull towards a unit
Gaussian, so the set of encoded latents is a smooth, roughly Gaussian cloud. After training the
cloud's mean and covariance are measured and G's mapping network is fitted by regression so that
``mapping(z)`` for z ~ N(0, I) reproduces that Gaussian: random seeds then decode to faces, and the
model file works like any other (generator + encoder) in the editor.
"""

from __future__ import annotations

import json
import math
import random
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..io.modelfile import build_and_load, read_model
from ..measures.perceptual import load_lpips, lpips_distance
from ..models.encoder import Encoder, EncoderConfig
from ..models.generator import Generator, GeneratorConfig
from ..models.layers import EqualLinear
from ..registry import resolve_model
from .autoencoder_config import AutoencoderConfig
from .checkpoint import latest_checkpoint, load_checkpoint
from .data import open_data
from .harness import Every, postfix_of
from .losses import FeatureReference, attribute_feature_terms, feature_reference, label_loss
from .run_state import RunFolderTrainer, settings_from
from .subnets import SubnetSampler

CKPT_KIND = "autoencoder"
HELDOUT_START = 10 ** 9  # synthetic-face indices from here on are never used for training


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1]."""
    mse = float(((a.clamp(-1, 1) - b.clamp(-1, 1)) / 2).pow(2).mean())
    return 10 * math.log10(1.0 / max(mse, 1e-12))


class AutoencoderTrainer(RunFolderTrainer):
    kind = CKPT_KIND
    what = "autoencoder training"

    def __init__(self, cfg: AutoencoderConfig, data=None, *, quiet: bool = False):
        cfg.validate()
        self.cfg = cfg
        self.quiet = quiet
        self.device = torch.device(cfg.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise InputError("--device cuda was asked for but no CUDA device is available")
        self.out = Path(cfg.out)
        torch.manual_seed(cfg.seed)
        init = read_model(resolve_model(cfg.init)) if cfg.init else None
        if init is not None:
            adopt_architecture(cfg, init)
        self.G = Generator(GeneratorConfig(resolution=cfg.res, style_dim=cfg.style_dim, n_mlp=cfg.n_mlp,
                                           channel_multiplier=cfg.channel_multiplier,
                                           channel_max=cfg.channel_max)).to(self.device)
        self.E = Encoder(EncoderConfig(n_style=self.G.n_style, style_dim=cfg.style_dim, depth=cfg.enc_depth,
                                       width=cfg.enc_width, input_size=min(cfg.enc_input, cfg.res))).to(self.device)
        init_encoder_head(self.E)
        if init is not None:
            self.load_init(init)
        self.subnets = SubnetSampler(self.G, cfg.ratios, cfg.flexible_prob, n_random=1)
        # The mapping network is fitted after training (fit_prior); here only synthesis layers learn.
        synth = [p for n, p in self.G.named_parameters() if not n.startswith("style.")]
        self.opt = torch.optim.Adam([
            {"params": synth, "lr": cfg.lr},
            {"params": self.E.parameters(), "lr": cfg.enc_lr},
        ], betas=(0.5, 0.99))
        self.resolutions = [r for r in self.G.resolutions if r >= cfg.min_res]
        self.start_run_state()
        # Running statistics of the shared latent, for monitoring and in-training samples.
        self.w_mean = torch.zeros(cfg.style_dim, device=self.device)
        self.w_var = torch.ones(cfg.style_dim, device=self.device)
        self.sched = random.Random(cfg.seed)
        torch.manual_seed(cfg.seed * 7919 + 17)
        self.lpips = load_lpips("alex", self.device) if cfg.lpips_weight > 0 else None
        self.feature_net = self.load_feature_net(cfg.feature_net) if cfg.feature_net and cfg.feature_weight > 0 \
            else None
        self.data = data if data is not None else open_data(cfg.data, cfg.res, self.resolutions, cfg.batch,
                                                            cfg.seed)
        self.label_columns = self.feature_label_columns() if cfg.label_weight > 0 else None
        self.prior: dict[str, torch.Tensor] | None = None
        self.shifted = False

    def load_init(self, model) -> None:
        """Generator and encoder weights from a model file (checked by ``adopt_architecture``), with
        its latent space centred again.

        An exported model's latents were shifted positive for the mapping network (``shift_latents``);
        training pulls w towards zero, so the shift is undone exactly before training goes on.
        """
        build_and_load(self.G, model.components["generator"].tensors, f"{model.path} (generator)")
        build_and_load(self.E, model.components["encoder"].tensors, f"{model.path} (encoder)")
        with torch.no_grad():
            shift_latent_space(self.G, self.E, -self.E.mean_latent.clone())
        self.G._mean_w_cache.clear()

    def load_feature_net(self, where: str):
        """The frozen attribute classifier behind ``--feature-net`` (a model file or registered name)."""
        from .classifier import load_classifier

        clf = load_classifier(resolve_model(where), self.device).eval()
        for p in clf.parameters():
            p.requires_grad_(False)
        return clf

    def feature_label_columns(self) -> list[int]:
        """For ``--label-weight``: where each of the feature net's attributes sits in the data's labels."""
        from ..data.synth_faces import ATTRIBUTES

        if not getattr(self.data, "has_labels", False):
            raise InputError(f"--label-weight needs data that knows its labels (synth:faces), not {self.cfg.data!r}")
        missing = [a for a in self.feature_net.attributes if a not in ATTRIBUTES]
        if missing:
            raise InputError(f"the --feature-net scores {', '.join(missing)}, which the synthetic faces have no "
                             "label for")
        return [ATTRIBUTES.index(a) for a in self.feature_net.attributes]

    # ------------------------------------------------------------------ pieces
    def sample_res(self) -> int:
        """Curriculum: the top resolution unlocks step by step; the current top is drawn with ``top_prob``."""
        cfg = self.cfg
        n = len(self.resolutions)
        if cfg.curriculum > 0 and n > 1:
            frac = min(1.0, self.step / max(1.0, cfg.curriculum * cfg.steps))
            n_open = 1 + int(frac * (n - 1) + 1e-9)
        else:
            n_open = n
        open_res = self.resolutions[:n_open]
        if len(open_res) == 1 or self.sched.random() < cfg.top_prob:
            return open_res[-1]
        return self.sched.choice(open_res[:-1])

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images → (shared w (N, D), per-slot residual (N, n_style, D))."""
        w_plus = self.E(x)
        w = w_plus.mean(1)
        return w, w_plus - w.unsqueeze(1)

    def recon_loss(self, fake: torch.Tensor, real: torch.Tensor, reference: FeatureReference | None = None,
                   labels: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(pixel + perceptual + feature-net loss, the feature-net terms alone by log name); ``reference``:
        the feature net's view of ``real``, when the caller computed it once for several renders;
        ``labels``: the faces' own labels in the feature net's attribute order (``--label-weight``)."""
        loss = F.mse_loss(fake, real)
        if self.lpips is not None and self.cfg.lpips_weight > 0:
            loss = loss + self.cfg.lpips_weight * lpips_distance(self.lpips, fake, real).mean()
        terms: dict[str, torch.Tensor] = {}
        if self.feature_net is not None:
            feature, logits = attribute_feature_terms(self.feature_net, fake,
                                                      reference if reference is not None else real)
            loss = loss + self.cfg.feature_weight * feature
            terms["loss/feature"] = feature
            if labels is not None and self.cfg.label_weight > 0:
                terms["loss/labels"] = label_loss(logits, labels)
                loss = loss + self.cfg.label_weight * terms["loss/labels"]
        return loss, terms

    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        self.G.train()
        self.E.train()
        batch = self.data.next_batch()
        res = self.sample_res()
        chans = self.subnets.sandwich(self.sched) if cfg.sandwich else [self.subnets.full]
        top = batch[cfg.res].to(self.device)
        real = batch[res].to(self.device)

        ramp = min(1.0, self.step / max(1.0, cfg.warmup * cfg.steps)) if cfg.warmup > 0 else 1.0
        w, resid = self.encode(top)
        w_noisy = w + ramp * cfg.noise_std * torch.randn_like(w)
        w_plus = w_noisy.unsqueeze(1) + resid
        kl = 0.5 * w.pow(2).mean()
        res_pen = resid.pow(2).mean()
        rec = []
        feature_terms: dict[str, torch.Tensor] = {}
        reference = feature_reference(self.feature_net, real) if self.feature_net is not None else None
        labels = None
        if self.label_columns is not None:
            labels = self.data.labels[:, self.label_columns].to(self.device)
        for ch in chans:
            fake = self.G.synthesize(w_plus, res=res, channels=None if ch == self.subnets.full else ch,
                                     noise="const", impl="reference")
            term, terms = self.recon_loss(fake, real, reference, labels)
            rec.append(term)
            feature_terms = feature_terms or terms  # the full generator's, for the log
        rec_total = torch.stack(rec).mean()
        loss = rec_total + ramp * cfg.kl_weight * kl + cfg.residual_weight * res_pen
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

        with torch.no_grad():
            wd = w.detach()
            self.w_mean.lerp_(wd.mean(0), 0.02)
            self.w_var.lerp_(wd.var(0, unbiased=False) + (wd.mean(0) - self.w_mean).pow(2), 0.02)
        self.step += 1
        logs = {"res": float(res), "loss/total": float(loss.detach()), "loss/recon": float(rec[0].detach()),
                "loss/kl": float(kl.detach()), "loss/residual": float(res_pen.detach()),
                "w_std": float(self.w_var.mean().sqrt())}
        logs.update({k: float(v.detach()) for k, v in feature_terms.items()})
        if len(rec) > 1:
            logs["loss/recon_smallest"] = float(rec[1].detach())
            logs["loss/recon_random"] = float(torch.stack(rec[2:]).mean().detach())
        return logs

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def heldout(self, n: int = 16) -> tuple[torch.Tensor, int]:
        """Held-out images (synthetic faces never trained on, or the first training batch of a folder)."""
        if self.cfg.data.startswith("synth:"):
            from ..data.synth_faces import render_batch
            from ..imageio import images_to_tensor

            imgs, _ = render_batch(self.cfg.seed, n, self.cfg.res, start=HELDOUT_START)
            return images_to_tensor(imgs).to(self.device), n
        state = self.data.state_dict()
        x = self.data.next_batch()[self.cfg.res][:n].to(self.device)
        self.data.load_state_dict(state)
        return x, len(x)

    @torch.no_grad()
    def evaluate(self, n: int = 16) -> dict[str, float]:
        """Reconstruction PSNR (dB) of held-out images at every resolution, full and smallest width."""
        self.G.eval()
        self.E.eval()
        x, _ = self.heldout(n)
        w_plus = self.E(x)
        out = {}
        for res in self.resolutions:
            real = x if res == x.shape[-1] else F.interpolate(x, size=(res, res), mode="area")
            for name, ch in (("full", None), ("smallest", self.subnets.smallest)):
                fake = self.G.synthesize(w_plus, res=res, channels=ch, noise="const", impl="reference")
                out[f"psnr/{name}@{res}"] = psnr(fake, real)
        return out

    # ------------------------------------------------------------------ prior
    @torch.no_grad()
    def encoded_latents(self, n: int) -> torch.Tensor:
        """Shared w of ``n`` training images (eval mode; batches from a separate stream)."""
        self.E.eval()
        ws = []
        if self.cfg.data.startswith("synth:"):
            from ..data.synth_faces import render_batch
            from ..imageio import images_to_tensor

            for start in range(0, n, 64):
                k = min(64, n - start)
                imgs, _ = render_batch(self.cfg.seed, k, self.cfg.res, start=start)
                ws.append(self.encode(images_to_tensor(imgs).to(self.device))[0])
        else:
            state = self.data.state_dict()
            got = 0
            while got < n:
                x = self.data.next_batch()[self.cfg.res].to(self.device)
                ws.append(self.encode(x)[0])
                got += len(x)
            self.data.load_state_dict(state)
        return torch.cat(ws)[:n]

    @torch.no_grad()
    def fit_prior(self) -> dict[str, torch.Tensor]:
        """Mean and covariance of the latents the decoder was trained on (encoded w plus its noise)."""
        w = self.encoded_latents(self.cfg.prior_samples).double()
        mu = w.mean(0)
        d = w - mu
        cov = d.T @ d / max(1, len(w) - 1) + (self.cfg.noise_std ** 2) * torch.eye(w.shape[1], dtype=w.dtype,
                                                                                 device=w.device)
        chol = torch.linalg.cholesky(cov + 1e-6 * torch.eye(w.shape[1], dtype=w.dtype, device=w.device))
        self.prior = {"mean": mu.float(), "chol": chol.float()}
        return self.prior

    @torch.no_grad()
    def shift_latents(self, margin: float = 6.0) -> torch.Tensor:
        """Move the latent cloud to positive values: w' = w + shift, absorbed exactly by the model.

        Every style modulation is affine in w, so its bias takes ``-W·shift`` and the encoder's
        ``mean_latent`` takes ``+shift``: images and reconstructions are unchanged. With all latents
        positive, the mapping network's leaky-ReLU layers can represent the affine prior exactly.
        """
        mu, chol = self.prior["mean"], self.prior["chol"]
        std = chol.pow(2).sum(1).sqrt()
        shift = (margin * std - mu).clamp_min(0)
        shift_latent_space(self.G, self.E, shift)
        self.prior["mean"] = mu + shift
        self.w_mean.add_(shift)
        return shift

    def fit_mapping(self, steps: int | None = None, batch: int = 256, margin: float = 6.0) -> dict[str, float]:
        """Make G's mapping network produce the fitted prior: mapping(z) ≈ μ + L·ẑ.

        ẑ is the pixel-normalised z (unit variance per entry). The latent space is first shifted
        positive (``shift_latents``); the layers are then set to the affine map directly (the
        first layer adds a margin so every pre-activation stays positive, the middle ones pass
        through, the last applies L and μ) and refined by regression. Returns the regression
        error relative to the prior's total variance, for the network before and after.
        """
        if self.prior is None:
            self.fit_prior()
        style = self.G.style
        g = torch.Generator().manual_seed(self.cfg.seed + 4242)
        z_eval = torch.randn(2048, self.G.style_dim, generator=g).to(self.device)

        def target(z: torch.Tensor) -> torch.Tensor:
            zn = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)
            return self.prior["mean"] + zn @ self.prior["chol"].T

        def rel_err(z: torch.Tensor) -> torch.Tensor:
            return (style(z) - target(z)).pow(2).sum(1).mean() / self.prior["chol"].pow(2).sum()

        if not self.shifted:
            self.shift_latents(margin)
            self.shifted = True
        with torch.no_grad():
            before = float(rel_err(z_eval))
            set_affine_mapping(style, self.prior["mean"], self.prior["chol"], margin)
        steps = self.cfg.mapping_steps if steps is None else steps
        style.train()
        # EqualLinear scales its learning rate by lr_mul; small steps, the start is already the answer.
        opt = torch.optim.Adam(style.parameters(), lr=1e-4 / self.G.config.lr_mlp, betas=(0.9, 0.99))
        for _ in range(steps):
            loss = rel_err(torch.randn(batch, self.G.style_dim, generator=g).to(self.device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        style.eval()
        with torch.no_grad():
            after = float(rel_err(z_eval))
            mu = self.prior["mean"]
            mean_err = float((style(z_eval).mean(0) - mu).norm() / self.prior["chol"].pow(2).sum().sqrt())
        self.G._mean_w_cache.clear()  # the mapping changed; cached means are stale
        return {"mapping/rel_err_before": before, "mapping/rel_err_after": after, "mapping/mean_err": mean_err}

    # ------------------------------------------------------------------ state
    def parts(self) -> dict:
        return {"G": self.G, "E": self.E, "opt": self.opt}

    def own_state(self) -> dict:
        return {"w_mean": self.w_mean.cpu(), "w_var": self.w_var.cpu()}

    def load_own_state(self, state: dict) -> None:
        self.w_mean.copy_(state["w_mean"])
        self.w_var.copy_(state["w_var"])

    # ------------------------------------------------------------------ outputs
    @torch.no_grad()
    def recon_grid(self, n: int = 8) -> Path:
        """Held-out reals (top row) and their reconstructions at every ratio, at every resolution."""
        from PIL import Image

        from .reporting import to_uint8

        self.G.eval()
        self.E.eval()
        x, _ = self.heldout(n)
        w_plus = self.E(x)
        blocks = []
        for res in self.resolutions:
            real = x if res == x.shape[-1] else F.interpolate(x, size=(res, res), mode="area")
            rows = [real]
            for r in sorted(self.cfg.ratios, reverse=True):
                rows.append(self.G.synthesize(w_plus, res=res, channels=None if r == 1 else float(r),
                                              noise="const", impl="reference"))
            rows = [F.interpolate(t, size=(self.cfg.res, self.cfg.res), mode="nearest") for t in rows]
            blocks += [np.concatenate([to_uint8(im) for im in t], axis=1) for t in rows]
        path = self.out / "samples" / f"recon-{self.step:08d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.png")
        Image.fromarray(np.concatenate(blocks, axis=0)).save(tmp)
        tmp.replace(path)
        return path

    def export(self, path: str | Path | None = None, extra: dict | None = None) -> Path:
        from ..io.modelfile import save_model

        cfg = self.cfg
        path = Path(path) if path else self.out / "model.safetensors"
        E = self.E
        if self.prior is not None:
            # Fold the prior mean into the encoder's mean_latent (same outputs) for tools that read it.
            with torch.no_grad():
                mu = self.prior["mean"]
                self.E.fc.bias.sub_(mu.repeat(self.G.n_style) - self.E.mean_latent.repeat(self.G.n_style))
                self.E.mean_latent.copy_(mu)
        info = {
            "name": self.out.name or "anycost-autoencoder",
            "face": True,
            "channel_ratios": sorted(float(r) for r in cfg.ratios),
            "channels_sorted": True,
            "training": {
                "tool": "anycost train-autoencoder", "method": "regularised autoencoder (no adversarial loss)",
                "data": cfg.data, "steps": self.step, "batch": cfg.batch, "seed": cfg.seed,
                "kimg": round(self.step * cfg.batch / 1000, 3), "lpips": self.lpips is not None,
                "feature_net": cfg.feature_net if self.feature_net is not None else None,
                "feature_weight": cfg.feature_weight if self.feature_net is not None else None,
                "label_weight": cfg.label_weight if self.label_columns is not None else None,
                "noise_std": cfg.noise_std, "kl_weight": cfg.kl_weight, "init": cfg.init,
                "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                **(extra or {}),
            },
        }
        return save_model(path, generator=self.G.eval(), encoder=E.eval(), info=info, half=True)

    def run(self, progress: bool = True) -> dict:
        """Train to ``steps``, fit the prior and the mapping, write grids and the model file."""
        cfg = self.cfg
        log = self.open_log()
        if self.lpips is None and cfg.lpips_weight > 0:
            warnings.warn("training with pixel MSE only (no LPIPS)", RuntimeWarning, stacklevel=2)
        shown = ("loss/recon", "loss/feature", "loss/labels", "loss/recon_smallest", "res", "img_per_s")
        timing = self.train(cfg.steps, log=log, columns=lambda s: {"kimg": s * cfg.batch / 1000},
                            images_per_step=cfg.batch, every=[Every(cfg.sample_every, lambda s, _: self.recon_grid())],
                            postfix=lambda logs: postfix_of(logs, shown.__contains__),
                            progress=progress and not self.quiet)
        return self.finish(log, timing.per_second(cfg.batch))

    def finish(self, log=None, img_per_s: float | None = None) -> dict:
        """Prior + mapping fit, evaluation, grids and the model file (also for a stopped run)."""
        from .reporting import sample_grids

        self.fit_prior()
        mapping = self.fit_mapping()
        metrics = {**self.evaluate(), **mapping}
        if img_per_s is not None:
            metrics["img_per_s"] = img_per_s
        if log is not None:
            log.append({"step": self.step, **metrics})
            log.plot()
        self.recon_grid()
        sample_grids(self.G.eval(), self.out, self.step, self.cfg.ratios)
        path = self.export(extra={"metrics": {k: round(v, 5) for k, v in metrics.items()}})
        (self.out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
        return {"model": str(path), "steps": self.step, **metrics}


def finish_from_checkpoint(out: str | Path, device: str = "cpu", quiet: bool = True) -> dict:
    """Fit the prior and write the model file from a run's latest checkpoint (e.g. a stopped run)."""
    from .reporting import LossLog

    path = latest_checkpoint(out)
    if path is None:
        raise InputError(f"no checkpoint found in {Path(out) / 'checkpoints'}")
    state = load_checkpoint(path)
    if state.get("kind") != CKPT_KIND:
        raise InputError(f"{path} is not from autoencoder training")
    cfg = settings_from(AutoencoderConfig, state["config"])
    cfg.out, cfg.device = str(out), str(device)
    trainer = AutoencoderTrainer(cfg, quiet=quiet)
    trainer.load_state_dict(state)
    return trainer.finish(LossLog(cfg.out))


@torch.no_grad()
def shift_latent_space(G: Generator, E: Encoder, shift: torch.Tensor) -> None:
    """w' = w + shift for every latent, absorbed exactly: modulation biases take -W·shift, the encoder
    adds the shift to its output. Images and reconstructions stay the same."""
    for name, m in G.named_modules():
        if name.endswith("modulation") and isinstance(m, EqualLinear):
            m.bias.sub_((m.weight * m.scale) @ shift / m.lr_mul)
    E.mean_latent.add_(shift)


def adopt_architecture(cfg: AutoencoderConfig, model) -> None:
    """Set the generator and encoder settings of ``cfg`` to those of a model file."""
    g = model.components.get("generator")
    e = model.components.get("encoder")
    if g is None or e is None:
        raise InputError(f"{model.path}: --init needs a model file with a generator and an encoder")
    gc, ec = g.config, e.config
    try:
        cfg.res, cfg.style_dim, cfg.n_mlp = int(gc["resolution"]), int(gc["style_dim"]), int(gc["n_mlp"])
        cfg.channel_multiplier, cfg.channel_max = float(gc["channel_multiplier"]), int(gc["channel_max"])
        cfg.enc_depth, cfg.enc_width, cfg.enc_input = int(ec["depth"]), int(ec["width"]), int(ec["input_size"])
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"{model.path}: cannot read its architecture for --init ({err})") from err
    cfg.min_res = min(cfg.min_res, cfg.res)
    cfg.validate()


@torch.no_grad()
def init_encoder_head(E: Encoder, gain: float = 1.0) -> None:
    """One random projection shared by all style slots (zero residual), with unit-scale output.

    A zero head (the encoder's default, right for fine-tuning against a fixed generator) gives
    the generator near-identical latents at first; with demodulated convolutions tiny latent
    differences barely change the image, so the decoder learns to ignore w and the latent
    collapses. Distinct O(1) latents from the start avoid that.
    """
    n, d = E.config.n_style, E.config.style_dim
    feat = E.fc.in_features
    proj = torch.randn(d, feat) * (gain / math.sqrt(feat))
    E.fc.weight.copy_(proj.repeat(n, 1))
    E.fc.bias.zero_()


@torch.no_grad()
def set_affine_mapping(style: torch.nn.Sequential, mu: torch.Tensor, chol: torch.Tensor, margin: float) -> None:
    """Set PixelNorm + EqualLinear(leaky ReLU) layers to z ↦ mu + chol·ẑ, exact while mu + chol·ẑ > 0."""
    layers = [m for m in style if isinstance(m, EqualLinear)]
    if not layers or any(not m.activation or m.bias is None for m in layers):
        raise ValueError("the mapping network must be EqualLinear layers with bias and activation")
    d = mu.shape[0]
    eye = torch.eye(d, dtype=mu.dtype, device=mu.device)
    s2 = math.sqrt(2.0)
    for k, m in enumerate(layers):
        first, last = k == 0, k == len(layers) - 1
        if first and last:
            a, b = chol / s2, mu / s2
        elif first:  # y = √2·(ẑ + margin) > 0
            a, b = eye, torch.full_like(mu, margin)
        elif not last:  # pass-through
            a, b = eye / s2, torch.zeros_like(mu)
        else:  # from √2·(ẑ + margin) to mu + chol·ẑ
            a, b = chol / 2, (mu - chol @ torch.full_like(mu, margin)) / s2
        m.weight.copy_(a / m.scale)
        m.bias.copy_(b / m.lr_mul)

