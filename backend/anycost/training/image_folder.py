"""Image folders and label tables for the encoder and classifier trainers.

A label table is either

- CSV: a header ``file,<attr1>,<attr2>,…`` then one row per image (values in [0, 1]); or
- JSON: ``{"attributes": [...], "labels": {"<file>": [v1, v2, …], …}}`` or
  ``{"attributes": [...], "files": [...], "labels": [[…], …]}``.

File names are relative to the image folder.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from ..data.folder import IMAGE_EXTENSIONS, fit_square, scan_images, to_rgb
from ..errors import InputError

LABEL_FILE_NAMES = ("labels.csv", "labels.json", "attributes.csv", "attributes.json")


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under ``folder`` (recursive, stable order); an error naming the folder when none."""
    files = scan_images(folder)
    if not files:
        raise InputError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in {folder}")
    return files


def load_image(path: Path, size: int | None) -> torch.Tensor:
    """One image in any mode → (3, size, size) in [-1, 1] (centre-cropped to a square, then resized)."""
    try:
        with Image.open(path) as im:
            im = fit_square(to_rgb(im), "crop", (255, 255, 255))
            if size is not None and im.size[0] != size:
                im = im.resize((size, size), Image.Resampling.LANCZOS)
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise InputError(f"cannot read image {path}: {e}") from e
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 127.5 - 1.0


def load_images(paths: Sequence[Path], size: int | None = None) -> torch.Tensor:
    """Images → (N, 3, S, S); without ``size`` they must share one size."""
    imgs = [load_image(p, size) for p in paths]
    if not imgs:
        raise InputError("no images to load")
    shapes = {tuple(t.shape) for t in imgs}
    if len(shapes) > 1:
        s = max(t.shape[-1] for t in imgs)
        imgs = [t if t.shape[-1] == s else
                F.interpolate(t[None], size=(s, s), mode="bilinear", align_corners=False, antialias=True)[0]
                for t in imgs]
    return torch.stack(imgs)


def find_labels_file(folder: Path) -> Path:
    for name in LABEL_FILE_NAMES:
        for p in (folder / name, folder.parent / name):
            if p.is_file():
                return p
    raise InputError(f"no label table in {folder} (looked for {', '.join(LABEL_FILE_NAMES)}); pass --labels FILE")


def read_labels(path: str | os.PathLike) -> tuple[list[str], list[str], torch.Tensor]:
    """(file names, attribute names, labels (N, n_attr) float32) from a CSV or JSON table."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"label file not found: {path}")
    try:
        if path.suffix.lower() == ".json":
            files, attrs, rows = _read_json(path)
        else:
            files, attrs, rows = _read_csv(path)
        labels = torch.tensor(np.asarray(rows, dtype=np.float32).reshape(len(files), len(attrs)))
    except (ValueError, KeyError, TypeError, json.JSONDecodeError, csv.Error, UnicodeDecodeError) as e:
        raise InputError(f"{path} is not a valid label table: {e}") from e
    if not files:
        raise InputError(f"{path} lists no images")
    if not torch.isfinite(labels).all() or labels.min() < 0 or labels.max() > 1:
        raise InputError(f"{path}: labels must be numbers in [0, 1]")
    return files, attrs, labels


def _read_csv(path: Path) -> tuple[list[str], list[str], list[list[float]]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header or len(header) < 2:
            raise ValueError("the header needs a file column and at least one attribute column")
        files, rows = [], []
        for i, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise ValueError(f"line {i} has {len(row)} fields, the header has {len(header)}")
            files.append(row[0])
            rows.append([float(v) for v in row[1:]])
    return files, [h.strip() for h in header[1:]], rows


def _read_json(path: Path) -> tuple[list[str], list[str], list[list[float]]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    attrs = [str(a) for a in data["attributes"]]
    labels = data["labels"]
    if isinstance(labels, dict):
        files = list(labels)
        rows = [[float(v) for v in labels[f]] for f in files]
    else:
        files = [str(f) for f in data["files"]]
        rows = [[float(v) for v in r] for r in labels]
        if len(rows) != len(files):
            raise ValueError(f"{len(files)} files but {len(rows)} label rows")
    for r in rows:
        if len(r) != len(attrs):
            raise ValueError(f"a label row has {len(r)} values for {len(attrs)} attributes")
    return files, attrs, rows
