"""Directions from labels (InterFaceGAN-style linear boundaries in W).

Sample latents, render them, score every attribute with the classifier, then fit a linear
boundary per attribute with L2-regularised logistic regression on the most and least
confident samples. The boundary's unit normal is the edit direction; optionally it is
made orthogonal to the other attributes' normals (conditional editing) to reduce
entanglement. Each direction's scale is calibrated so that slider ±1 moves its
attribute's classifier score by a measured, meaningful amount.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch

from ..errors import InputError
from ..models.generator import Generator
from .direction import Direction, DirectionSet, check_name
from .sefa import latent_spread

# Slider 1.0 should move the attribute score by about this much (mean over samples).
TARGET_SCORE_CHANGE = 0.25
# Candidate scales, in standard deviations of w along the normal.
SCALE_CANDIDATES = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)


def fit_boundary(latents: torch.Tensor, scores: torch.Tensor, *, quantile: float = 0.3, l2: float = 1e-2,
                 iters: int = 30) -> tuple[torch.Tensor, dict]:
    """Unit normal (D,) of a linear boundary separating high from low scores, plus fit stats.

    The top and bottom ``quantile`` of samples by score are the positives and negatives;
    the middle is left out because its labels are the least reliable.
    """
    x = latents.detach().double().cpu()
    s = scores.detach().double().cpu().reshape(-1)
    if x.ndim != 2 or x.shape[0] != s.shape[0]:
        raise InputError(f"latents (N, D) and scores (N,) disagree: {tuple(x.shape)} vs {tuple(s.shape)}")
    if not 0 < quantile <= 0.5:
        raise InputError(f"quantile must be in (0, 0.5], got {quantile}")
    n = x.shape[0]
    k = max(2, int(n * quantile))
    if 2 * k > n:
        raise InputError(f"need at least 4 samples to fit a boundary, got {n}")
    order = torch.argsort(s)
    neg, pos = order[:k], order[-k:]
    if float(s[pos].min()) <= float(s[neg].max()):
        raise InputError("the scores do not separate into high and low groups (all equal?)")
    X = torch.cat([x[pos], x[neg]])
    y = torch.cat([torch.ones(k), torch.zeros(k)]).double()
    # Standardise for a well-conditioned Newton solve, then map the normal back to W.
    mu, sd = X.mean(0), X.std(0).clamp_min(1e-8)
    Z = torch.cat([(X - mu) / sd, torch.ones(X.shape[0], 1, dtype=X.dtype)], dim=1)
    beta = torch.zeros(Z.shape[1], dtype=X.dtype)
    reg = torch.full((Z.shape[1],), l2 * X.shape[0], dtype=X.dtype)
    reg[-1] = 0.0
    for _ in range(iters):
        p = torch.sigmoid(Z @ beta)
        grad = Z.T @ (p - y) + reg * beta
        H = (Z * (p * (1 - p))[:, None]).T @ Z + torch.diag(reg) + 1e-9 * torch.eye(Z.shape[1], dtype=X.dtype)
        step = torch.linalg.solve(H, grad)
        beta = beta - step
        if float(step.abs().max()) < 1e-8:
            break
    normal = beta[:-1] / sd
    normal = normal / normal.norm().clamp_min(1e-12)
    acc = float(((Z @ beta > 0).double() == y).double().mean())
    return normal.float(), {"fit_accuracy": acc, "fit_samples": 2 * k}


def condition_normal(normal: torch.Tensor, others: Sequence[torch.Tensor]) -> torch.Tensor:
    """Remove the components along other normals (their span) and renormalise."""
    if not others:
        return normal
    Q, _ = torch.linalg.qr(torch.stack([o.double() for o in others], dim=1))
    v = normal.double()
    v = v - Q @ (Q.T @ v)
    nv = v.norm()
    if float(nv) < 1e-6:
        raise InputError("the direction lies in the span of the conditioning directions")
    return (v / nv).float()


def render_resolution(G: Generator, input_size: int) -> int:
    """Smallest output resolution that is at least the classifier's input size."""
    for r in G.resolutions:
        if r >= input_size:
            return r
    return G.resolution


