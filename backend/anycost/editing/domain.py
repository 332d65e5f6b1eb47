"""Is a face within what the model can draw? An honest word before the user relies on an edit.

A model reconstructs its own kind of face well: the encoder's instant answer reproduces most of the
variation of held-out faces of the kind it was trained on. A face far from that kind — a photograph
given to a model of drawn faces — comes back much worse, and edits of it are weak or wrong.

The measure is the share of the aligned face's variance the encoder's answer reproduces,
``1 − MSE / Var(face)`` (the R² of the reconstruction). It separates better than PSNR, which also
moves with how much contrast a face has: on the demo model, 96 held-out synthetic faces reproduce
0.42–0.92 (5th percentile 0.54), the astronaut photograph 0.25. The model file records what its own
faces reach (``info["domain"]``, measured by ``anycost fit-domain`` or ``anycost adopt``); a face more
than ``margin`` below their 5th percentile gets a notice, and the plug-ins ask before Apply writes.

It is deliberately cheap (one full render per opened region). Its known blind spot: smooth, plain
images (a wall, fur) reproduce well whatever they show; the face detector's "no face found" covers
most of those.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

DEFAULT_MARGIN = 0.15
PHOTO_ADVICE = "use a photographic model (see docs/bring-your-own-model.md)"


@dataclass(frozen=True)
class Domain:
    """What a model's own faces reach, and how to word a face that is far from them."""

    kind: str  # what the model was trained on, in words: "drawn faces", "the faces of ffhq.zip"
    advice: str  # what to do instead
    fit_p05: float  # share of a face's variance the encoder's answer reproduces, reached by 95 % of its faces
    fit_median: float
    n: int  # faces measured
    measured_on: str  # what they were: "held-out synthetic faces", "the generator's own samples"
    margin: float = DEFAULT_MARGIN

    @property
    def threshold(self) -> float:
        return self.fit_p05 - self.margin

    def to_info(self) -> dict:
        return {**asdict(self), "threshold": round(self.threshold, 3)}

    @classmethod
    def from_info(cls, info: dict) -> Domain | None:
        d = info.get("domain")
        if not isinstance(d, dict):
            return None
        try:
            return cls(kind=str(d["kind"]), advice=str(d["advice"]), fit_p05=float(d["fit_p05"]),
                       fit_median=float(d["fit_median"]), n=int(d["n"]), measured_on=str(d.get("measured_on", "")),
                       margin=float(d.get("margin", DEFAULT_MARGIN)))
        except (KeyError, TypeError, ValueError):
            return None  # a malformed record: no check rather than a wrong one

    def notice(self, fit: float) -> str | None:
        """The sentence for a face whose encoder answer reproduces ``fit`` of it; None when it is in range."""
        if fit >= self.threshold:
            return None
        return (f"this model was trained on {self.kind}; this face is far from what it can draw (the model "
                f"reproduces {max(fit, 0):.0%} of it, {self.fit_p05:.0%} or more of its own faces), so its edits "
                f"will be weak — {self.advice}")


def encoder_fit(session) -> float:
    """Share of the aligned face's variance the encoder's instant answer reproduces, 1 − MSE / Var(face),
    at the model's resolution (can be negative for an answer worse than a flat grey)."""
    import torch

    ed = session.editor
    with torch.no_grad():
        target = ed._projector.prepare_target(session.target)
        out = ed.generator.synthesize(session.w_encoder, noise="const")
    var = float(target.var())
    return 1.0 - float((out.float() - target).square().mean()) / max(var, 1e-8)


def measure(editor, images: Iterable[np.ndarray], *, align: bool = True) -> list[float]:
    """The encoder fit of each image, through the path an edit takes (region → alignment → encoder)."""
    return [encoder_fit(editor.open(img, align=align)) for img in images]


def domain_from_scores(scores: list[float], *, kind: str, advice: str, measured_on: str,
                       margin: float = DEFAULT_MARGIN) -> Domain:
    if len(scores) < 8:
        raise ValueError("a domain needs at least 8 measured faces")
    return Domain(kind=kind, advice=advice, fit_p05=round(float(np.percentile(scores, 5)), 3),
                  fit_median=round(statistics.median(scores), 3), n=len(scores), measured_on=measured_on,
                  margin=margin)


def generator_samples(G, n: int, seed: int = 0, truncation: float = 0.8) -> list[np.ndarray]:
    """The model's own faces, for a model whose training images are not at hand (an adopted StyleGAN2)."""
    import torch

    from ..imageio import tensor_to_uint8

    out = []
    with torch.no_grad():
        for i in range(n):
            w = G.styles_from_seed(seed + i, truncation=truncation)
            out.append(tensor_to_uint8(G.synthesize(w, noise="const"))[0])
    return out
