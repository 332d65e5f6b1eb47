"""Speed of the image-side editing stages on this machine (CPU).

Prints, for square regions of 512, 1024 and 2048 px with a face filling most of the region:
  * paste-back time (median of a few runs) for an edited crop of 256 and 1024 px with the default
    blend ("delta": the edit alone added to the original pixels) and with "replace" (the render
    itself, with and without colour matching), and the size of the box actually blended;
  * alignment time with given landmarks, with dlib detection (when installed) and for the centre-crop
    fallback.
The face is a procedural synthetic portrait scaled up to the region size. Timings on a shared machine
are noisy; CPU time is printed next to wall time.

    python benchmarks/paste_speed.py [--threads N] [--repeats R] [--sizes 512,1024,2048]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from PIL import Image

from anycost.data.synth_faces import render_index
from anycost.editing.align import align_face, dlib_available
from anycost.editing.paste import _paste_box, paste_back
from anycost.editing.region import Region

# Eye and mouth centres of synthetic face (seed 0, index 2) in a 512 px render.
LANDMARKS_512 = {"left_eye": (198.3, 226.5), "right_eye": (280.7, 216.2), "mouth": (241.0, 327.0)}
SIZES = (512, 1024, 2048)


def timed(fn, repeats: int) -> tuple[float, float]:
    """(median wall seconds, median CPU seconds) after one untimed warm-up call."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)), help="square region sizes, comma-separated")
    args = ap.parse_args()
    sizes = [int(v) for v in args.sizes.split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}, dlib: {'yes' if dlib_available() else 'no'}")

    face, _ = render_index(0, 2, 512)
    print("\npaste-back (wall / CPU, ms; box = pixels blended)")
    print(f"{'region':>8} {'crop':>6} {'box':>11} {'delta (default)':>16} {'replace + colour':>16} "
          f"{'replace':>16}")
    for size in sizes:
        k = size / 512
        img = np.asarray(Image.fromarray(face).resize((size, size), Image.Resampling.BICUBIC))
        mask = np.full((size, size), 255, np.uint8)
        region = Region.from_array(img, mask)
        lm = {name: ((x + 0.5) * k - 0.5, (y + 0.5) * k - 0.5) for name, (x, y) in LANDMARKS_512.items()}
        for crop in (256, 1024):
            al = align_face(region, crop, landmarks=lm)
            ref = torch.from_numpy(al.image).permute(2, 0, 1).float().div(127.5).sub(1.0)
            edited = (ref * 0.9 + 0.05).clamp(-1.0, 1.0)  # an edit that changes every pixel of the crop
            x0, y0, x1, y1 = _paste_box(region, al, True)
            delta = timed(lambda r=region, al=al, e=edited, ref=ref: paste_back(r, al, e, reference=ref, blend="delta"),
                          args.repeats)
            # colour matching fitted on the unedited render, as the editing session does
            with_cm = timed(lambda r=region, al=al, e=edited, ref=ref: paste_back(r, al, e, reference=ref),
                            args.repeats)
            no_cm = timed(lambda r=region, al=al, e=edited: paste_back(r, al, e, color_match=False), args.repeats)
            print(
                f"{size:>8} {crop:>6} {f'{x1 - x0}x{y1 - y0}':>11} "
                + " ".join(f"{t[0] * 1e3:>8.0f} /{t[1] * 1e3:>6.0f}" for t in (delta, with_cm, no_cm))
            )

    print("\nalignment to a 1024 px crop (wall / CPU, ms)")
    print(f"{'region':>8} {'landmarks given':>18} {'dlib detection':>18} {'centre crop':>18}")
    for size in sizes:
        k = size / 512
        img = np.asarray(Image.fromarray(face).resize((size, size), Image.Resampling.BICUBIC))
        region = Region.from_array(img)
        lm = {name: ((x + 0.5) * k - 0.5, (y + 0.5) * k - 0.5) for name, (x, y) in LANDMARKS_512.items()}
        given = timed(lambda region=region, lm=lm: align_face(region, 1024, landmarks=lm), args.repeats)
        centre = timed(lambda region=region: align_face(region, 1024, use_landmarks=False), args.repeats)
        if dlib_available():
            det = timed(lambda region=region: align_face(region, 1024), max(1, args.repeats // 2))
            method = align_face(region, 1024).method
            det_s = f"{det[0] * 1e3:>7.0f} /{det[1] * 1e3:>5.0f}" + ("" if method == "landmarks" else " (no face)")
        else:
            det_s = "n/a"
        print(
            f"{size:>8} {given[0] * 1e3:>10.0f} /{given[1] * 1e3:>5.0f} {det_s:>18} "
            f"{centre[0] * 1e3:>10.0f} /{centre[1] * 1e3:>5.0f}"
        )


if __name__ == "__main__":
    main()
