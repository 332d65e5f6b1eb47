"""GAN losses and regularisers used by Anycost and few-shot training."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..measures.perceptual import lpips_distance


def d_logistic_loss(real_pred: torch.Tensor, fake_pred: torch.Tensor) -> torch.Tensor:
    """Discriminator side of the non-saturating logistic loss."""
    return F.softplus(-real_pred.float()).mean() + F.softplus(fake_pred.float()).mean()


def g_nonsaturating_loss(fake_pred: torch.Tensor) -> torch.Tensor:
    return F.softplus(-fake_pred.float()).mean()


def d_hinge_loss(real_pred: torch.Tensor, fake_pred: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - real_pred.float()).mean() + F.relu(1.0 + fake_pred.float()).mean()


def g_hinge_loss(fake_pred: torch.Tensor) -> torch.Tensor:
    return -fake_pred.float().mean()


def r1_penalty(real_pred: torch.Tensor, real_img: torch.Tensor) -> torch.Tensor:
    """E‖∇_x D(x)‖² on real images (``real_img`` must require grad and feed ``real_pred``)."""
    (grad,) = torch.autograd.grad(real_pred.float().sum(), real_img, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()


def lazy_r1_loss(real_pred: torch.Tensor, real_img: torch.Tensor, gamma: float, every: int) -> torch.Tensor:
    """R1 applied every ``every`` steps, scaled by ``every`` to keep its average strength (lazy regularisation)."""
    # 0·pred keeps the discriminator's output in the graph so every parameter sees a gradient.
    return gamma / 2 * r1_penalty(real_pred, real_img) * every + 0 * real_pred.float().sum()


def path_length_penalty(fake_img: torch.Tensor, w_plus: torch.Tensor, mean_path_length: torch.Tensor,
                        decay: float = 0.01) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """StyleGAN2 path-length regulariser. Returns (penalty, new running mean, path lengths)."""
    noise = torch.randn_like(fake_img) / math.sqrt(fake_img.shape[2] * fake_img.shape[3])
    (grad,) = torch.autograd.grad((fake_img.float() * noise).sum(), w_plus, create_graph=True)
    lengths = torch.sqrt(grad.float().pow(2).sum(2).mean(1))
    new_mean = mean_path_length + decay * (lengths.mean().detach() - mean_path_length)
    penalty = (lengths - new_mean).pow(2).mean()
    return penalty, new_mean.detach(), lengths


def image_distance(a: torch.Tensor, b: torch.Tensor, lpips_model: nn.Module | None = None,
                   lpips_weight: float = 1.0, pixel: str = "mse") -> torch.Tensor:
    """Pixel loss (MSE or L1) plus LPIPS when a model is given."""
    a32, b32 = a.float(), b.float()
    loss = F.mse_loss(a32, b32) if pixel == "mse" else F.l1_loss(a32, b32)
    if lpips_model is not None and lpips_weight > 0:
        loss = loss + lpips_weight * lpips_distance(lpips_model, a32, b32).mean()
    return loss


def consistency_loss(sub_img: torch.Tensor, full_img: torch.Tensor, lpips_model: nn.Module | None = None,
                     lpips_weight: float = 1.0) -> torch.Tensor:
    """Distillation of a sub-generator towards the full (or teacher) output at the same resolution."""
    if sub_img.shape != full_img.shape:
        raise ValueError(f"consistency needs equal shapes, got {tuple(sub_img.shape)} vs {tuple(full_img.shape)}")
    return image_distance(sub_img, full_img.detach(), lpips_model, lpips_weight, pixel="mse")


class FeatureReference(NamedTuple):
    """What a frozen classifier sees in the real images: per-stage activations and scores."""

    feats: list[torch.Tensor]
    logits: torch.Tensor


@torch.no_grad()
def feature_reference(clf: nn.Module, real: torch.Tensor) -> FeatureReference:
    """The real side of ``attribute_feature_distance``, computed once and reused for every render of a step."""
    feats, logits = clf.features(real.float())
    return FeatureReference(list(feats), logits)


def attribute_feature_distance(clf: nn.Module, fake: torch.Tensor,
                               real: torch.Tensor | FeatureReference) -> torch.Tensor:
    """A face-aware perceptual distance through a frozen attribute classifier (needs no download).

    LPIPS-style: channel-normalised activations of every stage compared by squared distance, plus
    the classifier's scores of ``fake`` pulled towards those of ``real``. Pixel MSE averages small
    features (eyes, mouth corners, glasses) away; this term is what keeps them, because those are
    what the classifier's features respond to. ``real`` may be images or their ``feature_reference``.
    """
    return attribute_feature_terms(clf, fake, real)[0]


def attribute_feature_terms(clf: nn.Module, fake: torch.Tensor, real: torch.Tensor | FeatureReference
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """``attribute_feature_distance`` and the classifier's logits for ``fake`` (for ``label_loss``)."""
    ref = real if isinstance(real, FeatureReference) else feature_reference(clf, real)
    fake_feats, fake_logits = clf.features(fake.float())
    dist = fake_logits.new_zeros(())
    for f, r in zip(fake_feats, ref.feats, strict=True):
        dist = dist + (F.normalize(f, dim=1) - F.normalize(r, dim=1)).pow(2).sum(1).mean()
    target = torch.sigmoid(ref.logits)
    scores = F.binary_cross_entropy_with_logits(fake_logits, target)
    scores = scores - F.binary_cross_entropy_with_logits(ref.logits, target)  # 0 at a match
    return dist / len(fake_feats) + scores, fake_logits


def label_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of a classifier's scores against soft labels in [0, 1], less the labels' own
    entropy: 0 when the scores equal the labels, positive otherwise.

    Pulling the scores of a reconstruction towards the training face's true labels asks for every
    labelled attribute, also those the classifier reads only partly right on the real image (its
    opinion of the real image is what ``attribute_feature_distance`` matches)."""
    if logits.shape != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} differ in shape")
    labels = labels.to(logits.dtype).clamp(0, 1)
    entropy = -(torch.xlogy(labels, labels) + torch.xlogy(1 - labels, 1 - labels)).mean()
    return F.binary_cross_entropy_with_logits(logits, labels) - entropy
