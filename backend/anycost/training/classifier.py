"""A small multi-label attribute classifier (sigmoid score per attribute, in [0, 1]).

It labels generated faces so that edit directions can be fitted from its scores, and it
measures how far a slider moves an attribute. Images of any size are resized to the
classifier's ``input_size``. Stored in a model file as the component ``classifier``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError, ModelFileError
from ..imageio import images_to_tensor
from ..io.modelfile import Component, build_and_load, read_model, save_model
from .classifier_training_config import ClassifierTrainConfig

COMPONENT = "classifier"


@dataclass
class ClassifierConfig:
    attributes: list[str]
    input_size: int = 64
    width: int = 32
    max_width: int = 256

    def __post_init__(self) -> None:
        self.attributes = [str(a) for a in self.attributes]
        if not self.attributes or len(set(self.attributes)) != len(self.attributes):
            raise ValueError("a classifier needs at least one attribute and unique attribute names")
        if self.input_size < 8 or self.input_size & (self.input_size - 1):
            raise ValueError(f"input_size must be a power of two ≥ 8, got {self.input_size}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ClassifierConfig:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


class AttributeClassifier(nn.Module):
    """Strided conv stack down to 4×4, global average pool, one logit per attribute."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        cin, size, w = 3, config.input_size, config.width
        while size > 4:
            cout = min(w, config.max_width)
            # No normalisation layers: instance/group statistics would erase global colour and
            # brightness, which several attributes (skin tone, hair colour, lighting) consist of.
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
                       nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(0.2)]
            cin, size, w = cout, size // 2, w * 2
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(cin, len(config.attributes))

    @property
    def attributes(self) -> list[str]:
        return self.config.attributes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] (N, 3, H, W), any size → logits (N, n_attr)."""
        return self.head(self.body(self._sized(x)).mean(dim=(2, 3)))

    def _sized(self, x: torch.Tensor) -> torch.Tensor:
        s = self.config.input_size
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        return x

    def features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Activations after each resolution stage (finest first) and the logits, for feature losses."""
        x = self._sized(x)
        feats = []
        for k, layer in enumerate(self.body):
            x = layer(x)
            if k % 4 == 3:  # a stage is conv, act, conv, act
                feats.append(x)
        return feats, self.head(x.mean(dim=(2, 3)))

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Scores in [0, 1] (N, n_attr)."""
        return torch.sigmoid(self(x))


# ---------------------------------------------------------------------- storage
def classifier_component(clf: AttributeClassifier, metrics: dict | None = None) -> Component:
    cfg = clf.config.to_dict()
    if metrics:
        cfg["metrics"] = metrics
    return Component(cfg, {k: v.detach().cpu().contiguous().clone() for k, v in clf.state_dict().items()})


def classifier_from_component(comp: Component, where: str = "model file") -> AttributeClassifier:
    try:
        cfg = ClassifierConfig.from_dict(comp.config)
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"{where}: classifier settings are invalid: {e}") from e
    clf = AttributeClassifier(cfg)
    build_and_load(clf, comp.tensors, f"{where} (classifier)")
    return clf.eval()


def load_classifier(path: str | os.PathLike, device: str | torch.device = "cpu") -> AttributeClassifier:
    mf = read_model(path)
    comp = mf.components.get(COMPONENT)
    if comp is None:
        raise ModelFileError(f"{path} holds no attribute classifier (components: {sorted(mf.components)})")
    return classifier_from_component(comp, str(path)).to(device)


# ---------------------------------------------------------------------- data
@dataclass
class LabelledData:
    """Images (N, 3, H, W) in [-1, 1] and labels (N, n_attr) in [0, 1]."""

    images: torch.Tensor
    labels: torch.Tensor
    attributes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.images.shape[0] != self.labels.shape[0]:
            raise InputError(f"{self.images.shape[0]} images but {self.labels.shape[0]} label rows")
        if self.labels.ndim != 2 or self.labels.shape[1] != len(self.attributes):
            raise InputError(f"labels must be (N, {len(self.attributes)}), got {tuple(self.labels.shape)}")
        if self.labels.numel() and (self.labels.min() < 0 or self.labels.max() > 1):
            raise InputError("labels must lie in [0, 1]")

    def split(self, val_fraction: float, seed: int = 0) -> tuple[LabelledData, LabelledData]:
        n = self.images.shape[0]
        n_val = max(1, int(round(n * val_fraction)))
        if n - n_val < 1:
            raise InputError(f"need more than {n} examples to hold out {val_fraction:.0%} for validation")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        va, tr = perm[:n_val], perm[n_val:]
        return (LabelledData(self.images[tr], self.labels[tr], self.attributes),
                LabelledData(self.images[va], self.labels[va], self.attributes))


def load_labelled_folder(folder: str | os.PathLike, labels_file: str | os.PathLike | None = None,
                         size: int | None = None) -> LabelledData:
    """A folder of images plus a labels table (see ``anycost.training.image_folder.read_labels``)."""
    from .image_folder import find_labels_file, load_images, read_labels

    folder = Path(folder)
    table = Path(labels_file) if labels_file else find_labels_file(folder)
    names, attributes, labels = read_labels(table)
    images = load_images([folder / n for n in names], size=size)
    return LabelledData(images, labels, attributes)


def synthetic_data(n: int, res: int, seed: int = 0) -> LabelledData:
    """Render ``n`` labelled synthetic faces (needs ``anycost.data.synth_faces``)."""
    try:
        from ..data import synth_faces
    except ImportError as e:
        raise InputError(f"the synthetic face renderer is not available: {e}") from e
    imgs, labels = synth_faces.render_batch(seed, n, res)
    return LabelledData(images_to_tensor(imgs), torch.as_tensor(labels, dtype=torch.float32),
                        list(synth_faces.ATTRIBUTES))


# ---------------------------------------------------------------------- training
def _batches(n: int, batch: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    while True:
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n - batch + 1 if n >= batch else 1, batch):
            yield perm[i:i + batch]


def random_blur(x: torch.Tensor, max_sigma: float, gen: torch.Generator) -> torch.Tensor:
    """Blur each image of half the batch with its own Gaussian sigma in (0, max_sigma]."""
    n = x.shape[0]
    sigma = torch.rand(n, generator=gen) * max_sigma
    sigma = torch.where(torch.rand(n, generator=gen) < 0.5, sigma, torch.zeros(n))
    radius = max(1, math.ceil(2.5 * max_sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t[None] / sigma.clamp_min(1e-3)[:, None]) ** 2)
    k = (k / k.sum(1, keepdim=True)).to(x)  # sigma 0 gives a delta kernel
    c = x.shape[1]
    # separable per-sample kernels as a grouped convolution over (sample, channel) groups
    flat = x.reshape(1, n * c, *x.shape[-2:])
    kh = k.repeat_interleave(c, 0)[:, None, None, :]
    kv = k.repeat_interleave(c, 0)[:, None, :, None]
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), kh, groups=n * c)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), kv, groups=n * c)
    return flat.reshape_as(x)


class _ClassifierSteps:
    """One classifier step at a time: a shuffled batch, flips and blur, binary cross-entropy."""

    def __init__(self, clf: AttributeClassifier, data: LabelledData, cfg: ClassifierTrainConfig):
        self.clf, self.labels, self.cfg = clf, data.labels, cfg
        self.device = torch.device(cfg.device)
        self.opt = torch.optim.AdamW(clf.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / max(1, cfg.steps))))
        self.gen = torch.Generator().manual_seed(cfg.seed)
        # Resize once to the classifier's input size: cheaper than resizing every batch.
        s = clf.config.input_size
        images = data.images
        if images.shape[-1] != s:
            images = torch.cat([F.interpolate(c, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
                                for c in images.split(256)])
        self.images = images
        self.batches = _batches(images.shape[0], min(cfg.batch, images.shape[0]), self.gen)
        self.mirror = torch.tensor([a in cfg.mirrored for a in data.attributes], device=self.device)
        self.step = 0

    def train_step(self) -> dict[str, float]:
        cfg, gen = self.cfg, self.gen
        idx = next(self.batches)
        x, y = self.images[idx].to(self.device), self.labels[idx].to(self.device)
        if cfg.flip:
            flip = torch.rand(x.shape[0], generator=gen) < 0.5
            flip = flip.to(self.device)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            y = torch.where(flip[:, None] & self.mirror[None], 1.0 - y, y)
        if cfg.blur > 0:
            x = random_blur(x, cfg.blur, gen)
        loss = F.binary_cross_entropy_with_logits(self.clf(x), y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        self.step += 1
        return {"loss": float(loss.detach())}


def train_classifier(data: LabelledData, cfg: ClassifierTrainConfig, *, input_size: int = 64, width: int = 32,
                     model: AttributeClassifier | None = None,
                     progress: Callable[[int, float], None] | None = None) -> AttributeClassifier:
    """Fit a classifier to soft labels with binary cross-entropy; returns it in eval mode.
    ``progress(step, loss)`` follows every step (counted from 0)."""
    from .harness import run_steps

    torch.manual_seed(cfg.seed)
    clf = model or AttributeClassifier(ClassifierConfig(list(data.attributes), input_size, width))
    if clf.attributes != list(data.attributes):
        raise InputError(f"classifier attributes {clf.attributes} differ from the data's {data.attributes}")
    clf = clf.to(torch.device(cfg.device)).train()
    run_steps(_ClassifierSteps(clf, data, cfg), cfg.steps, progress=False,
              on_step=(lambda s, logs: progress(s - 1, logs["loss"])) if progress is not None else None)
    return clf.eval()


@torch.no_grad()
def evaluate_classifier(clf: AttributeClassifier, data: LabelledData, batch: int = 128) -> dict[str, dict]:
    """Per attribute: mean absolute error of the score, accuracy at 0.5 and the label balance."""
    dev = next(clf.parameters()).device
    preds = torch.cat([clf.predict(x.to(dev)).cpu() for x in data.images.split(batch)])
    y = data.labels
    out = {}
    for j, name in enumerate(data.attributes):
        p, t = preds[:, j], y[:, j]
        out[name] = {
            "mae": float((p - t).abs().mean()),
            "accuracy": float(((p > 0.5) == (t > 0.5)).float().mean()),
            "positive_rate": float((t > 0.5).float().mean()),
        }
    return out


def save_classifier(path: str | os.PathLike, clf: AttributeClassifier, *, metrics: dict | None = None,
                    into: str | os.PathLike | None = None) -> Path:
    """Write the classifier alone, or ``into`` a copy of an existing model (other parts kept)."""
    comp = classifier_component(clf, metrics)
    if into is not None:
        from .model_update import update_model

        return update_model(into, path, components={COMPONENT: comp})
    return save_model(path, components={COMPONENT: comp}, info={"kind": "attribute-classifier"})
