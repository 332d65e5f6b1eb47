"""Training data streams: an image folder, synthetic faces rendered on the fly, or tensors.

Every stream yields ``{res: (B, 3, res, res) tensor in [-1, 1]}`` for the whole resolution
pyramid and has a small ``state_dict`` (epoch and position) so a resumed run sees exactly the
batches it would have seen. Under data parallelism each rank reads its own shard.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..imageio import images_to_tensor


def pyramid(images: torch.Tensor, resolutions: Sequence[int]) -> dict[int, torch.Tensor]:
    """Area-downsampled copies of square images at each resolution (≤ the input size)."""
    top = images.shape[-1]
    out = {}
    for r in resolutions:
        if r > top:
            raise ValueError(f"cannot build a {r}px level from {top}px images")
        out[r] = images if r == top else F.interpolate(images, size=(r, r), mode="area")
    return out


class EpochSampler:
    """Seeded per-epoch permutations, sharded by rank; resumable from (epoch, position)."""

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1):
        if n < 1:
            raise InputError("the training data holds no images")
        self.n, self.seed, self.rank, self.world = n, seed, rank, world
        self.epoch = 0
        self.pos = 0
        self._order = self._shard(0)

    def _shard(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        shard = perm[self.rank::self.world]
        return shard or perm[: 1]

    def take(self, k: int) -> list[int]:
        out = []
        while len(out) < k:
            if self.pos >= len(self._order):
                self.epoch += 1
                self.pos = 0
                self._order = self._shard(self.epoch)
            take = min(k - len(out), len(self._order) - self.pos)
            out += self._order[self.pos:self.pos + take]
            self.pos += take
        return out

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._order = self._shard(self.epoch)


class TensorStream:
    """Images already in memory, (N, 3, R, R) in [-1, 1]; mirrored copies double the set."""

    def __init__(self, images: torch.Tensor, resolutions: Sequence[int], batch: int, seed: int = 0,
                 rank: int = 0, world: int = 1, flip: bool = True):
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[-1] != images.shape[-2]:
            raise InputError(f"training images must be (N, 3, R, R), got {tuple(images.shape)}")
        self.images = images.float()
        self.resolutions = list(resolutions)
        self.batch = batch
        self.flip = flip
        self.sampler = EpochSampler(len(images) * (2 if flip else 1), seed, rank, world)

    def __len__(self) -> int:
        return len(self.images)

    def next_batch(self) -> dict[int, torch.Tensor]:
        idx = self.sampler.take(self.batch)
        n = len(self.images)
        imgs = torch.stack([self.images[i % n].flip(-1) if i >= n else self.images[i] for i in idx])
        return pyramid(imgs, self.resolutions)

    def state_dict(self) -> dict:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state)


class FolderStream:
    """An image folder through ``anycost.data.folder``; the dataset returns one pyramid per item."""

    def __init__(self, folder: str | Path, resolution: int, resolutions: Sequence[int], batch: int,
                 seed: int = 0, rank: int = 0, world: int = 1):
        from ..data import folder as folder_mod

        self.dataset = _make_folder_dataset(folder_mod, Path(folder), resolution, list(resolutions))
        self.batch = batch
        self.sampler = EpochSampler(len(self.dataset), seed, rank, world)
        self.resolutions = list(resolutions)

    def __len__(self) -> int:
        return len(self.dataset)

    def next_batch(self) -> dict[int, torch.Tensor]:
        items = [self.dataset[i] for i in self.sampler.take(self.batch)]
        return {r: torch.stack([it[r] for it in items]).float() for r in self.resolutions}

    def state_dict(self) -> dict:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state)


def _make_folder_dataset(mod, folder: Path, resolution: int, resolutions: list[int]):
    # Small sets (few-shot) are decoded once and kept in memory; large ones are read per item.
    cache = len(mod.scan_images(folder)) <= CACHE_LIMIT
    return mod.ImageFolderDataset(folder, resolutions=sorted(resolutions, reverse=True), cache=cache)


# Image folders up to this many files are decoded once and cached as uint8 pyramids.
CACHE_LIMIT = 2000


class SynthStream:
    """Synthetic faces (``anycost.data.synth_faces``) rendered on the fly.

    ``pool`` > 0 renders that many faces once and samples from them (a fixed small set, as for
    few-shot training); otherwise every batch is new faces, rank-sharded by image index, and
    ``labels`` holds the last batch's labels (``synth_faces.ATTRIBUTES`` order).
    """

    def __init__(self, resolution: int, resolutions: Sequence[int], batch: int, seed: int = 0,
                 rank: int = 0, world: int = 1, pool: int = 0):
        from ..data import synth_faces

        self.render = synth_faces.render_batch
        self.resolution = resolution
        self.resolutions = list(resolutions)
        self.batch, self.seed, self.rank, self.world = batch, seed, rank, world
        self.counter = 0
        self.pool = None
        self.labels: torch.Tensor | None = None
        if pool > 0:
            imgs, _ = self.render(seed, pool, resolution)
            self.pool = TensorStream(images_to_tensor(imgs), resolutions, batch, seed, rank, world)

    def next_batch(self) -> dict[int, torch.Tensor]:
        if self.pool is not None:
            return self.pool.next_batch()
        start = (self.counter * self.world + self.rank) * self.batch
        self.counter += 1
        imgs, labels = self.render(self.seed, self.batch, self.resolution, start=start)
        self.labels = torch.from_numpy(labels)
        return pyramid(images_to_tensor(imgs), self.resolutions)

    @property
    def has_labels(self) -> bool:
        """Whether ``labels`` follows each batch (faces rendered on the fly, not a fixed pool)."""
        return self.pool is None

    def state_dict(self) -> dict:
        return self.pool.state_dict() if self.pool is not None else {"counter": self.counter}

    def load_state_dict(self, state: dict) -> None:
        if self.pool is not None:
            self.pool.load_state_dict(state)
        else:
            self.counter = int(state["counter"])


def open_data(spec: str, resolution: int, resolutions: Sequence[int], batch: int, seed: int = 0,
              rank: int = 0, world: int = 1):
    """``DIR`` (image folder), ``synth:faces`` (on the fly) or ``synth:faces:N`` (N fixed faces)."""
    if not spec:
        raise InputError("no training data: pass --data DIR or --data synth:faces")
    if spec.startswith("synth:"):
        parts = spec.split(":")
        if parts[1] != "faces" or len(parts) > 3:
            raise InputError(f"unknown synthetic data {spec!r}; use synth:faces or synth:faces:N")
        try:
            pool = int(parts[2]) if len(parts) == 3 else 0
        except ValueError as e:
            raise InputError(f"synth:faces:N needs a whole number of faces, got {parts[2]!r}") from e
        return SynthStream(resolution, resolutions, batch, seed, rank, world, pool=pool)
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise InputError(f"training data folder not found: {path}")
    return FolderStream(path, resolution, resolutions, batch, seed, rank, world)
