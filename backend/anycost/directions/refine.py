"""Disentangle label directions by optimising them against the attribute classifier.

A linear boundary in W (``boundaries.py``) points the right way on average, but through a
non-linear generator it also drags other attributes along, and one vector for every style slot
ignores that pose lives in the coarse slots and colour in the fine ones. Here each direction
becomes a per-slot W+ offset ``V`` (n_style, style_dim), started from the boundary and optimised
on sampled latents so that slider ±1 moves its own attribute by a margin while every other
attribute stays put:

    loss = mean relu(margin − t·Δown) + λ · mean Σ_others relu(|Δother| − tolerance) + μ · |V|²

``t`` is the slider value used for a sample: +1 where the attribute's score is below 0.5, −1 above
(edit towards the side with room; a face that already wears glasses cannot gain more). Images are
rendered at the classifier's input size through the multi-resolution generator, which keeps the
optimisation cheap; the measured effect is reported on latents never used in the optimisation.
An offset that grows far along directions w hardly varies in (measured in whitened units) has left
the latent distribution — it fools the classifier with colour fringes. Growth near that limit is
penalised during the optimisation, and an offset past it is not kept.

The hinge loss above pulls on every sample, including those a direction already serves and those it
never will, so it can trade one success for another. A second stage (``polish_steps``) then maximises
a smooth count of successes instead:

    p = σ((t·Δown − 0.33) / τ) · Π_others σ((0.09 − |Δother|) / τ),   loss = −mean p

(thresholds a little inside the criterion's 0.3 / 0.1), which spends the offset's freedom on the
samples near the line between success and failure. The hinge stage gets it close first: from a label
direction the product is ~0 on every sample and gives no gradient.

The pool may hold samples and the faces users bring at once (``mix_samples``): a batch then draws half
from each, and the held-out effect is measured on both together.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..models.generator import Generator
from .boundaries import render_resolution, sample_w, score_latents
from .direction import Direction, DirectionSet
from .regional import score_regional


@dataclass
class RefineSettings:
    steps: int = 60
    batch: int = 16
    lr: float = 0.1  # relative to the starting offset's typical element
    margin: float = 0.4  # own-score change asked for at slider ±1 (success counts ≥ 0.3)
    tolerance: float = 0.05  # other scores may drift this much before they cost
    other_weight: float = 1.0  # linear: a squared or heavier penalty shrinks V until the slider does nothing
    norm_weight: float = 1e-3  # keeps V small where the classifier does not care
    pool: int = 512  # latents the optimisation draws its batches from
    holdout: int = 64  # separate latents for the reported effect
    truncation: float = 0.8
    seed: int = 0
    # an offset that grows this much in whitened W units (w's own spread) has left the latent
    # distribution: the classifier is fooled by colour fringes instead of seeing the attribute
    max_drift: float = 1.3
    # growth past 0.9 · max_drift costs this much per unit during the optimisation, so an offset
    # that would drift is steered to a solution inside the distribution instead of being thrown away
    drift_weight: float = 10.0
    polish_steps: int = 0  # steps of the second stage (smooth count of successes) after the hinge stage
    polish_batch: int = 32
    polish_temperature: float = 0.05  # τ: width of the smooth step around each threshold


@dataclass
class EditEffect:
    """Measured on held-out latents, slider ±1 towards the side with room."""

    success: float  # share with own change ≥ 0.3 and every other |change| < 0.1
    own: float  # mean own change in the intended sign
    other_max: float  # mean over samples of the largest other |change|

    def as_dict(self) -> dict:
        return {"success": round(self.success, 4), "own_change": round(self.own, 4),
                "other_max_change": round(self.other_max, 4)}


def room_sign(scores: torch.Tensor) -> torch.Tensor:
    """Slider sign per sample: +1 where the score is below 0.5, −1 where above."""
    return torch.where(scores < 0.5, 1.0, -1.0)


def measure_effect(G: Generator, clf, offset: torch.Tensor, attribute: int, w_plus: torch.Tensor,
                   base: torch.Tensor, res: int, region: torch.Tensor | None = None) -> EditEffect:
    """Success share, own change and largest other change of a W+ offset at slider ±1 (its edit kept
    inside ``region`` when given, as the editor renders a regional direction)."""
    t = room_sign(base[:, attribute])
    moved_w = w_plus + t[:, None, None] * offset
    edited = (score_latents(G, clf, moved_w, res=res) if region is None
              else score_regional(G, clf, w_plus, moved_w, region, res=res))
    moved = edited - base
    own = t * moved[:, attribute]
    others = torch.cat([moved[:, :attribute], moved[:, attribute + 1:]], 1).abs()
    ok = (own >= 0.3) & (others < 0.1).all(1)
    worst = others.max(1).values if others.shape[1] else torch.zeros_like(own)  # a one-attribute classifier
    return EditEffect(float(ok.float().mean()), float(own.mean()), float(worst.mean()))


# the polish stage's thresholds, a little inside the success criterion's 0.3 / 0.1 so that a sample it
# counts as (almost) successful also passes the criterion
_POLISH_OWN, _POLISH_OTHER = 0.33, 0.09


def smooth_success(own: torch.Tensor, others: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per sample, a differentiable stand-in for "own ≥ 0.3 and every other |change| < 0.1" (in [0, 1])."""
    log_p = (F.logsigmoid((own - _POLISH_OWN) / temperature)
             + F.logsigmoid((_POLISH_OTHER - others) / temperature).sum(1))
    return log_p.exp()


