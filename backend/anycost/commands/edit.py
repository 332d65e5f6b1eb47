"""``anycost edit`` and ``anycost project``: the editing engine from the command line.

Every check that can fail on the arguments alone (output paths, that no output is an input file and
every output folder takes new files, slider names and ranges, a latent file's shape) runs before any
image is touched; each input's files (image and latent) are written
under temporary names and renamed together at the end, so a failure leaves none of them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..editing.region import DEFAULT_MAX_PIXELS, MIN_SIDE
from ..errors import AnycostError, InputError
from ..fsutil import partial_file
from .common import add_device, add_threads, apply_threads, resolve_device


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="model name or file (default: the shipped demo model)")
    p.add_argument("--refine-steps", type=int, default=50,
                   help="projection refinement steps after the encoder's answer (0 = encoder only; default 50)")
    p.add_argument("--time-budget", type=float, default=None, help="stop refinement after this many seconds")
    p.add_argument("--no-align", action="store_true", help="skip face alignment (use a centred square crop)")
    p.add_argument("--no-lpips", action="store_true", help="pixel losses only during refinement")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help=f"refuse images larger than this many pixels (default {DEFAULT_MAX_PIXELS}, "
                        f"8192 × 8192)")
    p.add_argument("--overwrite", action="store_true",
                   help="let an output replace one of the input files (e.g. -o IN.png); refused otherwise")
    add_device(p)
    add_threads(p)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("edit", help="edit faces in images with sliders",
                       description="Align, project, edit and paste back: the face-editing job without a host "
                                   "program. Several inputs need -o to be a folder; each is written there as "
                                   "NAME.png, and inputs with the same file name are refused.")
    p.add_argument("inputs", nargs="+", help="input image(s)")
    p.add_argument("-o", "--output", required=True, help="output image, or a folder for several inputs")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="slider value in [-1, 1], e.g. --set smile=0.8 (repeatable)")
    p.add_argument("--cost", default="full", help="render cost: full, preview, RES, RATIO or RES:RATIO (default full)")
    p.add_argument("--mask", help="selection mask image (white = edit), same size as the input")
    p.add_argument("--directions", help="extra direction file (.safetensors/.npy, or an official boundary .pt)")
    p.add_argument("--direction-layers", metavar="SLOTS",
                   help="style slots the --directions act on, e.g. 0-7 or 0-3,6 (default: each direction's own; "
                        "all slots for official boundaries)")
    p.add_argument("--save-latent", help="save the projected latent (.npy); a folder for several inputs")
    p.add_argument("--load-latent", help="use this latent (.npy) instead of projecting")
    p.add_argument("--no-color-match", action="store_true",
                   help="only for --blend replace: do not match the render's colours to the surroundings "
                        "(the default delta blend keeps the canvas's own colours and never colour-matches)")
    p.add_argument("--blend", choices=["delta", "replace"], default="delta",
                   help="delta: add only the edit to the original pixels, keeping their detail (default); "
                        "replace: paste the generator's render")
    _common(p)
    p.set_defaults(func=run_edit)

    q = sub.add_parser("project", help="find the latent of a face image",
                       description="Align and project images into the generator's W+ space. Several inputs "
                                   "need --out-latent (and --preview) to be folders; inputs with the same file "
                                   "name are refused.")
    q.add_argument("inputs", nargs="+", help="input image(s)")
    q.add_argument("--out-latent", required=True, help="output latent file (.npy), or a folder for several inputs")
    q.add_argument("--preview", help="also write the render of the latent (aligned crop) to this image "
                                     "(a folder for several inputs)")
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


def parse_slots(text: str | None, flag: str = "--direction-layers") -> list[int] | None:
    """``0-7`` or ``0-3,6`` → style slot indices."""
    if not text:
        return None
    out: list[int] = []
    try:
        for part in text.split(","):
            a, dash, b = part.partition("-")
            out += list(range(int(a), int(b) + 1)) if dash else [int(a)]
    except ValueError:
        raise InputError(f"{flag} must look like 0-7 or 0-3,6 (style slot indices), got {text!r}") from None
    if not out:
        raise InputError(f"{flag} names no style slots: {text!r}")
    return out


# ---------------------------------------------------------------- output planning


@dataclass
class _Job:
    source: Path
    image: Path | None = None
    latent: Path | None = None


def _plan(inputs: list[str], image_out: str | None, latent_out: str | None, *, image_flag: str,
          latent_flag: str, reads: tuple[str | None, ...] = (), overwrite: bool = False) -> list[_Job]:
    """Each input's output paths, every one checked before any work: a single input takes file names,
    several take folders (NAME.png / NAME.npy inside) and must not share a file name; no output may be
    one of the files read (the inputs and ``reads``) unless ``overwrite``; every output folder must
    take new files."""
    try:
        jobs = _plan_paths(inputs, image_out, latent_out, image_flag, latent_flag)
        if not overwrite:
            _refuse_overwriting_inputs(jobs, [Path(r) for r in reads if r])
        _check_writable(jobs)
        return jobs
    except OSError as e:  # e.g. a name longer than the file system allows
        raise InputError(f"cannot use the output path {e.filename}: {e.strerror or e}") from e


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _refuse_overwriting_inputs(jobs: list[_Job], reads: list[Path]) -> None:
    # samefile, not name equality: `-o .` next to the inputs, symlinks and hard links all count
    sources = [j.source for j in jobs] + reads
    for job in jobs:
        for out in (job.image, job.latent):
            src = None if out is None else next((s for s in sources if _same_file(out, s)), None)
            if src is not None:
                what = f"the input {src}" if str(src) == str(out) else f"{out}, which is the input {src}"
                raise InputError(f"refusing to overwrite {what}; choose another output "
                                 f"(or pass --overwrite to replace it)")


def _check_writable(jobs: list[_Job]) -> None:
    """Create and remove a file in each output folder (or its first existing parent): permissions,
    read-only and pseudo file systems all show up here, before any image is read. Mode bits alone
    would not do (root passes every os.access check)."""
    probed: set[Path] = set()
    for job in jobs:
        for out in (job.image, job.latent):
            if out is None:
                continue
            folder = next((q for q in (out.parent, *out.parent.parents) if q.exists()), None)
            if folder is None or folder in probed or not folder.is_dir():
                continue
            probed.add(folder)
            try:
                fd, tmp = tempfile.mkstemp(prefix=".anycost-probe-", dir=folder)
            except OSError as e:
                raise InputError(f"cannot write {out}: cannot create files in {folder} ({e.strerror or e})") from e
            os.close(fd)
            os.unlink(tmp)


def _plan_paths(inputs: list[str], image_out: str | None, latent_out: str | None, image_flag: str,
                latent_flag: str) -> list[_Job]:
    from ..imageio import check_output_path

    sources = [Path(p) for p in inputs]
    for out in (image_out, latent_out):
        parent = None if out is None else next((q for q in Path(out).parents if q.exists()), None)
        if parent is not None and not parent.is_dir():
            raise InputError(f"cannot write {out}: {parent} is a file, not a folder")
    if len(sources) == 1:
        job = _Job(sources[0])
        if image_out is not None:
            job.image = check_output_path(image_out)
            if job.image.is_dir():
                raise InputError(f"{image_flag} {job.image} is a folder; give an image file name")
        if latent_out is not None:
            job.latent = Path(latent_out)
            if job.latent.suffix != ".npy":
                raise InputError(f"{latent_flag} must end in .npy, got {job.latent}")
            if job.latent.is_dir():
                raise InputError(f"{latent_flag} {job.latent} is a folder; give a .npy file name")
        return [job]
    seen: dict[str, Path] = {}
    for p in sources:
        # casefolded: on Windows and macOS Face.png and face.png are one file
        other = seen.setdefault(p.stem.casefold(), p)
        if other is not p:
            raise InputError(f"{other} and {p} would both be written as {p.stem}: outputs are named after the "
                             f"input file, so inputs with the same name go in separate calls (or rename one)")
    image_dir = None if image_out is None else _folder(image_out, image_flag)
    latent_dir = None if latent_out is None else _folder(latent_out, latent_flag)
    return [_Job(p, None if image_dir is None else image_dir / f"{p.stem}.png",
                 None if latent_dir is None else latent_dir / f"{p.stem}.npy") for p in sources]


def _folder(path: str, flag: str) -> Path:
    p = Path(path)
    if p.is_dir():
        return p
    if p.exists():
        raise InputError(f"with several inputs, {flag} must be a folder; {p} is a file")
    if p.suffix:
        raise InputError(f"with several inputs, {flag} must be a folder, not a file name like {p.name!r}")
    return p


def _write_together(writes: list[tuple[Path, Callable[[str], object]]]) -> None:
    """Write each file under a temporary name beside it, then rename them all into place: a failure
    while writing leaves none of them (and whatever was there before untouched)."""
    temps: list[tuple[str, Path]] = []
    made: list[Path] = []  # folders made here: removed again on failure
    path = None
    done = False
    try:
        for path, _ in writes:  # what can be seen now is refused before anything is written
            if path.is_dir():
                raise InputError(f"cannot write {path}: a folder has that name")
            if path.parent.exists() and not path.parent.is_dir():
                raise InputError(f"cannot write {path}: {path.parent} is a file, not a folder")
        for path, write in writes:
            missing = [q for q in (path.parent, *path.parent.parents) if not q.exists()]
            path.parent.mkdir(parents=True, exist_ok=True)
            made += missing
            tmp = partial_file(path)  # named for what it is; a killed run's leftovers go on the next run
            temps.append((tmp, path))
            write(tmp)
            os.chmod(tmp, 0o666 & ~_umask())
        for tmp, path in temps:
            os.replace(tmp, path)
        done = True
    except OSError as e:  # name the file the user asked for, not the temporary one
        raise InputError(f"cannot write {path}: {e.strerror or e}") from e
    finally:
        for tmp, _ in temps:
            Path(tmp).unlink(missing_ok=True)
        if not done:
            for folder in made:  # innermost first; one that is not empty stays
                try:
                    folder.rmdir()
                except OSError:
                    pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _latent_writer(arr: np.ndarray) -> Callable[[str], None]:
    return lambda tmp: np.save(tmp, arr)


# ---------------------------------------------------------------- running


def _editor(args: argparse.Namespace, directions: str | None = None, layers: list[int] | None = None):
    from ..editing.session import Editor

    apply_threads(getattr(args, "threads", None))
    editor = Editor(args.model, device=resolve_device(args.device), use_lpips=not args.no_lpips,
                    directions=directions, blend=getattr(args, "blend", "delta"), max_pixels=args.max_pixels,
                    direction_layers=layers)
    for text in editor.notices:
        _note(text)
    return editor


def _check_common(args: argparse.Namespace) -> None:
    if args.refine_steps < 0:
        raise InputError("--refine-steps must be ≥ 0")
    if args.time_budget is not None and not args.time_budget > 0:
        raise InputError("--time-budget must be a positive number of seconds")
    if args.max_pixels < MIN_SIDE * MIN_SIDE:
        raise InputError(f"--max-pixels must be at least {MIN_SIDE * MIN_SIDE} (a {MIN_SIDE} × {MIN_SIDE} image)")


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


def _failure(e: BaseException) -> str:
    """A one-line reason for an input that failed: the project's own message, or the system's."""
    if isinstance(e, AnycostError):
        return str(e)
    if isinstance(e, OSError):
        where = f": {e.filename}" if e.filename else ""
        return f"{e.strerror or e}{where}"
    return f"{type(e).__name__}: {e}"


def _run_jobs(jobs: list[_Job], desc: str, work: Callable[[_Job], None]) -> int:
    """Run ``work`` on each input; a failure is reported and the others go on. With several inputs a
    progress bar goes to stderr (also when it is not a terminal, so logs show how far a batch got)."""
    from tqdm import tqdm

    many = len(jobs) > 1
    failed: list[Path] = []
    for job in tqdm(jobs, desc=desc, unit="image", file=sys.stderr, disable=not many, dynamic_ncols=True):
        try:
            work(job)
        except (AnycostError, OSError, ValueError, RuntimeError, MemoryError) as e:
            failed.append(job.source)
            prefix = f"{job.source}: " if many else ""
            tqdm.write(f"anycost: error: {prefix}{_failure(e)}", file=sys.stderr)
    if failed:
        if many:
            names = ", ".join(map(str, failed))
            print(f"anycost: {len(failed)} of {len(jobs)} inputs failed: {names}", file=sys.stderr)
        return 2
    return 0


def _note(text: str) -> None:
    print(f"anycost: note: {text}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _lpips_fallback_noted(args: argparse.Namespace) -> Iterator[None]:
    """When refinement would use LPIPS but no backbone file is cached, say so in one line up front
    (naming every accepted file) instead of the library's warning with its source line."""
    from ..measures.perceptual import BACKBONE_FILES, backbone_path

    wanted = not args.no_lpips and args.refine_steps > 0 and not getattr(args, "load_latent", None)
    if not wanted or any(backbone_path(net).is_file() for net in BACKBONE_FILES):
        yield
        return
    files = " or ".join(BACKBONE_FILES[net] for net in ("vgg", "alex"))
    _note(f"refinement uses pixel losses only: LPIPS needs {files} in {backbone_path('alex').parent} "
          f"(torchvision's ImageNet weights); pass --no-lpips to silence this")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LPIPS backbone weights not found", category=RuntimeWarning)
        yield


