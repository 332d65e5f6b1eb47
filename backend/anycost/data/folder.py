"""Training datasets that yield multi-resolution image pyramids.

``ImageFolderDataset`` reads a folder of images of any common format; ``SynthFaceStream`` renders
synthetic portraits on the fly. Both yield ``{resolution: float tensor (3, r, r) in [-1, 1]}`` for the
training resolution and every halving down to a minimum, with one random horizontal flip shared by all
levels of a sample.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from ..errors import InputError
from .synth_faces import ATTRIBUTES, face_attributes, render_face

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"})

# Labels that change sign under a horizontal flip (they are centred on 0.5).
MIRRORED_ATTRIBUTES = ("yaw", "roll", "lighting")


class EmptyFolderError(InputError):
    """A dataset folder holds no usable images."""


def pyramid_resolutions(resolution: int, min_resolution: int = 8) -> list[int]:
    """``resolution`` and each halving of it that is still at least ``min_resolution``, largest first."""
    if resolution < 1 or min_resolution < 1:
        raise InputError(f"resolutions must be positive (got {resolution} and {min_resolution})")
    if min_resolution > resolution:
        raise InputError(f"the minimum resolution {min_resolution} is above the resolution {resolution}")
    out = [int(resolution)]
    while out[-1] // 2 >= min_resolution and out[-1] % 2 == 0:
        out.append(out[-1] // 2)
    return out


def resolve_levels(
    resolution: int | None, min_resolution: int = 8, resolutions: Sequence[int] | None = None
) -> list[int]:
    """The pyramid levels, largest first: an explicit ``resolutions`` list, or ``resolution`` and its
    halvings down to ``min_resolution``."""
    if resolutions is not None:
        levels = sorted({int(r) for r in resolutions}, reverse=True)
        if not levels or levels[-1] < 1:
            raise InputError(f"resolutions must be positive integers (got {list(resolutions)})")
        if resolution is not None and int(resolution) != levels[0]:
            raise InputError(f"resolution {resolution} is not the largest of the resolutions {levels}")
        return levels
    if resolution is None:
        raise InputError("give a resolution (or a list of resolutions)")
    return pyramid_resolutions(int(resolution), min_resolution)


def scan_images(root: str | os.PathLike) -> list[Path]:
    """Image files under ``root`` (recursively, hidden entries skipped), sorted for a stable order."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root} is not a folder")
    found = []
    seen: set[str] = set()  # real paths of visited folders, so that symlink loops end
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                found.append(Path(dirpath) / name)
    found.sort(key=lambda p: p.relative_to(root).as_posix())
    return found


