"""The step a hard selection edge leaves in an edit, with and without the fall-off inside the selection.

A user who selects a rectangle that cuts through a face (or lassos half of it) gets the edit only
inside; without a fall-off the whole edit stops dead at the selection's edge and shows as a step. This
runs a real edit with the shipped demo model on one of its own faces, pastes it back through a hard
rectangular selection whose right edge runs down the middle of the face, once with the fall-off off
(``selection_feather=0``, the old behaviour) and once with the default, and prints in the same run:

  * edge step: mean |change| difference between the last selected column and the first one outside
    (levels; 0 = the edit fades to nothing at the edge);
  * steepest column-to-column change of the edit along the way in (levels per pixel);
  * the edit's mean strength deeper inside the selection (it must stay whole there);
  * pixels changed outside the selection (must be 0).

    python benchmarks/selection_edge.py [--model anycost-demo] [--set hair_darkness=-1] [--size 512]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from anycost.editing.session import Editor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model (default: the shipped demo)")
    ap.add_argument("--set", action="append", default=None, metavar="NAME=VALUE",
                    help="the edit (default: hair_darkness=-1 and skin_tone=1)")
    ap.add_argument("--size", type=int, default=512, help="region side in pixels")
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    edits = dict((k, float(v)) for k, v in (s.split("=", 1) for s in (args.set or ["hair_darkness=-1",
                                                                                      "skin_tone=1"])))
    editor = Editor(args.model)
    g = editor.generator
    # one of the model's own faces, so the edit is the model's best, scaled to the region size
    with torch.inference_mode():
        img = g(g.styles_from_seed(args.seed, truncation=0.7))
        img = torch.nn.functional.interpolate(img, size=(args.size, args.size), mode="bilinear",
                                              align_corners=False, antialias=True)
        face = ((img[0].permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    s = args.size
    mask = np.zeros((s, s), np.uint8)
    top, bottom, left, edge = s // 8, s - s // 8, s // 8, s // 2  # right edge down the face's middle
    mask[top:bottom, left:edge] = 255
    t0 = time.perf_counter()
    es = editor.open(face, mask=mask, align=False)
    es.project()
    es.set(**edits)
    print(f"model {editor.name}, region {s}², edit {edits}, selection x {left}..{edge - 1}, "
          f"projected in {time.perf_counter() - t0:.1f} s")
    print(f"{'paste-back':>22} {'edge step':>10} {'steepest':>9} {'inside':>7} {'outside':>8}")
    rows = slice(top + s // 16, bottom - s // 16)
    for label, sf in (("hard edge (before)", 0.0), ("fall-off (default)", None)):
        out = es.result("full", selection_feather=sf)
        change = np.abs(out[..., :3].astype(int) - face.astype(int)).max(-1)
        signed = out[rows, :, :3].astype(int) - face[rows, :, :3].astype(int)
        step = float(np.abs(signed[:, edge - 1] - signed[:, edge]).mean())
        steep = float(np.abs(np.diff(change[rows, left:edge + 1].astype(float), axis=1)).mean(0).max())
        inner = float(change[rows, left + s // 8: edge - s // 8].mean())
        outside = int((np.any(out != es.region.rgba, axis=-1) & (mask == 0)).sum())
        print(f"{label:>22} {step:>10.2f} {steep:>9.2f} {inner:>7.2f} {outside:>8d}")


if __name__ == "__main__":
    main()