def _notice(session, job: _Job) -> None:
    from tqdm import tqdm

    for text in session.notices:
        tqdm.write(f"{job.source}: {text}", file=sys.stderr)


def run_edit(args: argparse.Namespace) -> int:
    from ..imageio import LOSSY_SUFFIXES, image_writer

    sliders = parse_sliders(args.set)
    if len(args.inputs) > 1 and (args.mask or args.load_latent):
        raise InputError("--mask and --load-latent apply to a single input")
    if args.direction_layers and not args.directions:
        raise InputError("--direction-layers applies to the directions of --directions FILE")
    jobs = _plan(args.inputs, args.output, args.save_latent, image_flag="-o", latent_flag="--save-latent",
                 reads=(args.mask, args.load_latent, args.directions), overwrite=args.overwrite)
    _check_common(args)
    layers = parse_slots(args.direction_layers)
    editor = _editor(args, args.directions, layers)
    if sliders and not len(editor.directions):
        raise InputError(f"model {editor.name!r} has no edit directions; pass --directions FILE")
    sliders = editor.check_sliders(sliders)
    cost = editor.cost(args.cost)
    w_loaded = editor.read_latent(args.load_latent) if args.load_latent else None

    def work(job: _Job) -> None:
        session = editor.open(job.source, mask=args.mask, align=not args.no_align)
        _notice(session, job)
        if w_loaded is not None:
            session.set_latent(w_loaded)
        else:
            _refine(session, args, job.source.name)
        session.set_sliders(sliders)
        rgba = session.result(cost, color_match=not args.no_color_match)
        if job.image.suffix.lower() in (".jpg", ".jpeg", ".bmp"):
            rgba = rgba[..., :3]
        writes = [(job.image, image_writer(rgba, job.image, icc_profile=session.region.icc_profile))]
        if job.latent is not None:
            writes.append((job.latent, _latent_writer(session.w_base.detach().cpu().numpy()[0])))
        _write_together(writes)
        print(job.image, flush=True)

    if any(job.image.suffix.lower() in LOSSY_SUFFIXES for job in jobs):
        _note("JPEG is lossy: the pixels outside the edit will not stay bit-identical "
              "(write .png, .webp or .tif to keep them)")
    with _lpips_fallback_noted(args):
        return _run_jobs(jobs, "edit", work)


def run_project(args: argparse.Namespace) -> int:
    from ..imageio import image_writer, tensor_to_uint8

    jobs = _plan(args.inputs, args.preview, args.out_latent, image_flag="--preview", latent_flag="--out-latent",
                 overwrite=args.overwrite)
    _check_common(args)
    editor = _editor(args)

    def work(job: _Job) -> None:
        session = editor.open(job.source, align=not args.no_align)
        _notice(session, job)
        _refine(session, args, job.source.name)
        writes = [(job.latent, _latent_writer(session.w_base.detach().cpu().numpy()[0]))]
        if job.image is not None:
            crop = tensor_to_uint8(session.render("full"))[0]
            writes.append((job.image, image_writer(crop, job.image, icc_profile=session.region.icc_profile)))
        _write_together(writes)
        print(job.latent, flush=True)
        if job.image is not None:
            print(job.image, flush=True)

    with _lpips_fallback_noted(args):
        return _run_jobs(jobs, "project", work)