def to_rgb(img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Any Pillow image as 8-bit RGB: transparency is composited over ``background``, 16-bit and float
    grey levels are rescaled to 8 bits, palettes, CMYK and the rest are converted."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if mode == "F":
            scale = 255.0 if arr.size and np.nanmax(arr) <= 1.0 else 1.0
        elif mode.startswith("I;16") or (arr.size and arr.max() > 255):
            scale = 255.0 / 65535.0
        else:
            scale = 1.0
        arr = np.clip(np.nan_to_num(arr * scale) + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if (mode == "P" and "transparency" in img.info) or mode in ("PA", "LA", "La", "RGBa"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        base = Image.new("RGBA", img.size, (*background, 255))
        return Image.alpha_composite(base, img).convert("RGB")
    if img.mode == "1":
        img = img.convert("L")
    return img.convert("RGB")


def fit_square(img: Image.Image, fit: str, background: tuple[int, int, int]) -> Image.Image:
    """Centre-crop (``fit='crop'``) or pad with ``background`` (``fit='pad'``) to a square."""
    w, h = img.size
    if w == h:
        return img
    if fit == "crop":
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        return img.crop((left, top, left + s, top + s))
    s = max(w, h)
    canvas = Image.new("RGB", (s, s), background)
    canvas.paste(img, ((s - w) // 2, (s - h) // 2))
    return canvas


def pyramid_arrays(img: Image.Image, resolutions: Sequence[int]) -> list[np.ndarray]:
    """Each level is resized from the full square image with a Lanczos filter (antialiased)."""
    out = []
    for r in resolutions:
        level = img if img.size == (r, r) else img.resize((r, r), Image.LANCZOS, reducing_gap=3.0)
        out.append(np.asarray(level, dtype=np.uint8))
    return out


def arrays_to_tensors(levels: Sequence[np.ndarray], resolutions: Sequence[int], flip: bool) -> dict[int, torch.Tensor]:
    out = {}
    for r, a in zip(resolutions, levels, strict=True):
        if flip:
            a = a[:, ::-1]
        t = torch.from_numpy(np.array(a, dtype=np.uint8)).permute(2, 0, 1).float()  # np.array: a writable copy
        out[r] = t.div_(127.5).sub_(1.0)
    return out


class ImageFolderDataset(Dataset):
    """Images under ``root`` as pyramids ``{r: (3, r, r) tensor in [-1, 1]}`` for ``r`` in
    ``pyramid_resolutions(resolution, min_resolution)``, or in ``resolutions`` when that list is given.

    - ``fit``: ``"crop"`` takes the centred square, ``"pad"`` pads to a square with ``background``.
    - Transparent images are composited over ``background`` (white by default).
    - ``flip``: a random horizontal flip (probability 0.5, drawn from torch's generator so DataLoader
      seeding applies), the same for every level.
    - ``cache``: keep decoded, resized pyramids in memory (uint8), for small datasets.
    Files that cannot be read are skipped with one warning each; Pillow's decompression-bomb limit
    stays in force (such files count as unreadable).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        resolution: int | None = None,
        min_resolution: int = 8,
        *,
        resolutions: Sequence[int] | None = None,
        fit: str = "crop",
        flip: bool = True,
        cache: bool = False,
        background: tuple[int, int, int] = (255, 255, 255),
    ):
        if fit not in ("crop", "pad"):
            raise InputError(f"fit must be 'crop' or 'pad' (got {fit!r})")
        self.root = Path(root)
        self.resolutions = resolve_levels(resolution, min_resolution, resolutions)
        self.fit, self.flip, self.background = fit, flip, tuple(background)
        self.skipped: list[tuple[Path, str]] = []
        self._bad: set[int] = set()
        candidates = scan_images(self.root)
        if not candidates:
            raise EmptyFolderError(
                f"{self.root} holds no images (looked recursively for "
                f"{', '.join(sorted(e[1:] for e in IMAGE_EXTENSIONS))})"
            )
        self.files: list[Path] = []
        self._cache: dict[int, list[np.ndarray]] | None = {} if cache else None
        for path in candidates:
            try:
                levels = self._decode(path) if cache else self._probe(path)
            except _Unreadable as e:
                self._skip(path, str(e))
                continue
            if cache:
                self._cache[len(self.files)] = levels
            self.files.append(path)
        if not self.files:
            raise EmptyFolderError(f"none of the {len(candidates)} image files in {self.root} can be read")

    def _skip(self, path: Path, why: str) -> None:
        self.skipped.append((path, why))
        warnings.warn(f"skipping unreadable image {path}: {why}", stacklevel=3)

    @staticmethod
    def _probe(path: Path) -> None:
        try:
            with Image.open(path) as im:
                w, h = im.size
        except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as e:
            raise _Unreadable(str(e) or type(e).__name__) from None
        if w < 1 or h < 1:
            raise _Unreadable("empty image")

    def _decode(self, path: Path) -> list[np.ndarray]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    im.load()
                    im = ImageOps.exif_transpose(im) or im
                    rgb = to_rgb(im, self.background)
        except (
            OSError,
            ValueError,
            Image.DecompressionBombError,
            Image.DecompressionBombWarning,
            SyntaxError,
            EOFError,
        ) as e:
            raise _Unreadable(str(e) or type(e).__name__) from None
        return pyramid_arrays(fit_square(rgb, self.fit, self.background), self.resolutions)

    def __len__(self) -> int:
        return len(self.files)

    def _levels(self, index: int) -> list[np.ndarray]:
        if self._cache is not None:
            return self._cache[index]
        n = len(self.files)
        for k in range(n):  # an unreadable file is replaced by the next readable one
            i = (index + k) % n
            if i in self._bad:
                continue
            try:
                return self._decode(self.files[i])
            except _Unreadable as e:
                self._bad.add(i)
                self._skip(self.files[i], str(e))
        raise EmptyFolderError(f"none of the image files in {self.root} can be decoded")

    def __getitem__(self, index: int) -> dict[int, torch.Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        flip = self.flip and bool(torch.rand(()) < 0.5)
        return arrays_to_tensors(self._levels(index % len(self)), self.resolutions, flip)


class _Unreadable(Exception):
    pass


class SynthFaceStream(IterableDataset):
    """Synthetic portraits rendered on the fly: image ``start + k`` of the dataset with ``seed`` for
    k = 0, 1, … (forever when ``length`` is None). Each item is ``(pyramid, labels)`` with labels a
    float32 tensor ordered like ``ATTRIBUTES``, or just the pyramid when ``with_labels`` is false.
    DataLoader workers split the indices between them, so each image appears once. With ``flip``,
    a mirrored image also gets mirrored labels (yaw, roll, lighting → 1 − value)."""

    def __init__(
        self,
        resolution: int | None = None,
        min_resolution: int = 8,
        *,
        resolutions: Sequence[int] | None = None,
        seed: int = 0,
        start: int = 0,
        length: int | None = None,
        with_labels: bool = True,
        flip: bool = False,
    ):
        if start < 0 or (length is not None and length < 0):
            raise InputError("start and length must be non-negative")
        self.resolutions = resolve_levels(resolution, min_resolution, resolutions)
        self.seed, self.start, self.length = int(seed), int(start), length
        self.with_labels, self.flip = with_labels, flip
        self._mirror = torch.tensor([n in MIRRORED_ATTRIBUTES for n in ATTRIBUTES])

    def item(self, index: int, flip: bool = False):
        attrs = face_attributes(self.seed, index)
        img = render_face(attrs, self.resolutions[0])
        pyramid = arrays_to_tensors(pyramid_arrays(img, self.resolutions), self.resolutions, flip)
        if not self.with_labels:
            return pyramid
        labels = torch.from_numpy(attrs.labels())
        if flip:
            labels = torch.where(self._mirror, 1.0 - labels, labels)
        return pyramid, labels

    def __iter__(self) -> Iterator:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        k = wid
        while self.length is None or k < self.length:
            flip = self.flip and bool(torch.rand(()) < 0.5)
            yield self.item(self.start + k, flip)
            k += nw