def whitening(w: torch.Tensor) -> torch.Tensor:
    """Σ^-1/2 of sampled latents (N, D): offsets measured in units of w's own spread."""
    cov = torch.cov(w.double().T)
    e, U = torch.linalg.eigh(cov)
    return (U * e.clamp_min(1e-8 * float(e.max())).rsqrt()) @ U.T


def whitened_length(offset: torch.Tensor, whiten: torch.Tensor) -> torch.Tensor:
    """Mean per-slot length of a W+ offset (n_style, D) in whitened units, differentiable."""
    return (offset @ whiten.to(offset.device, offset.dtype)).norm(dim=1).mean()


def whitened_norm(offset: torch.Tensor, whiten: torch.Tensor) -> float:
    """``whitened_length`` as a number, computed in double precision."""
    return float(whitened_length(offset.double().cpu(), whiten))


def _better(after: EditEffect, before: EditEffect) -> bool:
    """More successes; at a tie, less drag on the others while the slider still does its job."""
    if after.success != before.success:
        return after.success > before.success
    return after.own >= min(0.3, before.own) and after.other_max < before.other_max


def attribute_directions(directions: DirectionSet, clf, names: Sequence[str] | None = None) -> list[tuple[str, int]]:
    """(direction name, classifier index) for each of ``names`` (default all) that names one of the
    classifier's attributes (its ``info["attribute"]``, else its own name)."""
    attrs = list(clf.attributes)
    out = []
    for name in names or list(directions):
        a = directions[name].info.get("attribute", name)
        if a in attrs:
            out.append((name, attrs.index(a)))
    return out


