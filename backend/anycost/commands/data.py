"""``anycost data``: make the synthetic face set, preview and check image folders."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import warnings
from collections import Counter
from pathlib import Path

from ..errors import InputError


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="make, preview and check training data")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True

    s = sub.add_parser("synth-faces", help="write a synthetic, labelled face dataset")
    s.add_argument("--n", type=int, required=True, help="number of images")
    s.add_argument("--res", type=int, default=128, help="resolution in pixels (default 128)")
    s.add_argument("-o", "--out", required=True, help="output folder (must be empty or new)")
    s.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    s.add_argument("--workers", type=int, default=None, help="processes (default: all CPU cores)")
    s.add_argument("--overwrite", action="store_true", help="allow writing into a non-empty folder")
    s.add_argument("--quiet", action="store_true", help="no progress output")
    s.set_defaults(func=_synth_faces)

    v = sub.add_parser("preview", help="save a contact sheet of the first images of a folder")
    v.add_argument("folder")
    v.add_argument("-o", "--out", required=True, help="PNG file to write")
    v.add_argument("--count", type=int, default=32, help="number of images (default 32)")
    v.add_argument("--columns", type=int, default=8, help="images per row (default 8)")
    v.add_argument("--size", type=int, default=128, help="tile size in pixels (default 128)")
    v.set_defaults(func=_preview)

    c = sub.add_parser("check", help="count the images of a folder and report unreadable ones")
    c.add_argument("folder")
    c.set_defaults(func=_check)


def _synth_faces(args: argparse.Namespace) -> int:
    from ..data.synth_faces import generate_dataset

    path = generate_dataset(
        args.out,
        args.n,
        args.res,
        seed=args.seed,
        workers=args.workers,
        progress=not args.quiet,
        overwrite=args.overwrite,
    )
    print(f"wrote {args.n} images of {args.res}×{args.res} px and {path}")
    return 0


def _open_rgb(path: Path):
    from PIL import Image, ImageOps

    from ..data.folder import to_rgb

    with Image.open(path) as im:
        im.load()
        return to_rgb(ImageOps.exif_transpose(im) or im)


def _preview(args: argparse.Namespace) -> int:
    from PIL import Image

    from ..data.folder import fit_square, scan_images
    from ..data.synth_faces import contact_sheet

    if args.count < 1 or args.columns < 1 or not 8 <= args.size <= 1024:
        raise InputError("--count and --columns must be positive and --size between 8 and 1024")
    tiles = []
    for path in scan_images(args.folder):
        try:
            img = _open_rgb(path)
        except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as e:
            print(f"skipping {path}: {e}", file=sys.stderr)
            continue
        tiles.append(fit_square(img, "crop", (255, 255, 255)).resize((args.size, args.size), Image.LANCZOS))
        if len(tiles) == args.count:
            break
    if not tiles:
        raise InputError(f"{args.folder} holds no readable images")
    out = Path(args.out)
    tmp = out.with_name(out.name + ".tmp")
    contact_sheet(tiles, columns=args.columns).save(tmp, format="PNG")
    os.replace(tmp, out)
    print(f"wrote {out} ({len(tiles)} images)")
    return 0


def _check(args: argparse.Namespace) -> int:
    from PIL import Image

    from ..data.folder import scan_images
    from ..data.synth_faces import LABELS_FILE, load_labels

    files = scan_images(args.folder)
    sizes, modes, bad = [], Counter(), []
    for path in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    im.verify()
                with Image.open(path) as im:
                    sizes.append(im.size)
                    modes[im.mode] += 1
        except (OSError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning, SyntaxError) as e:
            bad.append((path, str(e) or type(e).__name__))
    print(f"{args.folder}: {len(files)} image files, {len(sizes)} readable, {len(bad)} unreadable")
    for path, why in bad:
        print(f"  unreadable: {path}: {why}")
    if sizes:
        ws, hs = [w for w, _ in sizes], [h for _, h in sizes]
        print(f"  width  min {min(ws)}  median {statistics.median(ws):g}  max {max(ws)}")
        print(f"  height min {min(hs)}  median {statistics.median(hs):g}  max {max(hs)}")
        square = sum(w == h for w, h in sizes)
        print(f"  square {square}/{len(sizes)}; modes: " + ", ".join(f"{m} {k}" for m, k in modes.most_common()))
    if (Path(args.folder) / LABELS_FILE).exists():
        names, attrs, labels = load_labels(args.folder)
        print(f"  {LABELS_FILE}: {len(names)} labelled images, attributes: {', '.join(attrs)}")
        missing = [n for n in names if not (Path(args.folder) / n).exists()]
        if missing:
            print(f"  {len(missing)} labelled files are missing, e.g. {missing[0]}")
    if not sizes:
        raise InputError(f"{args.folder} holds no readable images")
    return 1 if bad else 0
