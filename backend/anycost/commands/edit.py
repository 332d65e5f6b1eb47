"""``anycost edit`` and ``anycost project``: the editing engine from the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import AnycostError, InputError
from .common import add_device, add_threads, apply_threads, resolve_device


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="model name or file (default: the shipped demo model)")
    p.add_argument("--refine-steps", type=int, default=50,
                   help="projection refinement steps after the encoder's answer (0 = encoder only; default 50)")
    p.add_argument("--time-budget", type=float, default=None, help="stop refinement after this many seconds")
    p.add_argument("--no-align", action="store_true", help="skip face alignment (use a centred square crop)")
    p.add_argument("--no-lpips", action="store_true", help="pixel losses only during refinement")
    add_device(p)
    add_threads(p)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("edit", help="edit faces in images with sliders",
                       description="Align, project, edit and paste back: the face-editing job without a host "
                                   "program. Several inputs need -o to be a folder.")
    p.add_argument("inputs", nargs="+", help="input image(s)")
    p.add_argument("-o", "--output", required=True, help="output image, or a folder for several inputs")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="slider value in [-1, 1], e.g. --set smile=0.8 (repeatable)")
    p.add_argument("--cost", default="full", help="render cost: full, preview, RES, RATIO or RES:RATIO (default full)")
    p.add_argument("--mask", help="selection mask image (white = edit), same size as the input")
    p.add_argument("--directions", help="extra direction file (.safetensors/.npy, or an official boundary .pt)")
    p.add_argument("--save-latent", help="save the projected latent (.npy); a folder for several inputs")
    p.add_argument("--load-latent", help="use this latent (.npy) instead of projecting")
    p.add_argument("--no-color-match", action="store_true", help="do not match colours to the surroundings")
    p.add_argument("--blend", choices=["delta", "replace"], default="delta",
                   help="delta: add only the edit to the original pixels, keeping their detail (default); "
                        "replace: paste the generator's render")
    _common(p)
    p.set_defaults(func=run_edit)

    q = sub.add_parser("project", help="find the latent of a face image",
                       description="Align and project an image into the generator's W+ space.")
    q.add_argument("input", help="input image")
    q.add_argument("--out-latent", required=True, help="output latent file (.npy)")
    q.add_argument("--preview", help="also write the render of the latent (aligned crop) to this image")
    _common(q)
    q.set_defaults(func=run_project)


def parse_sliders(items: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise InputError(f"--set takes NAME=VALUE, got {item!r}")
        try:
            out[name.strip()] = float(value)
        except ValueError as e:
            raise InputError(f"--set {name}: {value!r} is not a number") from e
    return out


def _editor(args: argparse.Namespace, directions: str | None = None):
    from ..editing.session import Editor

    apply_threads(getattr(args, "threads", None))
    return Editor(args.model, device=resolve_device(args.device), use_lpips=not args.no_lpips,
                  directions=directions, blend=getattr(args, "blend", "delta"))


def _refine(session, args: argparse.Namespace, label: str) -> None:
    if args.refine_steps <= 0:
        return
    from tqdm import tqdm

    with tqdm(total=args.refine_steps, desc=f"project {label}", unit="step", leave=False,
              disable=not sys.stderr.isatty()) as bar:
        done = 0
        for step in session.iter_project(args.refine_steps, time_budget=args.time_budget):
            bar.update(step.step - done)
            done = step.step
            bar.set_postfix(psnr=f"{step.psnr:.1f}dB")


def run_edit(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..imageio import check_output_path, save_image_atomic

    sliders = parse_sliders(args.set)
    inputs = [Path(p) for p in args.inputs]
    out = Path(args.output)
    many = len(inputs) > 1
    if many:
        if out.suffix:
            raise InputError("with several inputs, -o must be a folder")
        if args.mask or args.load_latent:
            raise InputError("--mask and --load-latent apply to a single input")
    else:
        check_output_path(out)
    if args.refine_steps < 0:
        raise InputError("--refine-steps must be ≥ 0")
    editor = _editor(args, args.directions)
    if sliders:
        if not len(editor.directions):
            raise InputError(f"model {editor.name!r} has no edit directions; pass --directions FILE")
        unknown = [k for k in sliders if k not in editor.directions]
        if unknown:
            raise InputError(f"unknown slider {unknown[0]!r}; valid sliders: {', '.join(editor.directions)}")
    cost = editor.cost(args.cost)
    failures = 0
    for path in tqdm(inputs, desc="edit", unit="image", disable=not many or not sys.stderr.isatty()):
        target = out / (path.stem + ".png") if many else out
        try:
            session = editor.open(path, mask=args.mask, align=not args.no_align)
            if session.notice:
                print(f"{path}: {session.notice}", file=sys.stderr)
            if args.load_latent:
                session.load_latent(args.load_latent)
            else:
                _refine(session, args, path.name)
            if args.save_latent:
                lat = Path(args.save_latent)
                session.save_latent(lat / (path.stem + ".npy") if many else lat)
            session.set_sliders(sliders)
            rgba = session.result(cost, color_match=not args.no_color_match)
            if target.suffix.lower() in (".jpg", ".jpeg", ".bmp"):
                rgba = rgba[..., :3]
            save_image_atomic(rgba, target)
            print(target)
        except AnycostError as e:
            if not many:
                raise
            failures += 1
            print(f"anycost: error: {path}: {e}", file=sys.stderr)
    if failures:
        print(f"anycost: {failures} of {len(inputs)} inputs failed", file=sys.stderr)
        return 2
    return 0


def run_project(args: argparse.Namespace) -> int:
    from ..imageio import save_image_atomic, tensor_to_uint8

    lat = Path(args.out_latent)
    if lat.suffix != ".npy":
        raise InputError("--out-latent must end in .npy")
    if args.refine_steps < 0:
        raise InputError("--refine-steps must be ≥ 0")
    editor = _editor(args)
    session = editor.open(args.input, align=not args.no_align)
    if session.notice:
        print(f"{args.input}: {session.notice}", file=sys.stderr)
    _refine(session, args, Path(args.input).name)
    session.save_latent(lat)
    print(lat)
    if args.preview:
        save_image_atomic(tensor_to_uint8(session.render("full"))[0], args.preview)
        print(args.preview)
    return 0
