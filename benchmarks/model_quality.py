"""Quality report of a face model on held-out synthetic faces (never used in training).

    python benchmarks/model_quality.py [--model anycost-demo] [--n 32] [--projected 16] [--refine-steps 100]
        [--editor-faces 32] [-o report/]

Prints, with the goals the shipped demo model is held to:
  * sub-generator consistency: PSNR of every ratio × resolution against the full render
    (the full render downsampled to that resolution); goal ≥ 35 dB at ratio 0.5, full resolution;
  * projection: PSNR of encoder-only and refined projections; goal refined ≥ 25 dB;
  * what the model carries: per attribute, the classifier's change between held-out faces drawn with
    it at 0 and at 1, on the drawings and on their encoder reconstructions (a slider cannot show on a
    projected face what encoder and generator lose);
  * edit success per attribute direction: share of samples whose classifier score for that
    attribute moves the intended way by ≥ 0.3 at slider ±1 (towards the side with room: +1 where
    the score is below 0.5, −1 above) while every other attribute moves < 0.1; goal ≥ 70 % (or
    ≥ 85 % of the ceiling below where that is lower); on random samples and on the projected
    held-out faces of the projection section (what a user's face goes through);
  * with --editor-faces N, the same criterion on N other held-out faces taken the way a user's face is:
    drawn at 256 px, aligned (with the model's framing), encoded and refined with the model's projection
    settings, scored at the classifier's input size;
  * the same criterion on the dataset's own edits (faces redrawn with one label set to 0 or 1):
    the ceiling the classifier allows;
and writes sample grids (random samples at every cost; edits per slider) as PNGs.
Sections the model cannot support (no encoder, classifier or directions) say so and are skipped.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from anycost.data.synth_faces import (
    ATTRIBUTES,
    FaceAttributes,
    face_attributes,
    render_batch,
    render_face,
    render_index,
)
from anycost.directions import directions_in_model
from anycost.directions.refine import room_sign
from anycost.directions.regional import blend, render_sliders
from anycost.editing.project import Projector, psnr
from anycost.editing.projection_tuning import projection_overrides, settings_for_model
from anycost.imageio import images_to_tensor, make_grid, save_image_atomic, tensor_to_uint8
from anycost.io.modelfile import read_model
from anycost.models.channels import STANDARD_RATIOS
from anycost.registry import DEFAULT_MODEL, resolve_model

HELDOUT_START = 2 * 10 ** 9  # synthetic-face indices far from any training range


def downsample(x: torch.Tensor, r: int) -> torch.Tensor:
    return x if x.shape[-1] == r else F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False,
                                                    antialias=True)


@torch.inference_mode()
def consistency(G, n: int, out: Path | None) -> None:
    print("\n== sub-generator consistency: PSNR (dB) against the full render ==")
    res_list = [r for r in G.resolutions if r >= 32]
    w = G.styles_from_seed(10_000, n=n, truncation=0.8)
    full = G.synthesize(w)
    print("ratio  " + "".join(f"{r:>8}" for r in res_list))
    rows = []
    for ratio in STANDARD_RATIOS:
        vals = []
        for r in res_list:
            sub = G.synthesize(w, res=r, channels=ratio)
            vals.append(psnr(sub, downsample(full, r)) if (ratio, r) != (1.0, G.resolution) else float("inf"))
            if r == G.resolution:
                rows.append(tensor_to_uint8(sub[:8]))
        print(f"{ratio:>5}  " + "".join(f"{v:>8.2f}" for v in vals))
    half = psnr(G.synthesize(w, channels=0.5), full)
    print(f"goal: ≥ 35 dB at ratio 0.5, full resolution → {half:.2f} dB {'(met)' if half >= 35 else '(NOT met)'}")
    if out:
        save_image_atomic(make_grid(np.concatenate(rows), cols=8), out / "samples_by_ratio.png")


def projection(G, E, n: int, steps: int, use_lpips: bool, info: dict) -> torch.Tensor:
    """Projects held-out faces, prints PSNRs and returns the refined latents (n, n_style, style_dim)."""
    print(f"\n== projection of {n} held-out synthetic faces ==")
    imgs, _ = render_batch(0, n, G.resolution, start=HELDOUT_START)
    targets = images_to_tensor(imgs)
    fields = projection_overrides(info)  # what the editor uses for this model (`anycost tune-projection`)
    if fields:
        print("projection settings from the model file: " + ", ".join(f"{k} {v:g}" for k, v in fields.items()))
    P = Projector(G, E, settings=settings_for_model(info, steps=steps, report_every=max(1, steps),
                                                    use_lpips=use_lpips))
    enc, ref, latents = [], [], []
    for t in targets:
        first = last = None
        for st in P.iter_project(t[None]):
            first = first or st
            last = st
        assert first is not None and last is not None
        enc.append(first.psnr)
        ref.append(last.psnr)
        latents.append(last.w_plus)
    print(f"encoder only ({'encoder' if E is not None else 'mean latent'}): mean {np.mean(enc):.2f} dB, "
          f"min {np.min(enc):.2f}")
    print(f"refined ({steps} steps): mean {np.mean(ref):.2f} dB, min {np.min(ref):.2f} → goal ≥ 25 dB "
          f"{'(met)' if np.mean(ref) >= 25 else '(NOT met)'}")
    return torch.cat(latents)


def success(moved: torch.Tensor, t: torch.Tensor, i: int) -> torch.Tensor:
    """Per sample: own score moved ≥ 0.3 the intended way (sign ``t``), every other < 0.1."""
    others = [j for j in range(moved.shape[1]) if j != i]
    return (t * moved[:, i] >= 0.3) & (moved[:, others].abs() < 0.1).all(dim=1)


@torch.inference_mode()
def edits(G, clf, dirs, w: torch.Tensor, what: str, out: Path | None) -> None:
    print(f"\n== edit success on {len(w)} {what} (classifier scores; slider ±1 towards the side with room) ==")
    attrs = list(clf.attributes)
    plain = G.synthesize(w)
    base = clf.predict(plain)
    grid_rows = []
    for name in dirs:
        if name in attrs:
            i = attrs.index(name)
            t = room_sign(base[:, i])  # a face with glasses cannot gain more glasses
            off = dirs[name].offset(G.n_style, G.style_dim, 1.0)
            edited = G.synthesize(w + t[:, None, None] * off)
            if dirs[name].region is not None:  # as the editor renders it: the edit kept inside its region
                edited = blend(plain, edited, [dirs[name].region])
            moved = clf.predict(edited) - base
            ok = success(moved, t, i)
            others = [j for j in range(len(attrs)) if j != i]
            worst = moved[:, others].abs().max(dim=1).values
            print(f"{name:>14}: {100 * ok.float().mean():5.1f} % succeed; "
                  f"mean intended Δ {(t * moved[:, i]).mean():+.3f}, largest other |Δ| per sample: "
                  f"median {worst.median():.3f}, max {worst.max():.3f} "
                  f"(mostly {attrs[others[int(moved[:, others].abs().mean(0).argmax())]]})")
        else:
            moved = clf.predict(render_sliders(G, dirs, w, {name: 1.0})) - base
            top = moved.abs().mean(0).argmax().item()
            print(f"{name:>14}: (not an attribute) moves {attrs[top]} most, mean |Δ| {moved.abs().mean(0)[top]:.3f}")
        row = [render_sliders(G, dirs, w[:1], {name: v}) for v in (-1.0, -0.5, 0.0, 0.5, 1.0)]
        grid_rows.append(tensor_to_uint8(torch.cat(row)))
    print("goal: ≥ 70 % per attribute direction (or ≥ 85 % of the classifier's ceiling below)")
    if out and grid_rows:
        name = "edits_per_slider.png" if what == "samples" else "edits_per_slider_projected.png"
        save_image_atomic(make_grid(np.concatenate(grid_rows), cols=5), out / name)


def heldout_faces(n: int, offset: int) -> list[FaceAttributes]:
    """Attributes of ``n`` held-out dataset faces, from index ``HELDOUT_START + offset``."""
    return [face_attributes(0, HELDOUT_START + offset + k) for k in range(n)]


def draw_faces(faces: list[FaceAttributes], res: int) -> torch.Tensor:
    """The dataset's own drawings of ``faces`` as a batch in [-1, 1]."""
    return images_to_tensor(np.stack([np.asarray(render_face(f, res)) for f in faces]))


