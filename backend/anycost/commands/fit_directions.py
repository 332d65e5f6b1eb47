"""``anycost fit-directions``: add edit directions to a model file."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..errors import InputError
from .common import add_device, model_output, resolve_device

if TYPE_CHECKING:
    import torch

    from ..editing.align import Framing


def _slots(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        out: list[int] = []
        for part in text.split(","):
            if "-" in part:
                a, b = part.split("-")
                out += list(range(int(a), int(b) + 1))
            elif part.strip():
                out.append(int(part))
        return out
    except ValueError as e:
        raise InputError(f"--layers must look like 0-5,8 (style slot indices), got {text!r}") from e


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit-directions", help="add edit directions to a model (labels, SeFa, PCA or boundary file)",
                       description="Compute or import edit directions and write a model file that holds "
                                   "everything in --model plus the directions (same names are replaced).")
    p.add_argument("--model", required=True, help="model name or file holding the generator")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--from-labels", action="store_true",
                     help="fit InterFaceGAN-style boundaries from attribute-classifier scores")
    how.add_argument("--sefa", type=int, metavar="K", help="the top K SeFa directions (sefa_0 … sefa_K-1)")
    how.add_argument("--pca", type=int, metavar="K",
                     help="the top K principal components of sampled w (pca_0 … pca_K-1), GANSpace-style")
    how.add_argument("--boundaries", metavar="FILE",
                     help="import a boundary file (.pt official dict, .safetensors or .npy)")
    how.add_argument("--refine", action="store_true",
                     help="optimise the model's label directions against its classifier: per-slot offsets "
                          "that move their own attribute and leave the others (see docs/encoder-and-directions.md)")
    p.add_argument("--classifier", default=None,
                   help="model file holding the classifier (default: the one in --model); the output keeps it "
                        "with the directions fitted by it, unless --model already holds one")
    p.add_argument("--attributes", default=None, help="comma-separated subset of classifier attributes")
    p.add_argument("--samples", type=int, default=None,
                   help="latents to sample (--from-labels: 2000; --pca: 20000 on a GPU, 5000 on the CPU)")
    p.add_argument("--truncation", type=float, default=0.8,
                   help="psi for the latents --from-labels samples (--pca samples without truncation)")
    p.add_argument("--quantile", type=float, default=0.3, help="top/bottom share used as positives/negatives")
    p.add_argument("--conditional", action="store_true",
                   help="make each direction orthogonal to the other fitted attributes")
    p.add_argument("--target-change", type=float, default=0.25,
                   help="classifier score change that slider 1 should cause (default 0.25)")
    p.add_argument("--calibration-samples", type=int, default=32,
                   help="latents used to measure each direction's effect when choosing its scale")
    r = p.add_argument_group("--refine")
    r.add_argument("--refine-steps", type=int, default=100,
                   help="hinge-loss steps per direction (default 100; 0 polishes the directions as they are)")
    r.add_argument("--refine-polish", type=int, default=80, metavar="STEPS",
                   help="then this many steps maximising a smooth count of successes (default 80; 0 skips)")
    r.add_argument("--refine-batch", type=int, default=16, help="latents per step (default 16)")
    r.add_argument("--refine-pool", type=int, default=512, help="latents the batches are drawn from")
    r.add_argument("--refine-holdout", type=int, default=64, help="other latents the reported effect is measured on")
    r.add_argument("--refine-on", default="samples", metavar="samples|synth|FOLDER|samples+synth|samples+FOLDER",
                   help="what the latents are: samples of the model (default); 'synth', the encoder's answers for "
                        "synthetic faces (models trained on them, such as the demo; held-out faces measure); or the "
                        "encoder's answers for the aligned face images in FOLDER (the last --refine-holdout measure); "
                        "'samples+…' mixes samples and those faces, half of each batch from either")
    r.add_argument("--refine-faces", type=int, default=None,
                   help="faces in the pool for synth|FOLDER (default: --refine-pool)")
    r.add_argument("--refine-project-steps", type=int, default=0,
                   help="refine each face's projection this many steps with the model's projection settings, as "
                        "an editor does, instead of taking the encoder's instant answer (default 0)")
    r.add_argument("--refine-align", action="store_true",
                   help="take the faces as a user's are taken: find each face and align it with the model's framing "
                        "before encoding (synthetic faces are drawn at 256 px for it; images in FOLDER may be any "
                        "size); faces where none is found are left out (see --refine-unfound)")
    r.add_argument("--refine-unfound", choices=("skip", "centre"), default="skip",
                   help="with --refine-align, images where no face is found: left out (skip, default) or "
                        "centre-cropped as an editor crops them (centre), so the pool holds every kind of "
                        "crop a user's edit starts from")
    p.add_argument("--layers", default=None, help="style slots the directions act on, e.g. 0-7 (default all)")
    p.add_argument("--scale", type=float, default=None,
                   help="W distance at slider 1 (default: measured / 2 std of w along the direction)")
    p.add_argument("--replace", action="store_true", help="drop the model's existing directions")
    p.add_argument("--export", default=None, help="also write the new directions to this .safetensors/.npy file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", required=True, help="model file to write (.safetensors; may be --model)")
    add_device(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..directions import Direction, DirectionSet, load_directions_file, pca_directions, to_component
    from ..directions.sefa import SPREAD_PER_SLIDER, latent_spread, sefa_directions
    from ..directions.storage import COMPONENT, from_component, save_directions_file
    from ..io.modelfile import read_model
    from ..registry import resolve_model
    from ..training.model_update import model_parts, update_model

    out = model_output(args.output)
    device = resolve_device(args.device)
    source = resolve_model(args.model)
    G, comps, _ = model_parts(source)
    if G is None:
        raise InputError(f"{source} holds no generator")
    have = from_component(comps[COMPONENT], str(source)) if COMPONENT in comps else DirectionSet()
    G = G.to(device)
    layers = _slots(args.layers)
    if args.samples is not None and args.samples < 1:
        raise InputError("--samples must be at least 1")
    if args.sefa is not None:
        new = sefa_directions(G, args.sefa, layers, scale=args.scale)
    elif args.pca is not None:
        new = pca_directions(G, args.pca, layers, n_samples=args.samples, seed=args.seed, scale=args.scale)
    elif args.boundaries:
        loaded = load_directions_file(args.boundaries)
        new = DirectionSet()
        for d in loaded.values():
            vec = d.vector
            if args.scale is not None:
                scale = args.scale
            elif d.source == "official" and vec.ndim == 1 and vec.shape[0] == G.style_dim:
                scale = SPREAD_PER_SLIDER * float(latent_spread(G, vec[None])[0])
            else:
                scale = d.scale
            new.add(Direction(d.name, vec, layers if layers is not None else d.layers, scale, d.slider_range,
                              d.source, d.info, d.hidden, d.region))
    elif args.refine:
        from ..directions.refine import RefineSettings, refine_directions

        clf = _classifier(args, comps, source)
        attrs = [a.strip() for a in args.attributes.split(",")] if args.attributes else None
        names = [n for n in have if have[n].source == "labels" and (attrs is None or n in attrs)]
        if not names:
            raise InputError(f"{source} holds no label directions to refine; fit them first with --from-labels")
        if min(args.refine_steps, args.refine_polish, args.refine_project_steps) < 0:
            raise InputError("--refine-steps, --refine-polish and --refine-project-steps must be ≥ 0")
        if args.refine_faces is not None and args.refine_faces < 2:
            raise InputError("--refine-faces must be at least 2")
        if args.refine_unfound != "skip" and not args.refine_align:
            raise InputError("--refine-unfound says what --refine-align does with images where no face is found; "
                             "pass --refine-align too")
        if args.refine_steps + args.refine_polish < 1:
            raise InputError("--refine-steps and --refine-polish are both 0: nothing to optimise")
        settings = RefineSettings(steps=args.refine_steps, batch=args.refine_batch, pool=args.refine_pool,
                                  holdout=args.refine_holdout, seed=args.seed, polish_steps=args.refine_polish)
        mix = args.refine_on.startswith("samples+")
        faces_from = args.refine_on.removeprefix("samples+")
        latents = None if faces_from == "samples" else _projected(args, faces_from, source, G, device)
        new = refine_directions(G, clf.to(device), have, names=names, settings=settings, progress=print,
                                latents=latents, mix_samples=mix)
    else:
        from ..directions.boundaries import directions_from_labels
        clf = _classifier(args, comps, source)
        attrs = [a.strip() for a in args.attributes.split(",")] if args.attributes else None
        new = directions_from_labels(G, clf.to(device), n_samples=args.samples or 2000, attributes=attrs,
                                     truncation=args.truncation, quantile=args.quantile,
                                     conditional=args.conditional, target_change=args.target_change,
                                     n_calibration=max(1, args.calibration_samples), seed=args.seed, progress=print)
        if layers is not None or args.scale is not None:
            new = DirectionSet(Direction(d.name, d.vector, layers if layers is not None else d.layers,
                                         args.scale if args.scale is not None else d.scale, d.slider_range,
                                         d.source, d.info) for d in new.values())
    if not new:
        raise InputError("no directions were produced")
    for d in new.values():
        d.check_fits(G.n_style, G.style_dim)
    merged = (DirectionSet() if args.replace else have).merged(new)
    parts = {COMPONENT: to_component(merged)}
    if (args.from_labels or args.refine) and args.classifier and "classifier" not in comps:
        # keep the classifier the directions were calibrated with, so their effect can be measured later
        parts["classifier"] = read_model(args.classifier).components["classifier"]
    update_model(source, out, components=parts)
    if args.export:
        save_directions_file(args.export, new)
    for d in new.values():
        print(f"{d.name:20s} source={d.source:8s} scale={d.scale:.3f} range={list(d.slider_range)}")
    print(f"wrote {len(new)} direction(s) ({len(merged)} in total) to {out}")
    return 0


def _classifier(args: argparse.Namespace, comps: dict, source: Path):
    from ..training.classifier import COMPONENT as CLF
    from ..training.classifier import classifier_from_component, load_classifier

    if args.classifier:
        return load_classifier(args.classifier)
    if CLF in comps:
        return classifier_from_component(comps[CLF], str(source))
    raise InputError(f"{source} holds no attribute classifier; pass --classifier FILE "
                     "(see `anycost train-classifier`)")


def _projected(args: argparse.Namespace, faces_from: str, source, G, device):
    """(pool, held-out) W+ of faces for ``--refine-on [samples+]synth|FOLDER``: the encoder's instant answers,
    or with ``--refine-project-steps`` their refinement as an editor of this model does it."""
    from ..directions.refine import projected_latents, refined_projections
    from ..editing.align import Framing
    from ..editing.projection_tuning import settings_for_model
    from ..io.checkpoint import open_model

    pool_n, held_n = args.refine_faces or args.refine_pool, args.refine_holdout
    paths: list[Path] = []
    if faces_from != "synth":
        from ..training.image_folder import list_images

        paths = list_images(faces_from)
        if len(paths) < held_n + 2:
            raise InputError(f"{faces_from} holds {len(paths)} images; --refine-on FOLDER needs more than "
                             f"--refine-holdout ({held_n}) + 1")
    mf = open_model(Path(source))
    align = args.refine_align
    keep = args.refine_unfound == "centre"
    framing = Framing.from_info(mf.info)  # None: the FFHQ crop
    encoder = mf.encoder(device)
    if encoder is None:
        raise InputError(f"{source} has no encoder: --refine-on {args.refine_on} needs one")
    if args.refine_project_steps > 0:
        steps = args.refine_project_steps
        psettings = settings_for_model(mf.info, steps=steps, report_every=steps, use_lpips=False)
        print(f"faces are refined {steps} steps each (encoder_reg {psettings.encoder_reg:g}, pixel losses)")

        def encode(images: torch.Tensor) -> torch.Tensor:
            return refined_projections(G, encoder, images, psettings, progress=print)
    else:
        def encode(images: torch.Tensor) -> torch.Tensor:
            return projected_latents(G, encoder, images)
    if faces_from == "synth":
        from ..data.synth_faces import render_batch

        def faces(n: int, start: int) -> torch.Tensor:
            imgs, _ = render_batch(args.seed, n, ALIGN_SOURCE_SIZE if align else G.resolution, start=start)
            return _to_input(imgs, G.resolution, framing if align else False, keep_unfound=keep)

        print(f"encoding {pool_n} + {held_n} synthetic faces{' (aligned)' if align else ''}")
        # held-out faces from the index range training never draws from
        return encode(faces(pool_n, 0)), encode(faces(held_n, 10 ** 9))
    from ..training.image_folder import load_images

    paths = paths[: pool_n + held_n]
    print(f"encoding {len(paths)} faces from {faces_from}{' (aligned)' if align else ''}")
    if not align:
        w = encode(load_images(paths, G.resolution))
        return w[:-held_n], w[-held_n:]
    from ..editing.region import Region

    def read(part: list[Path]) -> torch.Tensor:  # one image in memory at a time: photos may be large
        return _to_input((Region.from_file(q) for q in part), G.resolution, framing, keep_unfound=keep)

    return encode(read(paths[:-held_n])), encode(read(paths[-held_n:]))


# the size synthetic faces are drawn at for --refine-align: a region as a user selects it, larger than the model
ALIGN_SOURCE_SIZE = 256


def _to_input(images: Iterable, size: int, framing: Framing | None | Literal[False], *,
              keep_unfound: bool = False) -> torch.Tensor:
    """uint8 RGB images (or ``Region``s) → (N, 3, size, size) model input. False: taken as they are (they must
    be ``size`` square). Otherwise each face is found and aligned as an editor aligns it, with ``framing``
    (None: the FFHQ crop); images without one are left out, or with ``keep_unfound`` given the centred
    square crop an editor falls back to."""
    import numpy as np

    from ..imageio import images_to_tensor

    if framing is False:
        return images_to_tensor(np.stack(list(images)))
    from ..editing.align import align_face
    from ..editing.region import Region

    crops, seen, missed = [], 0, 0
    for img in images:
        seen += 1
        region = img if isinstance(img, Region) else Region.from_array(img)
        a = align_face(region, size, framing=framing)
        if a.face_found or keep_unfound:
            crops.append(a.image)
        missed += not a.face_found
    if missed:
        print(f"no face found in {missed} of {seen} images: "
              f"{'centre-cropped, as an editor crops them' if keep_unfound else 'left out'}")
    if len(crops) < 2:
        if keep_unfound:
            raise InputError(f"--refine-align was given {seen} image(s) here; it needs at least 2")
        raise InputError("--refine-align found a face in fewer than 2 images; check that face alignment works "
                         "(`pip install 'anycost[align]'`) and that the images hold faces")
    return images_to_tensor(np.stack(crops))
