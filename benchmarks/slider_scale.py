"""How edit success of each named slider changes with its strength, on faces the quality report never uses.

    python benchmarks/slider_scale.py [--model anycost-demo] [--samples 128] [--editor-faces 48]
        [--faces synth|FOLDER] [--first-face 2000030000] [--scales 0.8,1,1.2,1.4] [--attributes eyeglasses,...]
        [--refine-steps 100]

A slider's strength (`anycost directions set --scale`) is the W distance it moves at value 1. This
prints, per slider and per multiple of its present strength, the share of faces whose edit at ±1
succeeds by `model_quality.py`'s criterion (the intended classifier score moves ≥ 0.3 towards the
side with room while every other moves < 0.1), scored as its editor section scores (renders at the
classifier's input size), on two sets of its own:

  * random samples of the model (seed 777; the quality report's samples use seed 20000);
  * held-out synthetic faces taken the way the editor takes a user's (alignment with the model's
    framing, encoder, refinement with the model's projection settings), from dataset index
    2·10⁹ + 30,000 (the quality report's faces start at 2·10⁹ and 2·10⁹ + 10,000; ``--first-face``
    draws another set, e.g. 2·10⁹ + 40,000 for a fresh one); or, with
    ``--faces FOLDER``, the first images of a folder (for a model of other faces: photographs kept
    apart from everything the model and its directions were fitted on).

So a strength can be chosen here and the result checked by `model_quality.py` on other faces.
"""

from __future__ import annotations

import argparse
import time

import torch

from anycost.data.synth_faces import render_index
from anycost.directions.boundaries import render_resolution, score_latents
from anycost.directions.refine import attribute_directions, measure_effect
from anycost.editing.projection_tuning import refined_latents
from anycost.editing.session import Editor
from anycost.io.modelfile import read_model
from anycost.registry import DEFAULT_MODEL, resolve_model

FACES_START = 2 * 10 ** 9 + 30_000
SAMPLE_SEED = 777


def success_by_scale(G, clf, offset: torch.Tensor, attribute: int, w: torch.Tensor, base: torch.Tensor,
                     scales: list[float], res: int, region: torch.Tensor | None = None) -> list[float]:
    """Share of ``w`` whose edit at ±1 with ``scale × offset`` succeeds, per scale (inside ``region`` if any)."""
    return [measure_effect(G, clf, k * offset, attribute, w, base, res, region).success for k in scales]


def editor_faces(spec: str, n: int, first: int = FACES_START) -> list:
    """``n`` face images (uint8 arrays or paths) for the editor: held-out drawings from dataset index ``first``
    on, or a folder's first files."""
    if spec == "synth":
        return [render_index(0, first + i, 256)[0] for i in range(n)]
    from anycost.training.image_folder import list_images

    return list_images(spec)[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--editor-faces", type=int, default=48, help="faces taken through the editor (0: samples only)")
    ap.add_argument("--faces", default="synth", help="'synth' (held-out drawings) or a folder of face images")
    ap.add_argument("--first-face", type=int, default=None,
                    help="dataset index of the first held-out drawing (default 2·10⁹ + 30,000); keep clear of the "
                         "quality report's faces (2·10⁹ to 2·10⁹ + 10,000 + its --editor-faces) and of anything "
                         "below 2·10⁹, which training and tuning draw from")
    ap.add_argument("--scales", default="0.8,1,1.2,1.4")
    ap.add_argument("--attributes", help="comma-separated sliders (default: every one naming a classifier score)")
    ap.add_argument("--refine-steps", type=int, default=100)
    args = ap.parse_args()
    scales = [float(s) for s in args.scales.split(",")]
    if args.first_face is not None and args.faces != "synth":
        raise SystemExit("--first-face picks held-out drawings; a folder's faces are its first files")
    first = FACES_START if args.first_face is None else args.first_face
    path = resolve_model(args.model)
    from anycost.training.classifier import classifier_from_component

    mf = read_model(path)
    if "classifier" not in mf.components:
        raise SystemExit(f"{path} carries no classifier to judge the sliders with")
    clf = classifier_from_component(mf.components["classifier"], str(path))
    editor = Editor(path, use_lpips=False)
    G = editor.generator
    res = render_resolution(G, clf.config.input_size)
    todo = attribute_directions(editor.directions, clf)
    if args.attributes:
        wanted = args.attributes.split(",")
        unknown = sorted(set(wanted) - {n for n, _ in todo})
        if unknown:
            raise SystemExit(f"no slider naming a classifier score is called {', '.join(unknown)} "
                             f"(there are: {', '.join(n for n, _ in todo)})")
        todo = [(n, a) for n, a in todo if n in wanted]
    sets = {f"samples ({args.samples})": G.styles_from_seed(SAMPLE_SEED, n=args.samples, truncation=0.8)}
    if args.editor_faces > 0:
        t0 = time.perf_counter()
        sessions = [editor.open(face) for face in editor_faces(args.faces, args.editor_faces, first)]
        found = sum(bool(s.alignment.face_found) for s in sessions)
        w, _ = refined_latents(sessions, steps=args.refine_steps, encoder_reg=editor.projection.encoder_reg)
        print(f"{len(sessions)} faces through the editor (a face found in {found}, the others centre-cropped; "
              f"{args.refine_steps} refinement steps at encoder_reg {editor.projection.encoder_reg:g}) "
              f"in {time.perf_counter() - t0:.0f} s")
        sets[f"editor ({len(sessions)})"] = w
    print(f"success (%) at ±1 per multiple of each slider's present strength: {', '.join(map(str, scales))}")
    with torch.inference_mode():
        bases = {k: score_latents(G, clf, w, res=res) for k, w in sets.items()}
        for name, a in todo:
            d = editor.directions[name]
            offset = d.offset(G.n_style, G.style_dim)
            rows = {k: success_by_scale(G, clf, offset, a, w, bases[k], scales, res, d.region)
                    for k, w in sets.items()}
            mean = [sum(r[j] for r in rows.values()) / len(rows) for j in range(len(scales))]
            cells = "  ".join(f"{k}: " + " ".join(f"{100 * v:5.1f}" for v in r) for k, r in rows.items())
            print(f"{name:>14}  {cells}  | mean best at ×{scales[max(range(len(scales)), key=mean.__getitem__)]:g}")


if __name__ == "__main__":
    main()
