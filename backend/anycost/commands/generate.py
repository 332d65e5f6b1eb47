"""``anycost generate``: render images from seeds with any sub-generator."""

from __future__ import annotations

import argparse

from ..errors import InputError
from .common import add_device, parse_channels, resolve_device


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="render images from random seeds or given latents",
                       description="Render images from seeds (or from latents in a .npy file) at any resolution "
                                   "and channel cost.")
    p.add_argument("--model", required=True, help="model name (see `anycost models`) or a file path")
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--n", type=int, default=1, help="number of images (seeds seed..seed+n-1)")
    p.add_argument("--res", type=int, default=None, help="output resolution (default: the model's)")
    p.add_argument("--channels", default=None,
                   help="channel ratio (e.g. 0.5) or comma-separated per-layer widths (default: full)")
    p.add_argument("--truncation", type=float, default=1.0, help="truncation psi (default 1: none)")
    p.add_argument("--truncation-cutoff", type=int, default=None, metavar="N",
                   help="truncate only the first N style slots (coarse layers); default: all")
    given = p.add_mutually_exclusive_group()
    given.add_argument("--z", metavar="FILE.npy", help="render these z latents (N, dim) instead of seeds")
    given.add_argument("--w", metavar="FILE.npy", help="render these w (N, dim) or W+ (N, slots, dim) latents "
                                                       "instead of seeds")
    p.add_argument("--noise", choices=["const", "random"], default="const")
    p.add_argument("--grid", action="store_true", help="write one contact sheet instead of one file per seed")
    p.add_argument("-o", "--output", required=True, help="output image (a seed suffix is added when n > 1)")
    add_device(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ..imageio import check_output_path, make_grid, save_image_atomic, tensor_to_uint8
    from ..registry import load_registered_generator

    if args.n < 1:
        raise InputError("--n must be at least 1")
    if not 0 <= args.truncation <= 1:
        raise InputError("--truncation must be in [0, 1]")
    out = check_output_path(args.output)
    device = resolve_device(args.device)
    G = load_registered_generator(args.model, device=str(device))
    if args.truncation_cutoff is not None and not 0 <= args.truncation_cutoff <= G.n_style:
        raise InputError(f"--truncation-cutoff must be in 0..{G.n_style} for this model")
    given = _read_latents(args.z or args.w, G, "z" if args.z else "w") if (args.z or args.w) else None
    if given is not None:
        args.n = given.shape[0]
    channels = parse_channels(args.channels)
    try:
        G.resolve_channels(channels)
    except ValueError as e:
        raise InputError(f"--channels: {e}") from e
    if args.res is not None and args.res not in G.resolutions:
        raise InputError(f"--res must be one of {G.resolutions} for this model")
    images = []
    with torch.inference_mode():
        for i in range(args.n):
            if given is None:
                w = G.styles_from_seed(args.seed + i, truncation=args.truncation,
                                       truncation_cutoff=args.truncation_cutoff)
            else:
                w = given[i:i + 1].to(device)
                w = G.mapping(w) if args.z else w
                w = G.truncate(w, args.truncation, cutoff=args.truncation_cutoff)
            noise_gen = torch.Generator().manual_seed(args.seed + i)
            img = G.synthesize(w, res=args.res, channels=channels, noise=args.noise, generator=noise_gen)
            images.append(tensor_to_uint8(img)[0])
    if args.grid or args.n == 1:
        arr = make_grid(np.stack(images)) if args.n > 1 else images[0]
        save_image_atomic(arr, out)
        print(out)
    else:
        for i, arr in enumerate(images):
            p = out.with_name(f"{out.stem}-{args.seed + i:06d}{out.suffix}")
            save_image_atomic(arr, p)
            print(p)
    return 0


def _read_latents(path: str, G, kind: str):
    """Latents from a .npy file, checked against the model: z/w (N, dim); w may also be W+ (N, slots, dim)."""
    import numpy as np
    import torch

    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise InputError(f"cannot read latents from {path}: {e}") from None
    if arr.dtype.kind not in "fiu" or not np.isfinite(arr).all():
        raise InputError(f"{path} does not hold finite numbers")
    if arr.ndim == 1:
        arr = arr[None]
    shapes = [(G.style_dim,)] + ([(G.n_style, G.style_dim), (1, G.style_dim)] if kind == "w" else [])
    if arr.ndim not in (2, 3) or tuple(arr.shape[1:]) not in shapes or arr.shape[0] < 1:
        want = " or ".join(f"(N, {', '.join(map(str, s))})" for s in shapes)
        raise InputError(f"--{kind} latents must have shape {want} for this model, got {tuple(arr.shape)}")
    return torch.from_numpy(arr.astype(np.float32))
