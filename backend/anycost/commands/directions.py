"""``anycost directions``: list the edit directions of a model (or of a direction file); ``directions
sheet`` draws what each one does, ``directions set`` renames, re-ranges, rescales, hides or shows one,
``directions region`` fits (or clears) the regions that keep edits where their attributes live."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import InputError
from .common import add_device, resolve_device

MODEL_TO_CHANGE = "the model file to change (a project .safetensors model; see 'anycost convert')"
NO_DIRECTIONS = ("no edit directions (it can still generate and project; `anycost fit-directions` adds "
                 "sliders, `anycost edit --directions FILE` brings them from a file)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("directions", help="list, show (sheet) and edit (set) a model's edit directions",
                       description="List the edit directions stored in a model file (or a boundary / "
                                   "direction file) with slider range, scale, style slots, source and a mark on "
                                   "hidden ones. A model without directions lists none (exit code 0). "
                                   "'directions sheet' draws what each direction does; 'directions set' renames, "
                                   "re-ranges, rescales, hides or shows one in a model file.")
    p.add_argument("--model", default=None,
                   help="model name, model file, or direction/boundary file (default: the shipped demo model)")
    p.add_argument("--for-model", default=None, metavar="MODEL",
                   help="check that the listed directions fit this model's latent (style slots and size)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)
    actions = p.add_subparsers(dest="action", metavar="ACTION", title="actions (default: list)")

    # --model on an action leaves one given before the action alone (SUPPRESS sets no default)
    s = actions.add_parser("sheet", help="a labelled contact sheet of faces along each direction",
                           description="Render, for every direction (or the --names given), one row of faces per "
                                       "seed with the slider stepping from the low to the high end of its range, "
                                       "and write them as one labelled image: a way to see what unnamed (SeFa, "
                                       "PCA) directions do.")
    s.add_argument("--model", default=argparse.SUPPRESS,
                   help="model name or file (default: the shipped demo model)")
    s.add_argument("--directions", default=None, metavar="FILE",
                   help="also show the directions of this file (.safetensors/.npy or an official boundary .pt)")
    s.add_argument("--names", default=None, help="comma-separated directions to show (default: all, hidden ones too)")
    s.add_argument("--seeds", type=int, default=3, help="faces per direction, one row each (default 3)")
    s.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    s.add_argument("--steps", type=int, default=5, help="slider positions per row, both ends included (default 5)")
    s.add_argument("--cost", default="full",
                   help="render cost: full, preview, RES, RATIO or RES:RATIO (default full; e.g. 256 for a "
                        "1024-px model)")
    s.add_argument("--truncation", type=float, default=0.7,
                   help="psi towards the model's truncation centre for the faces (default 0.7)")
    s.add_argument("-o", "--output", required=True, help="image to write (.png, .jpg, .webp, …)")
    add_device(s)
    s.set_defaults(func=run_sheet)

    e = actions.add_parser("set", help="rename, re-range, rescale, hide or show one direction of a model file",
                           description="Change one direction's settings in a model file, in place and atomically; "
                                       "everything else in the file stays as it was. Hidden directions stay in "
                                       "the model (scripts may still set them by name) but the plug-ins' dialogs "
                                       "leave them out.")
    e.add_argument("--model", default=argparse.SUPPRESS,
                   help=MODEL_TO_CHANGE)
    e.add_argument("name", metavar="NAME", help="the direction to change")
    e.add_argument("--rename", default=None, metavar="NEW", help="new name (lowercase letters, digits, '_', '-')")
    e.add_argument("--range", default=None, metavar="LO,HI",
                   help="slider range a dialog offers, e.g. --range=-2,1.5 (write '=' when LO is negative)")
    e.add_argument("--scale", type=float, default=None,
                   help="W distance at slider value 1 (non-zero; a negative one turns the slider around)")
    vis = e.add_mutually_exclusive_group()
    vis.add_argument("--hide", action="store_const", const=True, dest="hidden", default=None,
                     help="leave it out of the plug-ins' sliders")
    vis.add_argument("--show", action="store_const", const=False, dest="hidden", help="show it again")
    e.set_defaults(func=run_set)

    r = actions.add_parser("region", help="keep directions' edits where their attributes live (or clear that)",
                           description="Measure where each named direction changes the image (its mean pixel "
                                       "change at slider ±1 over sampled faces), and store that as the direction's "
                                       "region in the model file, in place: the editor then keeps the direction's "
                                       "edit inside it and the rest of the face as it was. Suits attributes with a "
                                       "place (hair, glasses); not a head turn, whose composite would leave a "
                                       "ghost of the old outline. --clear removes the regions again.")
    r.add_argument("--model", default=argparse.SUPPRESS,
                   help=MODEL_TO_CHANGE)
    r.add_argument("names", metavar="NAMES", help="comma-separated directions")
    r.add_argument("--clear", action="store_true", help="remove their regions: edits act on the whole image again")
    # defaults (None here) are the library's, named in the help without importing torch at start-up
    r.add_argument("--alpha", type=float, default=None,
                   help="share of the peak change from which a pixel counts fully (default 0.3; lower widens "
                        "the region)")
    r.add_argument("--sigma", type=float, default=None, help="softening, in pixels at 64 px (default 2)")
    r.add_argument("--samples", type=int, default=None, help="sampled faces measured (default 64)")
    r.add_argument("--seed", type=int, default=0, help="seed of the sampled faces (default 0)")
    r.add_argument("--truncation", type=float, default=0.8,
                   help="psi towards the model's truncation centre for the faces (default %(default)g)")
    add_device(r)
    r.set_defaults(func=run_region)


def read_directions(path: Path):
    """The directions a model file, direction file or boundary file holds; a model without any (a
    project model without the component, or an official generator checkpoint) gives an empty set."""
    from ..directions import DirectionSet, directions_in_model, load_directions_file, load_official_boundaries
    from ..io.modelfile import is_safetensors, read_model
    from ..io.network_pickle import is_network_pickle

    if is_network_pickle(path):  # a StyleGAN2-ADA snapshot: a model without directions
        return DirectionSet()
    if is_safetensors(path):
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            is_model = "anycost.components" in (f.metadata() or {})
        return directions_in_model(read_model(path)) if is_model else load_directions_file(path)
    if path.suffix in (".pt", ".pth"):
        from ..io.checkpoint import load_weights_only

        obj = load_weights_only(path)
        if isinstance(obj, dict) and ("g_ema" in obj or "state_dict" in obj):
            return DirectionSet()  # a generator checkpoint: a model, with no directions
        return load_official_boundaries(path)
    return load_directions_file(path)


def _latent_shape(model: str) -> tuple[int, int]:
    from ..io.checkpoint import load_generator
    from ..registry import resolve_model

    G = load_generator(resolve_model(model))
    return G.n_style, G.style_dim


def run(args: argparse.Namespace) -> int:
    from ..registry import DEFAULT_MODEL, resolve_model

    path = Path(resolve_model(args.model or DEFAULT_MODEL))
    dirs = read_directions(path)
    if args.for_model:
        shape = _latent_shape(args.for_model)
        for d in dirs.values():
            try:
                d.check_fits(*shape)
            except InputError as e:
                raise InputError(f"{path}: {e} (model {args.for_model})") from None
    rows = [{"name": d.name, "source": d.source, "range": list(d.slider_range), "scale": round(d.scale, 4),
             "layers": d.layers, "shape": list(d.vector.shape), "hidden": d.hidden,
             "region": None if d.region is None else round(float(d.region.mean()), 3)} for d in dirs.values()]
    if args.json:
        print(json.dumps({"model": str(path), "directions": rows}))
        return 0
    if not rows:
        print(f"{path}: {NO_DIRECTIONS}")
        return 0
    print(f"{'name':20s} {'source':9s} {'range':>14s} {'scale':>8s}  slots")
    for r in rows:
        rng = f"[{r['range'][0]:g}, {r['range'][1]:g}]"
        slots = "all" if r["layers"] is None else ",".join(map(str, r["layers"]))
        marks = "".join(m for m, on in ((f"  (regional, {100 * (r['region'] or 0):.0f} % of the frame)",
                                         r["region"] is not None), ("  (hidden)", r["hidden"])) if on)
        print(f"{r['name']:20s} {r['source']:9s} {rng:>14s} {r['scale']:8.3f}  {slots}{marks}")
    return 0


def run_sheet(args: argparse.Namespace) -> int:
    from ..directions.sheet import render_sheet
    from ..editing.session import Editor
    from ..imageio import check_output_path, save_image_atomic

    out = check_output_path(args.output)
    if args.seeds < 1:
        raise InputError("--seeds must be at least 1")
    if not 0 <= args.truncation <= 1:
        raise InputError("--truncation must be in [0, 1]")
    names = [n.strip() for n in args.names.split(",") if n.strip()] if args.names else None
    editor = Editor(getattr(args, "model", None), device=resolve_device(args.device), use_lpips=False,
                    directions=args.directions)
    if not len(editor.directions):
        raise InputError(f"model {editor.name!r} has no edit directions; add some with `anycost fit-directions` "
                         "or pass --directions FILE")
    cost = editor.cost(args.cost)
    seeds = list(range(args.seed, args.seed + args.seeds))
    title = (f"{editor.name} | cost {cost.label()} | truncation {args.truncation:g} | "
             f"seeds {seeds[0]}-{seeds[-1]}, one row each")
    sheet, layout = render_sheet(editor.generator, editor.directions, names=names, seeds=seeds, steps=args.steps,
                                 truncation=args.truncation, render_kwargs=cost.render_kwargs(), title=title)
    save_image_atomic(sheet, out)
    print(f"wrote {out}: {layout.blocks} direction(s) x {layout.seeds} seed(s) x {layout.steps} steps, "
          f"{sheet.shape[1]}x{sheet.shape[0]} px")
    return 0


def _slider_range(text: str) -> tuple[float, float]:
    parts = text.replace(" ", "").split(",")
    try:
        lo, hi = (float(x) for x in parts)
    except ValueError:
        raise InputError(f"--range must be LO,HI (e.g. --range=-2,1.5), got {text!r}") from None
    return lo, hi


def model_file_to_edit(model: str | None) -> Path:
    """The project model file ``directions set`` may rewrite: not a checkpoint of another format, not a
    direction file, not the model shipped inside the package."""
    from ..io.modelfile import is_safetensors
    from ..registry import PACKAGE_MODELS, resolve_model

    if not model:
        raise InputError("give the model file to change with --model FILE")
    path = Path(resolve_model(model, allow_download=False))
    meta: dict = {}
    if is_safetensors(path):
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    if "anycost.components" not in meta:
        what = "a direction file" if meta.get("anycost.directions") else "not a project model file"
        raise InputError(f"{path} is {what}; directions can only be changed in a project model file: convert it "
                         f"first (`anycost convert {path.name} -o model.safetensors`, or `anycost fit-directions "
                         "--boundaries FILE` to add a direction file to a model)")
    if path.resolve().parent == PACKAGE_MODELS.resolve():
        raise InputError(f"{path} is the model shipped with the package; copy it to a file of your own "
                         "(e.g. into ~/.local/share/anycost/models/) and change that one")
    return path


def run_set(args: argparse.Namespace) -> int:
    from ..directions import directions_in_model, to_component
    from ..directions.storage import COMPONENT
    from ..io.modelfile import read_model
    from ..training.model_update import update_model

    path = model_file_to_edit(getattr(args, "model", None))
    if args.rename is None and args.range is None and args.scale is None and args.hidden is None:
        raise InputError("nothing to change: give --rename, --range, --scale, --hide or --show")
    dirs = directions_in_model(read_model(path))
    if not len(dirs):
        raise InputError(f"{path} has no edit directions (add some with `anycost fit-directions`)")
    new = dirs.edited(args.name, rename=args.rename, scale=args.scale, hidden=args.hidden,
                      slider_range=_slider_range(args.range) if args.range is not None else None)
    update_model(path, path, components={COMPONENT: to_component(new)})
    d = new[args.rename or args.name]
    rng = f"[{d.slider_range[0]:g}, {d.slider_range[1]:g}]"
    print(f"{args.name}{' -> ' + d.name if d.name != args.name else ''}: range {rng}, scale {d.scale:.4g}"
          f"{', hidden' if d.hidden else ''}; wrote {path}")
    return 0


def run_region(args: argparse.Namespace) -> int:
    from ..directions import DirectionSet, directions_in_model, to_component
    from ..directions.regional import DEFAULT_ALPHA, DEFAULT_SAMPLES, DEFAULT_SIGMA, fit_region, without_region
    from ..directions.storage import COMPONENT
    from ..io.checkpoint import load_generator
    from ..io.modelfile import read_model
    from ..training.model_update import update_model

    path = model_file_to_edit(getattr(args, "model", None))
    names = [n.strip() for n in args.names.split(",") if n.strip()]
    if not names:
        raise InputError("name at least one direction")
    samples = DEFAULT_SAMPLES if args.samples is None else args.samples
    alpha = DEFAULT_ALPHA if args.alpha is None else args.alpha
    sigma = DEFAULT_SIGMA if args.sigma is None else args.sigma
    if samples < 1:
        raise InputError("--samples must be at least 1")
    if not 0 <= args.truncation <= 1:
        raise InputError("--truncation must be in [0, 1]")
    dirs = directions_in_model(read_model(path))
    unknown = [n for n in names if n not in dirs]
    if unknown:
        raise InputError(f"unknown direction(s) {', '.join(unknown)}; available: {', '.join(dirs) or 'none'}")
    changed = {}
    if args.clear:
        changed = {n: without_region(dirs[n]) for n in names}
    else:
        G = load_generator(path).to(resolve_device(args.device)).eval()
        for n in names:
            changed[n] = fit_region(G, dirs[n], samples=samples, seed=args.seed, truncation=args.truncation,
                                    alpha=alpha, sigma=sigma)
    new = DirectionSet(changed.get(n, d) for n, d in dirs.items())
    update_model(path, path, components={COMPONENT: to_component(new)})
    for n in names:
        d = new[n]
        what = "whole image" if d.region is None else f"regional, {100 * float(d.region.mean()):.0f} % of the frame"
        print(f"{n}: {what}")
    print(f"wrote {path}")
    return 0
