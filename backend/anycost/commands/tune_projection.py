"""``anycost tune-projection``: measure how firmly refinement should hold to the encoder's answer, and store it."""

from __future__ import annotations

import argparse

from ..errors import InputError
from .common import model_output

DEFAULT_VALUES = "0.001,0.003,0.005,0.01"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune-projection", help="choose how firmly projection holds to the encoder's answer, by measuring edits",
        description="Refinement pulls a projected face's latent towards the encoder's answer. A weak pull "
                    "reproduces the face more closely; a firm one keeps the latent where the sliders work. "
                    "This projects faces of the model's own kind once per candidate pull, scores every "
                    "attribute slider with the model's classifier, and stores the pull with the most "
                    "successful edits whose PSNR stays within --max-psnr-loss of the weakest pull's "
                    "(info.projection); every editor of the model then uses it. See docs/editing.md.")
    p.add_argument("--model", required=True, help="model name or file (it needs an encoder, a classifier and "
                                                  "attribute directions)")
    p.add_argument("-o", "--output", required=True, help="model file to write (.safetensors; may be --model)")
    p.add_argument("--faces", default="synth",
                   help="faces of the model's own kind: 'synth' (held-out synthetic faces, default), "
                        "'samples' (the generator's own samples) or a folder of images")
    p.add_argument("--n", type=int, default=32, help="faces measured (default 32)")
    p.add_argument("--steps", type=int, default=100, help="refinement steps per projection (default 100, as "
                                                          "`anycost edit --refine-steps`)")
    p.add_argument("--values", default=DEFAULT_VALUES,
                   help=f"candidate pulls (encoder_reg), comma-separated (default {DEFAULT_VALUES})")
    p.add_argument("--max-psnr-loss", type=float, default=1.0,
                   help="dB of mean PSNR a firmer pull may cost against the weakest candidate (default 1)")
    p.add_argument("--min-psnr", type=float, default=None, help="also never go below this mean PSNR (dB)")
    p.add_argument("--set", dest="set_value", type=float, default=None, metavar="VALUE",
                   help="store this pull without measuring")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def _values(text: str) -> list[float]:
    try:
        values = sorted({float(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise InputError(f"--values must be numbers separated by commas, got {text!r}") from None
    if not values:
        raise InputError("--values is empty")
    return values


def run(args: argparse.Namespace) -> int:
    from ..editing.projection_tuning import choose, projection_overrides, sweep
    from ..io.checkpoint import open_model
    from ..registry import resolve_model
    from ..training.model_update import update_model

    out = model_output(args.output)
    source = resolve_model(args.model)
    if args.set_value is not None:
        record = {"encoder_reg": args.set_value}
        projection_overrides({"projection": record})  # refuses what an editor would refuse to load
        update_model(source, out, info={"projection": record})
        print(f"encoder_reg {args.set_value:g} stored (not measured). Wrote {out}")
        return 0
    if args.n < 2 or args.steps < 1 or args.max_psnr_loss < 0:
        raise InputError("--n must be at least 2, --steps at least 1 and --max-psnr-loss at least 0")
    values = _values(args.values)
    comps = open_model(source).components  # any supported file: a network pickle has no classifier
    if "classifier" not in comps:
        raise InputError(f"{args.model} holds no attribute classifier: the sweep judges edits with it "
                         "(`anycost fit-directions --from-labels --classifier FILE` stores one)")
    from ..editing.session import Editor
    from ..training.classifier import classifier_from_component
    from .fit_domain import own_faces

    editor = Editor(args.model, use_lpips=False)
    clf = classifier_from_component(comps["classifier"], str(source))
    images, measured_on, align = own_faces(args.faces, editor, args.n, args.seed)
    if len(images) < 2:
        raise InputError(f"{args.faces} holds {len(images)} images; at least 2 are needed")
    print(f"{len(images)} faces ({measured_on}), {args.steps} refinement steps, pixel losses only")
    points = sweep(editor, clf, images, values, steps=args.steps, align=align, progress=print)
    best = choose(points, max_psnr_loss=args.max_psnr_loss, min_psnr=args.min_psnr)
    record = {"encoder_reg": best.encoder_reg,
              "tuned": {"faces": len(images), "measured_on": measured_on, "steps": args.steps,
                        "max_psnr_loss": args.max_psnr_loss, "min_psnr": args.min_psnr,
                        "points": [p.as_dict() for p in points]}}
    update_model(source, out, info={"projection": record})
    print(f"chose encoder_reg {best.encoder_reg:g}: PSNR {best.psnr:.2f} dB, edit successes summed "
          f"{100 * best.total:.0f} %. Wrote {out}")
    return 0
