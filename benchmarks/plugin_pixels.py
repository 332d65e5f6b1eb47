"""Pixel work the host plugins do in their own (pure) Python, on this machine.

Prints, for square regions of 256, 512 and 1024 px and each layer format the Krita plugin handles
(8-bit BGRA, 16-bit BGRA, 16-bit linear, half and single float, linear), the median time to convert
the layer's pixels to the wire's RGBA8 (once per dialog) and back (every preview drawn into a 16-bit
or float preview layer, and Apply), and the time to paste one preview box into the thumbnail image.
The lookup tables a format needs are built once per host session; their one-time cost is printed
first and left out of the medians. These run inside Krita's or GIMP's Python, with no numpy.

    python benchmarks/plugin_pixels.py [--repeats R] [--sizes 256,512,1024]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from anycost_client.regions import PixelFormat, from_rgba8, paste_box, to_rgba8

FORMATS = [
    ("U8 BGRA", PixelFormat("U8", "BGRA")),
    ("U16 BGRA", PixelFormat("U16", "BGRA")),
    ("U16 linear", PixelFormat("U16", "BGRA", linear=True)),
    ("F16 RGBA", PixelFormat("F16", "RGBA")),
    ("F16 linear", PixelFormat("F16", "RGBA", linear=True)),
    ("F32 linear", PixelFormat("F32", "RGBA", linear=True)),
]


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t))
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", default="256,512,1024")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    for label, fmt in FORMATS:  # the tables: built on first use
        t = time.perf_counter()
        to_rgba8(from_rgba8(bytes(16), 2, 2, fmt), 2, 2, fmt)
        print(f"{label:<12} tables built once: {1000 * (time.perf_counter() - t):.0f} ms")
    print(f"{'format':<12} {'region':>7} {'to wire ms':>11} {'from wire ms':>13} {'MB/s in':>8}")
    for label, fmt in FORMATS:
        for side in sizes:
            rgba = os.urandom(side * side * 4)
            host = from_rgba8(rgba, side, side, fmt)
            to_ms = median_ms(lambda host=host, side=side, fmt=fmt: to_rgba8(host, side, side, fmt), args.repeats)
            from_ms = median_ms(lambda rgba=rgba, side=side, fmt=fmt: from_rgba8(rgba, side, side, fmt),
                                args.repeats)
            print(f"{label:<12} {side:>5}² {to_ms:>11.1f} {from_ms:>13.1f} {len(host) / 1e3 / to_ms:>8.0f}")
    for side in sizes:
        base = bytearray(os.urandom(side * side * 4))
        box = (side // 8, side // 8, 3 * side // 4, 3 * side // 4)
        pixels = os.urandom(box[2] * box[3] * 4)
        ms = median_ms(lambda base=base, side=side, box=box, pixels=pixels: paste_box(base, side, box, pixels),
                       args.repeats)
        print(f"preview box {box[2]}² into a {side}² thumbnail image: {ms:.2f} ms")


if __name__ == "__main__":
    main()
