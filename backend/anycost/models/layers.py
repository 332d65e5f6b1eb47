"""Building blocks of the StyleGAN2 / Anycost generator.

Names of modules, parameters and buffers follow the official checkpoint layout so a
state dict loads without renaming. Every layer that owns channels can run on a prefix of
them (Anycost channel slicing): the output width is passed in explicitly, the input width
is read off the incoming tensor, and the equalised-lr scale stays that of the full layer.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)


def make_kernel(taps: tuple[int, ...] | list[int]) -> torch.Tensor:
    """Separable FIR kernel (outer product of ``taps``), normalised to sum 1."""
    k = torch.tensor(taps, dtype=torch.float32)
    k = k[None, :] * k[:, None]
    return k / k.sum()


def fused_lrelu(x: torch.Tensor, bias: torch.Tensor | None, channel_dim: int = 1) -> torch.Tensor:
    """Bias, leaky ReLU (0.2) and the sqrt(2) gain that keeps activations unit-variance."""
    if bias is not None:
        shape = [1] * x.ndim
        shape[channel_dim] = bias.shape[0]
        x = x + bias.view(shape)
    return F.leaky_relu(x, 0.2) * SQRT2


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Reference upsample → pad → FIR → downsample on NCHW input (depthwise).

    Straightforward and differentiable; the fast inference path replaces it where it
    matters.
    """
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    kh, kw = kernel.shape
    weight = torch.flip(kernel, (0, 1)).to(x.dtype).view(1, 1, kh, kw).expand(c, 1, kh, kw)
    x = F.conv2d(x, weight, groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x * x, dim=-1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate (weights stored at N(0,1)/lr_mul)."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = (1.0 / math.sqrt(in_dim)) * lr_mul
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation:
            out = F.linear(x, self.weight * self.scale)
            return fused_lrelu(out, None if self.bias is None else self.bias * self.lr_mul, x.ndim - 1)
        bias = None if self.bias is None else self.bias * self.lr_mul
        return F.linear(x, self.weight * self.scale, bias)


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int, out_channels: int | None = None) -> torch.Tensor:
        x = self.input if out_channels is None else self.input[:, :out_channels]
        return x.expand(batch, -1, -1, -1)


class Blur(nn.Module):
    def __init__(self, taps: tuple[int, ...], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        self.register_buffer("kernel", make_kernel(taps) * (upsample_factor ** 2))
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    def __init__(self, taps: tuple[int, ...], factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(taps) * (factor ** 2))
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class ModulatedConv2d(nn.Module):
    """Style-modulated convolution; optional demodulation and ×2 transposed upsampling.

    Computed by modulating activations rather than weights (x·s → shared conv → ·d), which
    is exact, works for any batch size without grouped convolutions, and keeps autograd
    cheap for training.
    """

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False,
                 blur_kernel: tuple[int, ...] = (1, 3, 3, 1)):
        super().__init__()
        self.in_channel = in_channel
        self.out_channel = out_channel
        self.kernel_size = kernel_size
        self.demodulate = demodulate
        self.upsample = upsample
        self.scale = 1.0 / math.sqrt(in_channel * kernel_size ** 2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1.0)
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)

    def sliced_weight(self, out_channels: int, in_channels: int) -> torch.Tensor:
        """Scaled (out, in, k, k) weight restricted to the first channels."""
        return self.weight[0, :out_channels, :in_channels] * self.scale

    def forward(self, x: torch.Tensor, style: torch.Tensor, out_channels: int | None = None) -> torch.Tensor:
        cin = x.shape[1]
        cout = self.out_channel if out_channels is None else out_channels
        s = self.modulation(style)[:, :cin]  # (N, cin)
        w = self.sliced_weight(cout, cin)  # (cout, cin, k, k)
        x = x * s[:, :, None, None].to(x.dtype)
        if self.upsample:
            x = F.conv_transpose2d(x, w.transpose(0, 1).to(x.dtype), stride=2)
        else:
            x = F.conv2d(x, w.to(x.dtype), padding=self.padding)
        if self.demodulate:
            # d[n, o] = 1/sqrt(sum_{i,k} (w[o,i,k] s[n,i])^2 + eps)
            wsq = w.square().sum(dim=(2, 3))  # (cout, cin)
            d = torch.rsqrt(s.square() @ wsq.t() + 1e-8)  # (N, cout)
            x = x * d[:, :, None, None].to(x.dtype)
        if self.upsample:
            x = self.blur(x)
        return x


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return x + self.weight * noise


class FusedLeakyReLU(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_lrelu(x, self.bias[: x.shape[1]])


class StyledConv(nn.Module):
    """Modulated conv → noise → bias + scaled leaky ReLU [→ clamp to ±clamp]."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 upsample: bool = False, blur_kernel: tuple[int, ...] = (1, 3, 3, 1), clamp: float | None = None):
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, kernel_size, style_dim,
                                    upsample=upsample, blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)
        self.clamp = clamp

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor,
                out_channels: int | None = None) -> torch.Tensor:
        x = self.conv(x, style, out_channels)
        x = self.noise(x, noise)
        x = self.activate(x)
        return x if self.clamp is None else x.clamp(-self.clamp, self.clamp)


class ToRGB(nn.Module):
    """1×1 modulated conv (no demodulation) + bias [→ clamp], plus the upsampled skip image."""

    def __init__(self, in_channel: int, style_dim: int, upsample: bool = True,
                 blur_kernel: tuple[int, ...] = (1, 3, 3, 1), clamp: float | None = None):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.clamp = clamp

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias
        if self.clamp is not None:
            out = out.clamp(-self.clamp, self.clamp)
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class EqualConv2d(nn.Module):
    """Plain conv with equalised learning rate, sliceable on both sides."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, padding: int = 0,
                 bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.scale = 1.0 / math.sqrt(in_channel * kernel_size ** 2)
        self.padding = padding
        self.bias = nn.Parameter(torch.zeros(out_channel)) if bias else None

    def forward(self, x: torch.Tensor, out_channels: int | None = None) -> torch.Tensor:
        cout = self.weight.shape[0] if out_channels is None else out_channels
        w = self.weight[:cout, : x.shape[1]] * self.scale
        b = None if self.bias is None else self.bias[:cout]
        return F.conv2d(x, w, b, padding=self.padding)


class SkipExcitation(nn.Module):
    """Skip-layer excitation (FastGAN): a coarse feature map gates a fine one per channel."""

    def __init__(self, low_channel: int, high_channel: int):
        super().__init__()
        self.conv1 = EqualConv2d(low_channel, high_channel, 4)
        self.conv2 = EqualConv2d(high_channel, high_channel, 1)

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        g = F.adaptive_avg_pool2d(low, 4)
        g = F.leaky_relu(self.conv1(g, high.shape[1]), 0.1)
        g = torch.sigmoid(self.conv2(g, high.shape[1]))
        return high * g