def paired_faces(name: str, n: int, res: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Held-out dataset faces redrawn with ``name`` at 0 and at 1, everything else fixed."""
    faces = heldout_faces(n, 2_000)
    return (draw_faces([replace(f, **{name: 0.0}) for f in faces], res),
            draw_faces([replace(f, **{name: 1.0}) for f in faces], res))


@torch.inference_mode()
def carried(G, E, clf, n: int) -> None:
    """How much of each attribute survives encoder → generator: the classifier's change between a face
    drawn with the attribute at 0 and at 1, on the drawings and on their reconstructions. A slider cannot
    show on a projected face what the model does not carry."""
    print(f"\n== what the model carries: {n} held-out faces drawn with each attribute at 0 and 1, "
          "classifier change on the drawings and on their encoder reconstructions ==")
    attrs = list(clf.attributes)
    for name in (a for a in ATTRIBUTES if a in attrs):
        i = attrs.index(name)
        lo, hi = paired_faces(name, n, G.resolution)
        drawn = float((clf.predict(hi) - clf.predict(lo))[:, i].mean())
        rec = float((clf.predict(G.synthesize(E(hi))) - clf.predict(G.synthesize(E(lo))))[:, i].mean())
        print(f"{name:>14}: drawings Δ {drawn:+.2f}, reconstructions Δ {rec:+.2f} → {100 * rec / drawn:4.0f} % carried")


@torch.inference_mode()
def dataset_edits(clf, res: int, n: int) -> None:
    """The same test on the dataset's own edits: each face redrawn with one label set to 0 or 1.

    No generator is involved, so this is the ceiling the criterion allows with this classifier:
    where a real attribute change already moves other scores by ≥ 0.1, no direction can do better.
    """
    print(f"\n== the same criterion on {n} redrawn dataset faces (ceiling of the test with this classifier) ==")
    faces = heldout_faces(n, 1_000)
    base = clf.predict(draw_faces(faces, res))
    attrs = list(clf.attributes)
    for i, name in enumerate(attrs):
        if name not in ATTRIBUTES:
            continue
        t = room_sign(base[:, i])
        redrawn = [replace(f, **{name: 1.0 if s > 0 else 0.0}) for f, s in zip(faces, t.tolist(), strict=True)]
        moved = clf.predict(draw_faces(redrawn, res)) - base
        others = [j for j in range(len(attrs)) if j != i]
        worst = moved[:, others].abs().max(dim=1).values
        print(f"{name:>14}: {100 * success(moved, t, i).float().mean():5.1f} % succeed; mean intended Δ "
              f"{(t * moved[:, i]).mean():+.3f}, largest other |Δ| per sample: median {worst.median():.3f}")


def editor_path(path: Path, clf, n: int, steps: int) -> None:
    """The same edit test on held-out drawn faces taken the way a user's face is: region → alignment (with the
    model's framing) → encoder → refinement with the model's projection settings."""
    from anycost.editing.projection_tuning import sweep
    from anycost.editing.session import Editor

    editor = Editor(path, use_lpips=False)
    faces = [render_index(0, HELDOUT_START + 10_000 + i, 256)[0] for i in range(n)]
    print(f"\n== edit success on {n} held-out faces through the editor (alignment"
          f"{' with the model framing' if editor.framing else ', FFHQ crop'}, encoder, {steps} steps at "
          f"encoder_reg {editor.projection.encoder_reg:g}; classifier at its own input size) ==")
    (pt,) = sweep(editor, clf, faces, [editor.projection.encoder_reg], steps=steps)
    print(f"PSNR of the aligned crop: mean {pt.psnr:.2f} dB, min {pt.psnr_min:.2f}")
    print("  ".join(f"{k} {100 * v:.1f}" for k, v in pt.success.items()))
    print(f"summed {100 * pt.total:.0f} %")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--n", type=int, default=32, help="held-out samples per section")
    ap.add_argument("--projected", type=int, default=16, help="held-out faces projected (each is refined)")
    ap.add_argument("--refine-steps", type=int, default=100)
    ap.add_argument("--no-lpips", action="store_true")
    ap.add_argument("--editor-faces", type=int, default=0,
                    help="also run the edit test on this many held-out faces through the editor's own path")
    ap.add_argument("-o", "--out", help="folder for the sample grids")
    args = ap.parse_args()
    path = resolve_model(args.model)
    mf = read_model(path)
    G, E = mf.generator(), mf.encoder()
    out = Path(args.out) if args.out else None
    print(f"model {path} ({G.resolution}px, style {G.style_dim}); synthetic attributes: {', '.join(ATTRIBUTES)}")
    consistency(G, args.n, out)
    projected = projection(G, E, args.projected, args.refine_steps, not args.no_lpips, mf.info)
    comp = mf.components.get("classifier")
    dirs = directions_in_model(mf)
    if comp is None or not len(dirs):
        print("\n(edit success skipped: the model has "
              f"{'no classifier' if comp is None else 'a classifier'} and {len(dirs)} directions)")
    else:
        from anycost.training.classifier import classifier_from_component

        clf = classifier_from_component(comp, str(path))
        if E is not None:
            carried(G, E, clf, args.n)
        edits(G, clf, dirs, G.styles_from_seed(20_000, n=args.n, truncation=0.8), "samples", out)
        # the faces a user brings arrive through projection: the same test on the projected held-out faces
        edits(G, clf, dirs, projected, "projected held-out faces", out)
        if E is not None and args.editor_faces > 0:
            editor_path(path, clf, args.editor_faces, args.refine_steps)
        dataset_edits(clf, G.resolution, args.n)


if __name__ == "__main__":
    main()
