"""How firmly refinement holds on to the encoder's answer: measured per model, stored in its file.

Refinement pulls the latent towards the encoder's answer (``ProjectionSettings.encoder_reg``). A weak
pull reproduces the face more closely but lets the latent wander where the edit directions were never
fitted, so sliders do less; a strong pull keeps the sliders working at some cost in fidelity. Where the
balance lies depends on the model (the spread of its latents, how good its encoder is), so it is
measured on faces of the model's own kind and recorded in ``info["projection"]``; every editor of the
model then starts from it.

The sweep projects each face once per candidate pull, through the path an edit takes (region →
alignment → encoder → refinement), and scores every attribute direction with the model's classifier
(slider ±1 towards the side with room: own score ≥ 0.3 the intended way, every other < 0.1). The
choice is the pull with the most successes among those whose mean PSNR stays within
``max_psnr_loss`` dB of the weakest pull's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import InputError
from .project import ProjectionSettings

# Fields of ProjectionSettings a model file may set, with what each must be.
TUNABLE = {"encoder_reg": "a number ≥ 0"}


def projection_overrides(info: dict) -> dict[str, float]:
    """The projection settings a model file records (``info["projection"]``), checked."""
    rec = info.get("projection") or {}
    if not isinstance(rec, dict):
        raise InputError("the model file's info.projection must be a mapping")
    out = {}
    for key in TUNABLE:
        if key in rec:
            v = rec[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise InputError(f"the model file's info.projection.{key} must be {TUNABLE[key]}, got {v!r}")
            out[key] = float(v)
    return out


def settings_for_model(info: dict, **fields) -> ProjectionSettings:
    """``ProjectionSettings(**fields)`` with what the model file records applied on top."""
    settings = ProjectionSettings(**fields)
    for key, value in projection_overrides(info).items():
        setattr(settings, key, value)
    return settings


@dataclass
class SweepPoint:
    """One candidate pull, measured."""

    encoder_reg: float
    psnr: float  # mean over the faces, dB
    psnr_min: float
    success: dict[str, float] = field(default_factory=dict)  # per attribute direction, share of faces

    @property
    def total(self) -> float:
        return sum(self.success.values())

    def as_dict(self) -> dict:
        return {"encoder_reg": self.encoder_reg, "psnr": round(self.psnr, 3), "psnr_min": round(self.psnr_min, 3),
                "success": {k: round(v, 4) for k, v in self.success.items()}}


def refined_latents(sessions, *, steps: int, encoder_reg: float) -> tuple[torch.Tensor, list[float]]:
    """Each open session refined from its encoder answer as the editor refines it: (W+ of all, PSNR of each)."""
    ws, psnrs = [], []
    for s in sessions:
        s.set_latent(s.w_encoder)
        last = s.project(steps, encoder_reg=encoder_reg)
        ws.append(last.w_plus)
        psnrs.append(last.psnr)
    return torch.cat(ws), psnrs


def sweep(editor, clf, images: Sequence[np.ndarray], values: Sequence[float], *, steps: int,
          align: bool = True, progress: Callable[[str], None] | None = None) -> list[SweepPoint]:
    """Project every image once per ``encoder_reg`` in ``values`` and score the edits of each."""
    from ..directions.boundaries import render_resolution, score_latents
    from ..directions.refine import attribute_directions, measure_effect

    say = progress or (lambda _m: None)
    if editor.encoder is None:
        raise InputError("tuning the projection needs a model with an encoder (its answer is what the pull holds to)")
    todo = attribute_directions(editor.directions, clf)
    if not todo:
        raise InputError(f"no direction of the model names a classifier attribute ({', '.join(clf.attributes)}); "
                         "fit them first (`anycost fit-directions --from-labels`)")
    if not values or any(not math.isfinite(v) or v < 0 for v in values):
        raise InputError("the candidate pulls must be numbers ≥ 0")
    if steps < 1:
        raise InputError("tuning the projection needs at least 1 refinement step")
    sessions = [editor.open(img, align=align) for img in images]
    G = editor.generator
    res = render_resolution(G, clf.config.input_size)
    points = []
    for v in values:
        w, psnrs = refined_latents(sessions, steps=steps, encoder_reg=float(v))
        with torch.inference_mode():
            base = score_latents(G, clf, w, res=res)
            dirs = editor.directions
            success = {name: measure_effect(G, clf, dirs[name].offset(G.n_style, G.style_dim).to(w),
                                            a, w, base, res, dirs[name].region).success for name, a in todo}
        p = SweepPoint(float(v), float(np.mean(psnrs)), float(np.min(psnrs)), success)
        points.append(p)
        say(f"encoder_reg {v:g}: PSNR mean {p.psnr:.2f} dB (min {p.psnr_min:.2f}), edit successes summed "
            f"over {len(success)} sliders {100 * p.total:.0f} %")
    return points


def choose(points: Sequence[SweepPoint], *, max_psnr_loss: float = 1.0, min_psnr: float | None = None) -> SweepPoint:
    """The pull with the most edit successes whose PSNR stays within ``max_psnr_loss`` dB of the weakest
    pull's (and above ``min_psnr``); at a tie the weaker pull, which keeps more of the face."""
    if not points:
        raise InputError("nothing was measured")
    weakest = min(points, key=lambda p: p.encoder_reg)
    floor = weakest.psnr - max_psnr_loss
    if min_psnr is not None:
        floor = max(floor, min_psnr)
    fit = [p for p in points if p.psnr >= floor]
    if not fit:  # even the weakest pull is below the floor: keep the face as well as possible
        return max(points, key=lambda p: p.psnr)
    return max(fit, key=lambda p: (round(p.total, 6), -p.encoder_reg))
