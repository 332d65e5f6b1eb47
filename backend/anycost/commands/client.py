"""``anycost client …``: talk to a running backend from shell scripts."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import AnycostError, InputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("client", help="talk to a running backend (ping, info, edit)",
                       description="Commands that go through a running 'anycost serve'. The backend is found "
                                   "through its connection file (newest live one by default).")
    p.add_argument("--connection-file", help="connection file of the backend (default: find the running one)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for answers (default 120)")
    csub = p.add_subparsers(dest="client_command", metavar="ACTION")
    csub.required = True
    ping = csub.add_parser("ping", help="check that the backend answers; prints the round trip")
    ping.add_argument("-n", "--count", type=int, default=1)
    ping.set_defaults(func=run_ping)
    info = csub.add_parser("info", help="print the backend's welcome (models, directions, costs, limits) as JSON")
    info.set_defaults(func=run_info)
    edit = csub.add_parser("edit", help="edit an image through the backend")
    edit.add_argument("input", help="input image")
    edit.add_argument("-o", "--output", required=True, help="output image")
    edit.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="slider value (repeatable)")
    edit.add_argument("--mask", help="selection mask image (white = edit)")
    edit.add_argument("--refine-steps", type=int, default=0, help="projection refinement steps (default 0)")
    edit.add_argument("--no-align", action="store_true", help="skip face alignment")
    edit.add_argument("--preview", action="store_true", help="write the preview-cost render instead of the full one")
    edit.set_defaults(func=run_edit)


def _connect(args: argparse.Namespace):
    from anycost_client.client import Client
    from anycost_client.connection_file import ConnectionFileError

    try:
        return Client.connect(args.connection_file, timeout=args.timeout)
    except ConnectionFileError as e:
        raise AnycostError(str(e)) from e
    except Exception as e:
        raise AnycostError(f"cannot reach the backend: {e}") from e


def _failed(e: Exception) -> AnycostError:
    """A backend's refusal or a lost connection as one line (never a traceback)."""
    from anycost_client.client import BackendError

    if isinstance(e, BackendError):
        return AnycostError(f"the backend answered: {e}")
    return AnycostError(f"lost the backend: {e}")


def run_ping(args: argparse.Namespace) -> int:
    import time

    import zmq

    from anycost_client.client import BackendError

    if args.count < 1:
        raise InputError("--count must be at least 1")
    with _connect(args) as client:
        try:
            for _ in range(args.count):
                t0 = time.perf_counter()
                pong = client.ping(timeout=min(args.timeout, 30.0))
                print(f"pong from backend: {1000 * (time.perf_counter() - t0):.2f} ms, "
                      f"{pong.get('sessions')} session(s) open")
        except (BackendError, ConnectionError, zmq.ZMQError) as e:
            raise _failed(e) from e
    return 0


def run_info(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        json.dump(client.welcome, sys.stdout, indent=2, default=str)
        print()
    return 0


def run_edit(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from anycost_client.client import BackendError

    from ..editing.region import Region
    from .edit import parse_sliders

    sliders = parse_sliders(args.set)
    region = Region.from_file(args.input, mask_path=args.mask)
    import zmq

    with _connect(args) as client:
        try:
            session = client.open(region.rgba.tobytes(), region.width, region.height,
                                  mask=None if region.mask is None else region.mask.tobytes(),
                                  refine_steps=args.refine_steps, align=not args.no_align)
            with session:
                if session.notice:
                    print(f"note: {session.notice}", file=sys.stderr)
                if args.preview:
                    p = session.edit(**sliders)
                    out = region.rgba.copy()
                    if p.box:
                        x, y, w, h = p.box
                        out[y: y + h, x: x + w] = np.frombuffer(p.rgba, np.uint8).reshape(h, w, 4)
                else:
                    r = session.commit(**sliders)
                    out = np.frombuffer(r.rgba, np.uint8).reshape(r.height, r.width, 4)
        except BackendError as e:
            raise InputError(f"the backend refused: {e}") from e
        except (ConnectionError, zmq.ZMQError) as e:
            raise _failed(e) from e
    from pathlib import Path

    from ..fsutil import atomic_write

    out_path = Path(args.output)
    im = Image.fromarray(out, "RGBA")
    if out_path.suffix.lower() in (".jpg", ".jpeg"):
        im = im.convert("RGB")
    try:
        atomic_write(out_path, im.save)  # the temporary file keeps the suffix: PIL picks the format by it
    except (OSError, ValueError) as e:
        raise InputError(f"cannot write {out_path}: {e}") from e
    print(f"wrote {out_path}")
    return 0
