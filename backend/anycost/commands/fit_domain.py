"""``anycost fit-domain``: record what a model's own faces reach, so faces beyond it are named as such."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError
from .common import model_output


def register(sub: argparse._SubParsersAction) -> None:
    from ..editing.domain import DEFAULT_MARGIN

    p = sub.add_parser(
        "fit-domain", help="measure how well a model reconstructs its own kind of face",
        description="Measure the share of a face the encoder's answer reproduces (1 − MSE / variance) on "
                    "held-out faces of the model's own kind and "
                    "store it in the model file. Editing then tells the user, plainly, when a face comes back "
                    "much worse (e.g. a photograph given to a model of drawn faces), and the plug-ins ask before "
                    "Apply. See docs/editing.md.")
    p.add_argument("--model", required=True, help="model name or file (it needs an encoder)")
    p.add_argument("-o", "--output", required=True, help="model file to write (.safetensors; may be --model)")
    p.add_argument("--faces", default="samples",
                   help="the model's own kind of face: 'synth' (held-out synthetic faces, the demo's data), "
                        "'samples' (the generator's own samples, default) or a folder of images")
    p.add_argument("--n", type=int, default=64, help="faces measured (default 64)")
    p.add_argument("--kind", default=None, help="what the model was trained on, in words (e.g. 'drawn faces')")
    p.add_argument("--advice", default=None, help="what to tell the user to do instead")
    p.add_argument("--margin", type=float, default=DEFAULT_MARGIN,
                   help=f"how far below the 5th percentile still counts as in range (default {DEFAULT_MARGIN:g})")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def own_faces(spec: str, editor, n: int, seed: int):
    """(images, words for what they are, whether to align them)."""
    import numpy as np

    if spec == "synth":
        from ..data.synth_faces import render_index

        # indices from 2·10⁹: never used for training (docs/data.md)
        return [render_index(seed, 2_000_000_000 + i, 256)[0] for i in range(n)], "held-out synthetic faces", True
    if spec == "samples":
        from ..editing.domain import generator_samples

        return generator_samples(editor.generator, n, seed), "the generator's own samples", editor.is_face_model
    folder = Path(spec)
    if not folder.is_dir():
        raise InputError(f"--faces must be 'synth', 'samples' or a folder of images, got {spec!r}")
    from ..training.image_folder import list_images

    paths = list_images(folder)[:n]
    from PIL import Image

    return [np.asarray(Image.open(p).convert("RGB")) for p in paths], f"images from {folder.name}", True


def run(args: argparse.Namespace) -> int:
    import statistics

    from ..editing.domain import PHOTO_ADVICE, domain_from_scores, measure
    from ..editing.session import Editor
    from ..registry import resolve_model
    from ..training.model_update import update_model

    out = model_output(args.output)
    if args.n < 8:
        raise InputError("--n must be at least 8")
    editor = Editor(args.model, use_lpips=False)
    if editor.encoder is None:
        raise InputError(f"{args.model} has no encoder: the check measures the encoder's answer "
                         "(`anycost train-encoder` adds one)")
    images, measured_on, align = own_faces(args.faces, editor, args.n, args.seed)
    if len(images) < 8:
        raise InputError(f"{args.faces} holds {len(images)} images; at least 8 are needed")
    scores = measure(editor, images, align=align)
    src = editor.info.get("source") or {}
    kind = args.kind or (f"the faces of {src['training_set']}" if src.get("training_set") else "its own kind of face")
    advice = args.advice or (PHOTO_ADVICE if "drawn" in kind else
                             "crop closer to the face, or use a model trained on faces like this one")
    dom = domain_from_scores(scores, kind=kind, advice=advice, measured_on=measured_on, margin=args.margin)
    update_model(resolve_model(args.model), out, info={"domain": dom.to_info()})
    print(f"{len(scores)} faces ({measured_on}): share reproduced by the encoder median "
          f"{statistics.median(scores):.3f}, 5th percentile {dom.fit_p05:.3f}, min {min(scores):.3f}; faces below "
          f"{dom.threshold:.3f} get the notice. Wrote {out}")
    return 0
