"""Procedural, labelled portraits: a stand-in face dataset that needs no download.

Every image is drawn from its own random stream (``numpy.random.SeedSequence([seed, index])``), so any
subset, order or number of workers yields the same bytes. The labelled attributes (``ATTRIBUTES``) are
sampled independently of each other; everything else (proportions, colours, hairstyle, background,
clothes) is continuous nuisance variation so that a generator cannot memorise a small set of faces.

This module holds the dataset-level API (batches in memory, writing a folder with ``labels.json``);
``face_attributes`` defines and samples the labels and ``face_drawing`` paints one portrait.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError
from .face_attributes import (
    ATTRIBUTES,
    MAX_LIGHT_DEG,
    MAX_ROLL_DEG,
    MAX_YAW_DEG,
    FaceAttributes,
    face_attributes,
    image_rng,
    sample_attributes,
)
from .face_drawing import hair_colour, render_face

__all__ = [
    "ATTRIBUTES",
    "LABELS_FILE",
    "MAX_LIGHT_DEG",
    "MAX_ROLL_DEG",
    "MAX_YAW_DEG",
    "FaceAttributes",
    "contact_sheet",
    "face_attributes",
    "generate_dataset",
    "hair_colour",
    "image_rng",
    "load_labels",
    "render_batch",
    "render_face",
    "render_index",
    "sample_attributes",
]

LABELS_FILE = "labels.json"
LABELS_FORMAT = "anycost-synth-faces"


# ---------------------------------------------------------------------------------------------------------
# batches and datasets


def render_index(seed: int, index: int, res: int) -> tuple[np.ndarray, np.ndarray]:
    """Image ``index`` of the dataset with ``seed``: (uint8 array (res, res, 3), float32 labels)."""
    attrs = face_attributes(seed, index)
    return np.asarray(render_face(attrs, res)), attrs.labels()


def render_batch(seed: int, n: int, res: int, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images ``start`` .. ``start + n - 1`` in memory: uint8 (n, res, res, 3) and float32 labels
    (n, len(ATTRIBUTES)), identical to what ``generate_dataset`` writes for the same seed."""
    if n < 0:
        raise InputError(f"the number of images must be non-negative (got {n})")
    images = np.empty((n, res, res, 3), dtype=np.uint8)
    labels = np.empty((n, len(ATTRIBUTES)), dtype=np.float32)
    for k in range(n):
        images[k], labels[k] = render_index(seed, start + k, res)
    return images, labels


def _write_chunk(job: tuple[str, int, int, int, int]) -> list[list[float]]:
    out_dir, seed, res, lo, hi = job
    rows = []
    for i in range(lo, hi):
        attrs = face_attributes(seed, i)
        path = os.path.join(out_dir, f"{i:06d}.png")
        tmp = path + ".tmp"
        render_face(attrs, res).save(tmp, format="PNG", compress_level=4)
        os.replace(tmp, path)
        rows.append([round(float(x), 6) for x in attrs.labels()])
    return rows


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def generate_dataset(
    out_dir: str | os.PathLike,
    n: int,
    res: int,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write ``n`` portraits as ``000000.png`` … and their labels as ``labels.json`` (written last, so
    its presence means the set is complete). Returns the path of the labels file."""
    if n < 1:
        raise InputError(f"the number of images must be at least 1 (got {n})")
    if not 8 <= res <= 4096:
        raise InputError(f"resolution must be between 8 and 4096 pixels (got {res})")
    if seed < 0:
        raise InputError(f"the seed must be non-negative (got {seed})")
    if n > 999_999:
        raise InputError(f"at most 999999 images fit the file naming (got {n})")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(f"{out} is not empty; choose an empty folder or allow overwriting")
    out.mkdir(parents=True, exist_ok=True)
    stale = out / LABELS_FILE
    if stale.exists():
        stale.unlink()

    workers = _default_workers() if workers is None else int(workers)
    if workers < 1:
        raise InputError(f"workers must be at least 1 (got {workers})")
    chunk = max(1, min(64, n // (workers * 4) or 1))
    jobs = [(str(out), seed, res, lo, min(n, lo + chunk)) for lo in range(0, n, chunk)]
    rows: list[list[float]] = []
    t0 = time.perf_counter()
    done = 0

    def report(k: int) -> None:
        nonlocal done
        done += k
        if progress:
            rate = done / max(time.perf_counter() - t0, 1e-9)
            print(f"\r{done}/{n} images ({rate * 60:.0f}/min)", end="", file=sys.stderr, flush=True)

    if workers == 1 or len(jobs) == 1:
        for job in jobs:
            rows.extend(_write_chunk(job))
            report(job[4] - job[3])
    else:
        ctx = get_context("fork" if sys.platform == "linux" else "spawn")
        with ctx.Pool(min(workers, len(jobs))) as pool:
            for job, part in zip(jobs, pool.imap(_write_chunk, jobs), strict=True):
                rows.extend(part)
                report(job[4] - job[3])
    if progress:
        print(file=sys.stderr)

    meta = {
        "format": LABELS_FORMAT,
        "version": 1,
        "seed": seed,
        "resolution": res,
        "count": n,
        "attributes": list(ATTRIBUTES),
        "files": [f"{i:06d}.png" for i in range(n)],
        "labels": rows,
    }
    tmp = stale.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, separators=(",", ":")))
    os.replace(tmp, stale)
    return stale


def load_labels(folder: str | os.PathLike) -> tuple[list[str], tuple[str, ...], np.ndarray]:
    """Read ``labels.json``: (file names, attribute names, float32 matrix (count, n_attributes))."""
    path = Path(folder) / LABELS_FILE
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path} does not exist; is {folder} a synthetic-face folder?") from None
    except (OSError, ValueError) as e:
        raise InputError(f"{path} cannot be read: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != LABELS_FORMAT:
        raise InputError(f"{path} is not a synthetic-face label file")
    names = tuple(meta["attributes"])
    labels = np.asarray(meta["labels"], dtype=np.float32).reshape(len(meta["files"]), len(names))
    return list(meta["files"]), names, labels


def contact_sheet(images: Iterable[Image.Image | np.ndarray], columns: int = 8, pad: int = 2) -> Image.Image:
    """Tile images (all the same size) into one sheet."""
    tiles = [im if isinstance(im, Image.Image) else Image.fromarray(np.asarray(im)) for im in images]
    if not tiles:
        raise InputError("no images to put on a contact sheet")
    w, h = tiles[0].size
    cols = min(columns, len(tiles))
    rows = (len(tiles) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * (w + pad) + pad, rows * (h + pad) + pad), (255, 255, 255))
    for k, im in enumerate(tiles):
        if im.size != (w, h):
            im = im.resize((w, h), Image.LANCZOS)
        sheet.paste(im.convert("RGB"), (pad + (k % cols) * (w + pad), pad + (k // cols) * (h + pad)))
    return sheet
