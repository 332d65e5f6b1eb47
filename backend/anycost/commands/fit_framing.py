"""``anycost fit-framing``: record where a model's own images put the face, so users' faces are cropped alike."""

from __future__ import annotations

import argparse

from ..errors import InputError
from .common import model_output


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fit-framing", help="measure where the model's own images put the face, for alignment",
        description="Find the face landmarks in images of the model's own kind, measure how their framing "
                    "differs from the FFHQ crop (scale and shift, medians), and store it in the model file "
                    "(info.framing). Editing then crops a user's face the way the model saw faces in "
                    "training. FFHQ-trained models need none. See docs/editing.md.")
    p.add_argument("--model", required=True, help="model name or file")
    p.add_argument("-o", "--output", required=True, help="model file to write (.safetensors; may be --model)")
    p.add_argument("--faces", default="samples",
                   help="images framed as the model expects: 'samples' (the generator's own samples, default), "
                        "'synth' (held-out synthetic faces, the demo's data) or a folder of training images")
    p.add_argument("--n", type=int, default=64, help="images measured (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..editing.align import Framing, LandmarksUnavailable, detect_landmarks, dlib_available
    from ..editing.region import Region
    from ..editing.session import Editor
    from ..registry import resolve_model
    from ..training.model_update import update_model
    from .fit_domain import own_faces

    out = model_output(args.output)
    if args.n < 8:
        raise InputError("--n must be at least 8")
    if not dlib_available():
        raise InputError("measuring the framing needs the face landmark finder: pip install 'anycost-face-edit[align]'")
    editor = Editor(args.model, use_lpips=False)
    images, measured_on, _ = own_faces(args.faces, editor, args.n, args.seed)
    framings = []
    for img in images:
        try:
            pts = detect_landmarks(Region.from_array(np.ascontiguousarray(img)))
        except (LandmarksUnavailable, InputError):  # no findable face (or degenerate landmarks): skipped, not fatal
            continue
        framings.append(Framing.of_image(pts, img.shape[1], img.shape[0]))
    if len(framings) < 8:
        raise InputError(f"a face was found in {len(framings)} of {len(images)} images ({measured_on}); "
                         "at least 8 are needed")
    f = Framing.median(framings)
    spread = float(np.median([abs(g.scale - f.scale) for g in framings]))
    update_model(resolve_model(args.model), out,
                 info={"framing": {**f.to_info(), "faces": len(framings), "measured_on": measured_on}})
    print(f"faces found in {len(framings)} of {len(images)} images ({measured_on}): the model's crop is "
          f"{f.scale:.3f}× the FFHQ square (median deviation {spread:.3f}), its centre moved by "
          f"{f.shift[0]:+.3f}, {f.shift[1]:+.3f} half-sides. Wrote {out}")
    return 0
