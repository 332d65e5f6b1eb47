"""W+ encoder: a ResNet backbone whose head regresses all style slots at once.

The layout (``conv1``, ``bn1``, ``layer1..4``, ``fc``, ``mean_latent``) matches the
published ResNet-50 18×512 encoder checkpoint (stored under ``state_dict``). Smaller
depths share the same code for the models this project trains itself.

Input: RGB images in [-1, 1], any square size (the published encoder saw 256²).
Output: W+ = fc(features).view(N, n_style, style_dim) + mean_latent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = None
        if stride != 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(planes * 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + idt)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + idt)


_DEPTHS = {
    10: (BasicBlock, (1, 1, 1, 1)),
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
}


@dataclass
class EncoderConfig:
    n_style: int = 18
    style_dim: int = 512
    depth: int = 50
    width: int = 64  # channels after the stem; 64 for the published encoder
    input_size: int = 256

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> EncoderConfig:
        return cls(**d)


class Encoder(nn.Module):
    def __init__(self, config: EncoderConfig | None = None, **kwargs):
        super().__init__()
        config = config or EncoderConfig(**kwargs)
        if config.depth not in _DEPTHS:
            raise ValueError(f"encoder depth must be one of {sorted(_DEPTHS)}")
        self.config = config
        block, layers = _DEPTHS[config.depth]
        w = config.width
        self.conv1 = nn.Conv2d(3, w, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.inplanes = w
        self.layer1 = self._make_layer(block, w, layers[0])
        self.layer2 = self._make_layer(block, w * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, w * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, w * 8, layers[3], stride=2)
        feat = w * 8 * block.expansion
        self.fc = nn.Linear(feat, config.n_style * config.style_dim)
        self.register_buffer("mean_latent", torch.zeros(config.style_dim))
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def _make_layer(self, block: type, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        layers = [block(self.inplanes, planes, stride)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(x, 3, stride=2, padding=1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] (N, 3, H, W) → W+ (N, n_style, style_dim)."""
        size = self.config.input_size
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out = self.fc(self.features(x)).view(x.shape[0], self.config.n_style, self.config.style_dim)
        return out + self.mean_latent