@torch.no_grad()
def score_latents(G: Generator, classifier, w_plus: torch.Tensor, *, res: int | None = None,
                  batch: int = 32) -> torch.Tensor:
    """Classifier scores (N, n_attr) of the images rendered from W+ latents."""
    res = res or render_resolution(G, classifier.config.input_size)
    dev = next(G.parameters()).device
    out = []
    for chunk in w_plus.split(batch):
        img = G.synthesize(chunk.to(dev), res=res)
        out.append(classifier.predict(img.to(next(classifier.parameters()).device)).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def measure_score_change(G: Generator, classifier, direction: Direction, attribute: int, w: torch.Tensor,
                         value: float = 1.0, res: int | None = None) -> float:
    """Mean half-difference of the attribute's score between slider +value and −value."""
    wp = G.to_w_plus(w.to(next(G.parameters()).device))
    up = direction.apply(wp, value)
    down = direction.apply(wp, -value)
    su = score_latents(G, classifier, up, res=res)[:, attribute]
    sd = score_latents(G, classifier, down, res=res)[:, attribute]
    return float((su - sd).mean() / 2)


@torch.no_grad()
def calibrate_scale(G: Generator, classifier, direction: Direction, attribute: int, w: torch.Tensor, *,
                    target: float = TARGET_SCORE_CHANGE, res: int | None = None) -> tuple[float, float]:
    """Smallest candidate scale whose slider-1 score change reaches ``target`` → (scale, change)."""
    spread = float(latent_spread(G, direction.vector[None] if direction.vector.ndim == 1
                                 else direction.vector.mean(0, keepdim=True))[0])
    best = (direction.scale, 0.0)
    for c in SCALE_CANDIDATES:
        trial = Direction(direction.name, direction.vector, direction.layers, c * spread,
                          direction.slider_range, direction.source)
        change = measure_score_change(G, classifier, trial, attribute, w, res=res)
        if change > best[1]:
            best = (trial.scale, change)
        if change >= target:
            return trial.scale, change
    return best


@torch.no_grad()
def sample_w(G: Generator, n: int, *, truncation: float = 0.8, seed: int = 0, batch: int = 1024) -> torch.Tensor:
    dev = next(G.parameters()).device
    z = G.sample_z(n, seed, device=dev)
    return torch.cat([G.truncate(G.mapping(c), truncation) for c in z.split(batch)])


@torch.no_grad()
def directions_from_labels(G: Generator, classifier, *, n_samples: int = 2000, attributes: Sequence[str] | None = None,
                           truncation: float = 0.8, quantile: float = 0.3, conditional: bool = False,
                           target_change: float = TARGET_SCORE_CHANGE, n_calibration: int = 32, seed: int = 0,
                           batch: int = 32, progress: Callable[[str], None] | None = None) -> DirectionSet:
    """Fit one direction per classifier attribute (or the named subset) on ``n_samples`` latents."""
    names = list(classifier.attributes)
    wanted = names if attributes is None else list(attributes)
    unknown = [a for a in wanted if a not in names]
    if unknown:
        raise InputError(f"the classifier does not know {unknown}; it predicts {names}")
    if n_samples < 8:
        raise InputError("--samples must be at least 8")
    say = progress or (lambda _msg: None)
    w = sample_w(G, n_samples, truncation=truncation, seed=seed)
    say(f"scoring {n_samples} samples")
    scores = score_latents(G, classifier, G.to_w_plus(w), batch=batch)
    w = w.float().cpu()
    normals: dict[str, tuple[torch.Tensor, dict]] = {}
    for a in wanted:
        col = scores[:, names.index(a)]
        spread = float(col.std())
        if spread < 1e-6:
            warnings.warn(f"attribute {a!r} does not vary over the samples; no direction fitted", stacklevel=2)
            continue
        if spread < 1e-2:
            warnings.warn(f"attribute {a!r} hardly varies over the samples (score std {spread:.4f}); "
                          "its direction may be unreliable", stacklevel=2)
        normals[a] = fit_boundary(w, col, quantile=quantile)
    if conditional and len(normals) > 1:
        normals = {a: (condition_normal(n, [m for b, (m, _) in normals.items() if b != a]), st)
                   for a, (n, st) in normals.items()}
    w_cal = sample_w(G, n_calibration, truncation=truncation, seed=seed + 1_000_003)
    out = DirectionSet()
    for a, (normal, stats) in normals.items():
        name = check_name(a.lower().replace(" ", "_"))
        d = Direction(name, normal, source="labels")
        scale, change = calibrate_scale(G, classifier, d, names.index(a), w_cal, target=target_change)
        info = {"attribute": a, **stats, "score_change_at_1": round(change, 4), "conditional": conditional,
                "samples": n_samples, "truncation": truncation}
        out.add(Direction(name, normal, scale=scale, source="labels", info=info))
        say(f"{name}: fit accuracy {stats['fit_accuracy']:.3f}, slider 1 → score {change:+.3f}")
    return out
