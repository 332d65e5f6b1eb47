"""Training outputs for people: loss curves (CSV + PNG), sample grids, optional TensorBoard."""

from __future__ import annotations

import csv
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..models.generator import Generator

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


class LossLog:
    """Appends rows to ``losses.csv``; the header grows when new columns appear (rewritten then)."""

    def __init__(self, out_dir: str | os.PathLike, tensorboard: bool = False):
        self.path = Path(out_dir) / "losses.csv"
        self.rows: list[dict] = []
        self.columns: list[str] = []
        if self.path.is_file():
            with open(self.path, newline="") as f:
                reader = csv.DictReader(f)
                self.columns = list(reader.fieldnames or [])
                self.rows = list(reader)
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(Path(out_dir) / "tensorboard"))
            except ImportError:
                warnings.warn("--tensorboard asked for but tensorboard is not installed; writing CSV only",
                              RuntimeWarning, stacklevel=2)

    def truncate(self, step: int) -> None:
        """Drop rows after ``step`` (a resumed run rewrites them)."""
        keep = [r for r in self.rows if int(float(r.get("step", 0))) <= step]
        if len(keep) != len(self.rows):
            self.rows = keep
            self._rewrite()

    def append(self, row: dict) -> None:
        row = {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
        self.rows.append(row)
        new = [k for k in row if k not in self.columns]
        if new or not self.path.is_file():
            self.columns += new
            self._rewrite()
        else:
            with open(self.path, "a", newline="") as f:
                csv.DictWriter(f, self.columns).writerow(row)
        if self.tb is not None:
            step = int(row["step"])
            for k, v in row.items():
                if k != "step":
                    try:
                        self.tb.add_scalar(k, float(v), step)
                    except (TypeError, ValueError):
                        pass

    def _rewrite(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, self.columns)
            w.writeheader()
            w.writerows(self.rows)
        os.replace(tmp, self.path)

    def plot(self, path: str | os.PathLike | None = None, keys: Sequence[str] | None = None) -> Path:
        path = Path(path) if path else self.path.with_suffix(".png")
        series = {}
        for k in keys or [c for c in self.columns if c.startswith("loss/")]:
            pts = []
            for r in self.rows:
                try:
                    pts.append((float(r["step"]), float(r[k])))
                except (KeyError, TypeError, ValueError):
                    continue
            pts = [p for p in pts if math.isfinite(p[1])]
            if pts:
                series[k] = pts
        plot_curves(series, path)
        return path


def plot_curves(series: dict[str, list[tuple[float, float]]], path: str | os.PathLike,
                size: tuple[int, int] = (900, 500)) -> None:
    """A plain line chart with Pillow: one colour per series, legend, axis ranges."""
    W, H = size
    left, right, top, bottom = 60, 200, 20, 40
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    d.rectangle([left, top, W - right, H - bottom], outline=(0, 0, 0))
    pts = [p for s in series.values() for p in s]
    if pts:
        x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
        y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
        x1 = x1 if x1 > x0 else x0 + 1
        y1 = y1 if y1 > y0 else y0 + 1

        def xy(p):
            return (left + (p[0] - x0) / (x1 - x0) * (W - left - right),
                    H - bottom - (p[1] - y0) / (y1 - y0) * (H - top - bottom))

        for i, (name, s) in enumerate(series.items()):
            c = PALETTE[i % len(PALETTE)]
            if len(s) > 1:
                d.line([xy(p) for p in s], fill=c, width=2)
            else:
                x, y = xy(s[0])
                d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=c)
            d.text((W - right + 10, top + 15 * i), name, fill=c)
        d.text((5, top), f"{y1:.3g}", fill=(0, 0, 0))
        d.text((5, H - bottom - 10), f"{y0:.3g}", fill=(0, 0, 0))
        d.text((left, H - bottom + 5), f"step {x0:.0f}", fill=(0, 0, 0))
        d.text((W - right - 80, H - bottom + 5), f"step {x1:.0f}", fill=(0, 0, 0))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(path).with_suffix(".tmp.png")
    img.save(tmp)
    os.replace(tmp, path)


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] → (H, W, 3) uint8."""
    x = ((img.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(1, 2, 0).cpu().numpy()


@torch.no_grad()
def sample_grids(G: Generator, out_dir: str | os.PathLike, step: int, ratios: Sequence[float],
                 n: int = 8, seed: int = 0) -> list[Path]:
    """One PNG per resolution: rows are channel ratios (largest first), columns fixed seeds."""
    w = G.styles_from_seed(seed, n)
    paths = []
    for res in G.resolutions:
        rows = []
        for r in sorted(ratios, reverse=True):
            imgs = G.synthesize(w, res=res, channels=None if r == 1 else float(r), noise="const",
                                impl="reference")
            rows.append(np.concatenate([to_uint8(im) for im in imgs], axis=1))
        grid = np.concatenate(rows, axis=0)
        k = max(1, 64 // res)  # enlarge tiny resolutions (nearest) so they can be inspected
        if k > 1:
            grid = grid.repeat(k, axis=0).repeat(k, axis=1)
        path = Path(out_dir) / "samples" / f"step-{step:08d}-res-{res}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.png")
        Image.fromarray(grid).save(tmp)
        os.replace(tmp, path)
        paths.append(path)
    return paths
