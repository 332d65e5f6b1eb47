"""Contact sheets of edit directions: what each slider does, seen on a few faces.

One block per direction: a title line (name, source, style slots), a line of slider values, then
one row of faces per seed, the slider stepping from the low to the high end of its range from
left to right. Unnamed directions (SeFa, PCA) only get a meaning once someone has looked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..errors import InputError
from ..imageio import make_grid, tensor_to_uint8
from ..models.generator import Generator
from .direction import Direction, DirectionSet
from .regional import blend

PAD = 2  # between faces (make_grid's padding)
LINE = 14  # height of one text line; Pillow's default font is 11-12 px high
GAP = 8  # between blocks
INK = (20, 20, 20)
# A sheet bigger than this is refused before anything renders (18 directions × 3 seeds × 5 steps of
# 1024-px faces would be 270 megapixels): a cheaper cost or fewer directions make a sheet one can open.
MAX_PIXELS = 120_000_000


@dataclass(frozen=True)
class SheetLayout:
    """Where everything sits on a sheet of ``blocks`` directions × ``seeds`` rows × ``steps`` columns."""

    blocks: int
    seeds: int
    steps: int
    tile: int  # side of one face, pixels
    min_width: int = 0  # room the longest text line needs

    @property
    def grid_size(self) -> tuple[int, int]:
        """(width, height) of one block's faces, as ``make_grid`` lays them out."""
        return self.steps * (self.tile + PAD) + PAD, self.seeds * (self.tile + PAD) + PAD

    @property
    def block_height(self) -> int:
        return 2 * LINE + self.grid_size[1]

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the whole sheet: a title line, then the blocks."""
        return (max(self.grid_size[0], self.min_width),
                LINE + self.blocks * self.block_height + (self.blocks - 1) * GAP)

    def block_top(self, block: int) -> int:
        return LINE + block * (self.block_height + GAP)

    def tile_box(self, block: int, row: int, col: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of one face."""
        x = PAD + col * (self.tile + PAD)
        y = self.block_top(block) + 2 * LINE + PAD + row * (self.tile + PAD)
        return x, y, x + self.tile, y + self.tile

    def column_centre(self, col: int) -> int:
        return PAD + col * (self.tile + PAD) + self.tile // 2


def slider_values(direction: Direction, steps: int) -> list[float]:
    lo, hi = direction.slider_range
    return [float(v) for v in torch.linspace(lo, hi, steps)]


def _describe(d: Direction) -> str:
    slots = "all slots" if d.layers is None else "slots " + ",".join(map(str, d.layers))
    marks = "".join(m for m, on in ((", regional", d.region is not None), (", hidden", d.hidden)) if on)
    return f"{d.name}  ({d.source}, {slots}{marks})"


@torch.inference_mode()
def render_sheet(G: Generator, directions: DirectionSet, *, names: Sequence[str] | None = None,
                 seeds: Sequence[int] = (0, 1, 2), steps: int = 5, truncation: float = 0.7,
                 render_kwargs: dict | None = None, title: str = "") -> tuple[np.ndarray, SheetLayout]:
    """The sheet (HWC uint8) for ``names`` (default: every direction, hidden ones included) and its layout.

    Faces come from ``G.styles_from_seed(seed, truncation=…)`` (towards the model's truncation centre)
    and are rendered with ``render_kwargs`` (a cost's ``render_kwargs()``; default: the full generator)."""
    chosen = list(directions) if names is None else list(names)
    unknown = [n for n in chosen if n not in directions]
    if unknown:
        raise InputError(f"unknown direction(s) {', '.join(unknown)}; available: {', '.join(directions) or 'none'}")
    if not chosen:
        raise InputError("no directions to show")
    if steps < 2:
        raise InputError("--steps must be at least 2 (the two ends of the slider)")
    if not seeds:
        raise InputError("--seeds must be at least 1")
    for n in chosen:
        directions[n].check_fits(G.n_style, G.style_dim)
    kwargs = dict(render_kwargs or {})
    side = kwargs.get("res") or G.resolution
    pixels = len(chosen) * len(seeds) * steps * side * side
    if pixels > MAX_PIXELS:
        raise InputError(f"the sheet would hold {pixels / 1e6:.0f} megapixels of faces; render at a lower cost "
                         f"(e.g. --cost {max(32, side // 4)}), with fewer --names, --seeds or --steps")
    device = next(G.parameters()).device
    base = torch.cat([G.styles_from_seed(int(s), truncation=truncation) for s in seeds])  # (S, n_style, D)
    font = ImageFont.load_default()
    texts = [title] + [_describe(directions[n]) for n in chosen]
    min_width = max(int(font.getlength(t)) for t in texts) + 2 * PAD
    tile = None
    blocks: list[np.ndarray] = []
    for n in chosen:
        d = directions[n]
        values = slider_values(d, steps)
        offsets = torch.stack([d.offset(G.n_style, G.style_dim, v) for v in values]).to(device, base.dtype)
        # one seed's strip per batch: rows of the block, and memory bounded by one strip
        strips = []
        for w in base:
            strip = G.synthesize(w[None] + offsets, noise="const", **kwargs)
            if d.region is not None:  # as the editor shows it: the edit kept inside the direction's region
                strip = blend(G.synthesize(w[None], noise="const", **kwargs), strip, [d.region])
            strips.append(tensor_to_uint8(strip))
        imgs = np.concatenate(strips)
        tile = imgs.shape[1]
        blocks.append(make_grid(imgs, cols=steps, pad=PAD))
    assert tile is not None
    layout = SheetLayout(len(chosen), len(seeds), steps, tile, min_width)
    width, height = layout.size
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    draw.text((PAD, 1), title, fill=INK, font=font)
    for b, (n, grid) in enumerate(zip(chosen, blocks, strict=True)):
        top = layout.block_top(b)
        draw.text((PAD, top + 1), _describe(directions[n]), fill=INK, font=font)
        for c, v in enumerate(slider_values(directions[n], steps)):
            label = f"{v:+.2f}"
            draw.text((layout.column_centre(c) - font.getlength(label) / 2, top + LINE + 1), label, fill=INK,
                      font=font)
        sheet.paste(Image.fromarray(grid), (0, top + 2 * LINE))
    return np.asarray(sheet), layout
