"""``anycost train-classifier``: train the attribute classifier used to fit edit directions."""

from __future__ import annotations

import argparse
import json

from ..errors import InputError
from .common import model_output, resolve_device
from .config_flags import add_config_flags, config_from_flags

# Settings without a flag: the weight decay is fixed by the recipe.
NOT_FLAGS = ("weight_decay",)


def register(sub: argparse._SubParsersAction) -> None:
    from ..training.classifier_training_config import ClassifierTrainConfig

    p = sub.add_parser("train-classifier", help="train the multi-label attribute classifier",
                       description="Train a small CNN that scores every attribute in [0, 1], on an image "
                                   "folder with a label table or on freshly rendered synthetic faces, and "
                                   "report per-attribute accuracy and error on held-out images.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="image folder with a label table (labels.json / labels.csv)")
    src.add_argument("--synthetic", type=int, metavar="N", help="render N labelled synthetic faces")
    p.add_argument("--labels", default=None, help="label table (default: found in --data)")
    p.add_argument("--res", type=int, default=64, help="render size for --synthetic (default 64)")
    p.add_argument("--input-size", type=int, default=64, help="classifier input size (default 64)")
    p.add_argument("--width", type=int, default=32, help="stem width (default 32)")
    p.add_argument("--val-fraction", type=float, default=0.15, help="held-out share (default 0.15)")
    add_config_flags(p, ClassifierTrainConfig, skip=NOT_FLAGS)
    p.add_argument("--into", default=None, help="model file whose parts the output also keeps")
    p.add_argument("-o", "--output", required=True, help="model file to write (.safetensors)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..training.classifier import (
        ClassifierTrainConfig,
        evaluate_classifier,
        load_labelled_folder,
        save_classifier,
        synthetic_data,
        train_classifier,
    )

    out = model_output(args.output)
    if not 0 < args.val_fraction < 1:
        raise InputError("--val-fraction must be between 0 and 1")
    cfg = config_from_flags(ClassifierTrainConfig, args)
    if cfg.steps < 1 or cfg.batch < 1:
        raise InputError("--steps and --batch must be at least 1")
    cfg.device = str(resolve_device(cfg.device))
    if args.synthetic is not None:
        if args.synthetic < 4:
            raise InputError("--synthetic needs at least 4 images")
        data = synthetic_data(args.synthetic, args.res, seed=cfg.seed)
    else:
        data = load_labelled_folder(args.data, args.labels, size=args.input_size)
    train, val = data.split(args.val_fraction, seed=cfg.seed)
    progress = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, desc="classifier", unit="step", dynamic_ncols=True)

        def progress(step: int, loss: float) -> None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")

    try:
        clf = train_classifier(train, cfg, input_size=args.input_size, width=args.width, progress=progress)
    finally:
        if not args.quiet:
            bar.close()
    metrics = evaluate_classifier(clf, val)
    summary = {"held_out": val.images.shape[0], "train": train.images.shape[0],
               "per_attribute": {k: {m: round(v, 4) for m, v in d.items()} for k, d in metrics.items()}}
    save_classifier(out, clf.cpu(), metrics=summary, into=args.into)
    for name, d in metrics.items():
        print(f"{name:16s} MAE {d['mae']:.3f}  accuracy {d['accuracy']:.3f}  (positives {d['positive_rate']:.2f})")
    print(json.dumps({"output": str(out), **summary}))
    return 0