def _changes(G: Generator, clf, V: torch.Tensor, w: torch.Tensor, base: torch.Tensor, a: int,
             res: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Own score change in the intended sign and every other |change| (N, n_attr − 1) at slider ±1."""
    t = room_sign(base[:, a])
    moved = clf.predict(G.synthesize(w + t[:, None, None] * V, res=res, noise="const")) - base
    return t * moved[:, a], torch.cat([moved[:, :a], moved[:, a + 1:]], 1).abs()


def _drift_cost(V: torch.Tensor, whiten: torch.Tensor, start_white: torch.Tensor, s: RefineSettings) -> torch.Tensor:
    """Growth past 0.9 · max_drift (whitened units, against the starting offset) costs ``drift_weight``."""
    if s.drift_weight <= 0:
        return V.new_zeros(())
    return s.drift_weight * torch.relu(whitened_length(V, whiten) / start_white - 0.9 * s.max_drift)


def refine_directions(G: Generator, clf, directions: DirectionSet, *, names: Sequence[str] | None = None,
                      settings: RefineSettings | None = None,
                      progress: Callable[[str], None] | None = None,
                      latents: tuple[torch.Tensor, torch.Tensor] | None = None,
                      mix_samples: bool = False) -> DirectionSet:
    """Per-slot offsets for the label directions in ``directions`` (those naming a classifier attribute).

    ``latents``: (pool, held-out) W+ latents to optimise and measure on instead of samples, e.g. the
    encoder's answers for real faces (``projected_latents``) or their refined projections
    (``refined_projections``): the faces a user edits arrive through projection, off the sampled
    distribution, where a direction fitted on samples moves less. With ``mix_samples`` they join the
    samples instead of replacing them: each batch draws half from either, and both held-out sets measure."""
    s = settings or RefineSettings()
    if s.steps < 0 or s.polish_steps < 0 or s.steps + s.polish_steps < 1 or min(s.batch, s.polish_batch) < 2:
        raise InputError("direction refinement needs at least 1 step and a batch of 2")
    if mix_samples and latents is None:
        raise InputError("mixing samples with faces needs the faces' latents")
    say = progress or (lambda _m: None)
    attrs = list(clf.attributes)
    todo = attribute_directions(directions, clf, names)
    if not todo:
        raise InputError(f"no direction names a classifier attribute ({', '.join(attrs)})")
    res = render_resolution(G, clf.config.input_size)
    frozen = [(p, p.requires_grad) for m in (G, clf) for p in m.parameters()]
    for p, _ in frozen:
        p.requires_grad_(False)
    try:
        pools: list[torch.Tensor] = []  # groups a batch draws from in equal shares
        held_parts: list[torch.Tensor] = []
        if latents is None or mix_samples:
            pools.append(G.to_w_plus(sample_w(G, s.pool, truncation=s.truncation, seed=s.seed + 31_337)))
            held_parts.append(G.to_w_plus(sample_w(G, s.holdout, truncation=s.truncation, seed=s.seed + 71_711)))
        if latents is not None:
            pool, held = (x.detach().to(next(G.parameters()).device) for x in latents)
            if pool.shape[1:] != (G.n_style, G.style_dim) or held.shape[1:] != pool.shape[1:] or len(pool) < 2:
                raise InputError(f"refinement latents must be (N, {G.n_style}, {G.style_dim}) W+, at least 2")
            pools.append(pool)
            held_parts.append(held)
        on = "samples" if latents is None else "samples+projected" if mix_samples else "projected"
        held = torch.cat(held_parts)
        say(f"scoring {' + '.join(str(len(p)) for p in pools)} + {len(held)} latents ({on}) at {res} px")
        pool_bases = [score_latents(G, clf, p, res=res) for p in pools]
        held_base = score_latents(G, clf, held, res=res)
        whiten = whitening(sample_w(G, max(2048, 8 * G.style_dim), truncation=1.0, seed=s.seed + 5))
        whiten_f = whiten.to(held.device, held.dtype)  # for the drift penalty inside the optimisation

        def draw(batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
            ws, bases = [], []
            for k, (p, pb) in enumerate(zip(pools, pool_bases, strict=True)):
                n = batch // len(pools) + (1 if k < batch % len(pools) else 0)
                idx = torch.randint(len(p), (n,), generator=gen)
                ws.append(p[idx])
                bases.append(pb[idx])
            return torch.cat(ws), torch.cat(bases)

        out = DirectionSet()
        for name, a in todo:
            d = directions[name]
            t0 = time.perf_counter()
            start = d.offset(G.n_style, G.style_dim).to(held.device)
            # judged as the editor renders it (inside its region, if it has one); the polish itself is global
            before = measure_effect(G, clf, start, a, held, held_base, res, d.region)
            V = start.clone().requires_grad_(True)
            unit = start.norm(dim=1).mean().clamp_min(1e-3)
            start_white = whitened_length(start, whiten_f).clamp_min(1e-6)
            gen = torch.Generator().manual_seed(s.seed + 1009 * a)

            opt = torch.optim.Adam([V], lr=s.lr * float(unit) / G.style_dim ** 0.5)
            for _ in range(s.steps):
                own, others = _changes(G, clf, V, *draw(s.batch, gen), a, res)
                loss = (torch.relu(s.margin - own).mean()
                        + s.other_weight * torch.relu(others - s.tolerance).sum(1).mean()
                        + s.norm_weight * (V / unit).pow(2).sum(1).mean()
                        + _drift_cost(V, whiten_f, start_white, s))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            # the polish stage takes smaller steps: it moves samples across the line, not the offset's scale
            opt = torch.optim.Adam([V], lr=0.5 * s.lr * float(unit) / G.style_dim ** 0.5)
            for _ in range(s.polish_steps):
                own, others = _changes(G, clf, V, *draw(s.polish_batch, gen), a, res)
                loss = (-smooth_success(own, others, s.polish_temperature).mean()
                        + _drift_cost(V, whiten_f, start_white, s))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            V = V.detach()
            after = measure_effect(G, clf, V, a, held, held_base, res, d.region)
            drift = whitened_norm(V, whiten) / whitened_norm(start, whiten)
            if drift > s.max_drift or not _better(after, before):
                V, after = start, before  # never worse than the boundary it started from
            info = {**d.info, "refined": {"steps": s.steps, "batch": s.batch, "margin": s.margin,
                                          "polish_steps": s.polish_steps, "held_out": len(held),
                                          "drift": round(drift, 3), "on": on,
                                          "before": before.as_dict(),
                                          "after": after.as_dict()}}
            out.add(Direction(d.name, V.cpu(), None, 1.0, d.slider_range, d.source, info, d.hidden, d.region))
            say(f"{name}: success {100 * before.success:.0f} % → {100 * after.success:.0f} %, own "
                f"{before.own:+.2f} → {after.own:+.2f}, other max {before.other_max:.2f} → {after.other_max:.2f} "
                f"({time.perf_counter() - t0:.0f} s)")
        return out
    finally:
        for p, flag in frozen:
            p.requires_grad_(flag)


@torch.no_grad()
def projected_latents(G: Generator, encoder, images: torch.Tensor, batch: int = 32) -> torch.Tensor:
    """The encoder's instant W+ for each of ``images`` ((N, 3, H, W) in [-1, 1], resized to the model's
    resolution): the latents a user's faces start from."""
    if encoder is None:
        raise InputError("refining on projected faces needs a model with an encoder")
    encoder.eval()
    device = next(G.parameters()).device
    out = []
    for i in range(0, len(images), batch):
        x = images[i: i + batch].to(device, torch.float32)
        if x.shape[-1] != G.resolution:
            x = F.interpolate(x, size=(G.resolution, G.resolution), mode="bicubic", align_corners=False,
                              antialias=True)
        out.append(encoder(x.clamp(-1, 1)).float())
    return torch.cat(out)


def refined_projections(G: Generator, encoder, images: torch.Tensor, settings, *, batch: int = 16,
                        progress: Callable[[str], None] | None = None) -> torch.Tensor:
    """W+ of ``images`` after refinement with ``settings`` (a ``ProjectionSettings``; an editor's are the
    model's own, ``settings_for_model``): the latents a user's face is edited from. Faces are projected
    ``batch`` at a time, each with its own latent; the best-step choice is shared by a batch."""
    from ..editing.project import Projector

    if encoder is None:
        raise InputError("refining on projected faces needs a model with an encoder")
    P = Projector(G, encoder, settings=settings)
    out = []
    t0 = time.perf_counter()
    for i in range(0, len(images), batch):
        *_, last = P.iter_project(images[i: i + batch])
        out.append(last.w_plus)
        if progress:
            progress(f"projected {min(i + batch, len(images))}/{len(images)} faces ({time.perf_counter() - t0:.0f} s)")
    return torch.cat(out)
