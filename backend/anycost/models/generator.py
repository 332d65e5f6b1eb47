"""The Anycost generator: StyleGAN2 config-f with multi-resolution outputs and sliceable channels."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
from torch import nn

from ..errors import RenderCancelled
from .channels import ChannelSpec, layer_resolutions, resolution_channels, resolve_channels
from .layers import ConstantInput, EqualLinear, PixelNorm, SkipExcitation, StyledConv, ToRGB

NoiseMode = Literal["const", "random"]


@dataclass
class GeneratorConfig:
    """Constructor settings; stored in model files so a generator rebuilds without code."""

    resolution: int = 1024
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: float = 2
    channel_max: int = 512
    lr_mlp: float = 0.01
    blur_kernel: tuple[int, ...] = (1, 3, 3, 1)
    # Skip-layer excitation pairs (low_res, high_res), FastGAN-style; empty for the official models.
    sle: list[tuple[int, int]] = field(default_factory=list)
    # Explicit full width per resolution; overrides multiplier/max when given (checkpoint inference).
    channels: dict[int, int] | None = None
    # Activations clamped to ±conv_clamp after each layer (StyleGAN2-ADA's conv_clamp, 256 in its
    # released models); None for no clamp (official Anycost models).
    conv_clamp: float | None = None
    # A stored truncation centre (the source model's tracked mean w, StyleGAN2-ADA's ``w_avg``):
    # a ``w_avg`` buffer that ``truncate`` uses when no centre is given.
    w_avg: bool = False

    def __post_init__(self) -> None:
        if self.resolution < 8 or self.resolution & (self.resolution - 1) or self.resolution > 1024:
            raise ValueError(f"resolution must be a power of two in 8..1024, got {self.resolution}")
        self.blur_kernel = tuple(int(t) for t in self.blur_kernel)
        self.sle = [(int(a), int(b)) for a, b in self.sle]
        for lo, hi in self.sle:
            if not (4 <= lo < hi <= self.resolution):
                raise ValueError(f"skip-layer excitation pair {(lo, hi)} does not fit resolution {self.resolution}")
        if self.channels is not None:
            self.channels = {int(k): int(v) for k, v in self.channels.items()}
        if self.conv_clamp is not None:
            self.conv_clamp = float(self.conv_clamp)
            if not self.conv_clamp > 0:
                raise ValueError(f"conv_clamp must be positive, got {self.conv_clamp}")
        self.w_avg = bool(self.w_avg)

    def resolution_channels(self) -> dict[int, int]:
        if self.channels is not None:
            return dict(self.channels)
        return resolution_channels(self.resolution, self.channel_multiplier, self.channel_max)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["blur_kernel"] = list(self.blur_kernel)
        d["sle"] = [list(p) for p in self.sle]
        if self.channels is not None:
            d["channels"] = {str(k): v for k, v in self.channels.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> GeneratorConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown generator settings: {sorted(unknown)}")
        return cls(**d)


class NoiseBuffers(nn.Module):
    """Fixed per-layer noise maps (``noises.noise_i``), as stored in checkpoints."""

    def __init__(self, sizes: list[int]):
        super().__init__()
        self.num = len(sizes)
        for i, s in enumerate(sizes):
            self.register_buffer(f"noise_{i}", torch.randn(1, 1, s, s))

    def get(self, i: int) -> torch.Tensor:
        return getattr(self, f"noise_{i}")


class Generator(nn.Module):
    """Anycost generator.

    ``synthesize`` renders any sub-generator: stop at any resolution ≥ 8 (returning that
    resolution's ToRGB image) and run on a prefix of each layer's channels.
    """

    def __init__(self, config: GeneratorConfig | None = None, **kwargs):
        super().__init__()
        if config is None:
            config = GeneratorConfig(**kwargs)
        elif kwargs:
            raise TypeError("pass either a GeneratorConfig or keyword settings, not both")
        self.config = config
        self.resolution = config.resolution
        self.style_dim = config.style_dim
        self.log_size = int(math.log2(config.resolution))
        self.n_style = self.log_size * 2 - 2
        self.num_layers = (self.log_size - 2) * 2 + 1
        ch = config.resolution_channels()
        self.channels = ch
        self.channel_max = max(ch.values())
        blur = config.blur_kernel

        self.style = nn.Sequential(
            PixelNorm(),
            *[EqualLinear(config.style_dim, config.style_dim, lr_mul=config.lr_mlp, activation=True)
              for _ in range(config.n_mlp)],
        )
        clamp = config.conv_clamp
        self.input = ConstantInput(ch[4])
        self.conv1 = StyledConv(ch[4], ch[4], 3, config.style_dim, blur_kernel=blur, clamp=clamp)
        self.to_rgb1 = ToRGB(ch[4], config.style_dim, upsample=False, clamp=clamp)

        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_ch = ch[4]
        for i in range(3, self.log_size + 1):
            out_ch = ch[2 ** i]
            self.convs.append(StyledConv(in_ch, out_ch, 3, config.style_dim, upsample=True, blur_kernel=blur,
                                         clamp=clamp))
            self.convs.append(StyledConv(out_ch, out_ch, 3, config.style_dim, blur_kernel=blur, clamp=clamp))
            self.to_rgbs.append(ToRGB(out_ch, config.style_dim, blur_kernel=blur, clamp=clamp))
            in_ch = out_ch

        sizes = [4] + [2 ** (3 + i // 2) for i in range(self.num_layers - 1)]
        self.noises = NoiseBuffers(sizes)
        if config.w_avg:
            self.register_buffer("w_avg", torch.zeros(config.style_dim))

        if config.sle:
            self.sle = nn.ModuleDict({str(hi): SkipExcitation(ch[lo], ch[hi]) for lo, hi in config.sle})
        self._sle_src = {hi: lo for lo, hi in config.sle}
        self._sle_lows = {lo for lo, _ in config.sle}
        self._mean_w_cache: dict[tuple[int, int], torch.Tensor] = {}

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self._mean_w_cache.clear()  # derived from the mapping weights being replaced
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # ------------------------------------------------------------------ properties
    @property
    def resolutions(self) -> list[int]:
        """Output resolutions ``synthesize`` can stop at."""
        return [2 ** i for i in range(3, self.log_size + 1)]

    @property
    def full_channels(self) -> list[int]:
        """Full width of every sliceable layer, in module order."""
        return [self.channels[r] for r in layer_resolutions(self.resolution)]

    def resolve_channels(self, channels: ChannelSpec) -> list[int] | None:
        return resolve_channels(channels, self.full_channels, self.resolution, self.channel_max)

    # ------------------------------------------------------------------ latents
    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z (N, D) or (N, k, D) → w of the same shape."""
        return self.style(z)

    def sample_z(self, n: int, seed: int | None = None, device: torch.device | str | None = None) -> torch.Tensor:
        """Standard-normal latents; the same seed always gives the same z (CPU RNG, any device)."""
        g = torch.Generator().manual_seed(int(seed)) if seed is not None else None
        z = torch.randn(n, self.style_dim, generator=g)
        return z.to(device if device is not None else self._device())

    @torch.no_grad()
    def mean_w(self, n: int = 10000, seed: int = 0) -> torch.Tensor:
        """Mean of mapping(z) over ``n`` seeded samples, shape (1, D); cached per (n, seed)."""
        key = (n, seed)
        if key not in self._mean_w_cache:
            z = self.sample_z(n, seed)
            ws = [self.mapping(chunk) for chunk in z.split(4096)]
            self._mean_w_cache[key] = torch.cat(ws).mean(0, keepdim=True)
        return self._mean_w_cache[key].to(self._device())

    @property
    def truncation_center(self) -> torch.Tensor:
        """What truncation pulls towards, (1, D): the stored ``w_avg`` when the model has one (the
        source model's own tracked mean), else ``mean_w()``."""
        if self.config.w_avg:
            return self.w_avg[None]
        return self.mean_w()

    def truncate(self, w: torch.Tensor, psi: float, center: torch.Tensor | None = None,
                 cutoff: int | None = None) -> torch.Tensor:
        """Pull w towards ``center`` (``truncation_center`` by default): center + psi·(w − center).

        ``cutoff`` truncates only the first ``cutoff`` style slots (StyleGAN2's
        ``truncation_cutoff``: coarse layers pulled in, fine detail left as it is); the result is
        then W+ (N, n_style, D)."""
        if cutoff is not None:
            if not 0 <= int(cutoff) <= self.n_style:
                raise ValueError(f"truncation cutoff must be in 0..{self.n_style}, got {cutoff}")
            cutoff = int(cutoff)
        if psi == 1 or cutoff == 0:
            return w
        if center is None:
            center = self.truncation_center
        if cutoff is None:
            while center.ndim < w.ndim:
                center = center.unsqueeze(1)
            return center + psi * (w - center)
        w = self.to_w_plus(w)
        c = center if center.ndim == 3 else center.unsqueeze(1)
        pulled = c + psi * (w - c)
        return torch.cat([pulled[:, :cutoff], w[:, cutoff:]], dim=1)

    def to_w_plus(self, w: torch.Tensor) -> torch.Tensor:
        """Broadcast w (N, D) or (N, 1, D) to W+ (N, n_style, D); W+ passes through."""
        if w.ndim == 2:
            w = w.unsqueeze(1)
        if w.ndim != 3 or w.shape[-1] != self.style_dim:
            raise ValueError(f"expected w of shape (N, {self.style_dim}) or (N, k, {self.style_dim}), "
                             f"got {tuple(w.shape)}")
        if w.shape[1] == 1:
            return w.expand(-1, self.n_style, -1)
        if w.shape[1] != self.n_style:
            raise ValueError(f"W+ needs {self.n_style} style slots, got {w.shape[1]}")
        return w

    def mix_styles(self, w1: torch.Tensor, w2: torch.Tensor, crossover: int) -> torch.Tensor:
        """Style mixing: slots < crossover from w1, the rest from w2."""
        a, b = self.to_w_plus(w1), self.to_w_plus(w2)
        if not 0 <= crossover <= self.n_style:
            raise ValueError(f"crossover must be in 0..{self.n_style}")
        return torch.cat([a[:, :crossover], b[:, crossover:]], dim=1)

    def styles_from_seed(self, seed: int, n: int = 1, truncation: float = 1.0,
                         truncation_cutoff: int | None = None) -> torch.Tensor:
        """Deterministic W+ for a seed (seed, seed+1, … for n > 1)."""
        z = torch.cat([self.sample_z(1, seed + i) for i in range(n)])
        with torch.no_grad():
            w = self.truncate(self.mapping(z), truncation, cutoff=truncation_cutoff)
        return self.to_w_plus(w)

    # ------------------------------------------------------------------ synthesis
    def synthesize(self, w_plus: torch.Tensor, *, res: int | None = None, channels: ChannelSpec = None,
                   noise: NoiseMode | list[torch.Tensor] = "const",
                   generator: torch.Generator | None = None,
                   impl: Literal["auto", "reference", "fast"] = "auto",
                   cancel: Callable[[], bool] | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Render W+ (or w) to an image in [-1, 1] of shape (N, 3, res, res).

        ``impl='auto'`` uses the fast inference engine on CPU when no gradient can flow
        (same numbers to ~1e-5, several times faster) and the differentiable reference path
        otherwise; ``'reference'`` / ``'fast'`` force one (``'fast'`` never records autograd).
        ``cancel`` is asked between layers; when it answers True the render stops with
        ``RenderCancelled`` (a preview nobody waits for any more). ``dtype=torch.bfloat16`` runs the
        fast CPU path's feature maps in bfloat16 (previews on CPUs with native bf16; the image stays
        float32); the reference path ignores it.
        """
        if impl not in ("auto", "reference", "fast"):
            raise ValueError(f"impl must be 'auto', 'reference' or 'fast', got {impl!r}")
        target = self.resolution if res is None else int(res)
        if target not in self.resolutions:
            raise ValueError(f"res must be one of {self.resolutions}, got {res}")
        chans = self.resolve_channels(channels)
        styles = self.to_w_plus(w_plus)
        noises = self._noises(noise, styles.shape[0], generator)
        if impl == "fast" or (impl == "auto" and self._fast_path_applies(styles, noises)):
            from .fast_synthesis import synthesize_fast

            return synthesize_fast(self, styles, target, chans, noises, cancel=cancel,
                                   dtype=None if dtype == torch.float32 else dtype)
        return self._synthesize_reference(styles, target, chans, noises, cancel)

    def _fast_path_applies(self, styles: torch.Tensor, noises: list[torch.Tensor]) -> bool:
        if styles.device.type != "cpu":
            return False
        if not torch.is_grad_enabled():
            return True
        return not (styles.requires_grad or any(t.requires_grad for t in noises)
                    or any(p.requires_grad for p in self.parameters()))

    def forward(self, w_plus: torch.Tensor, res: int | None = None, channels: ChannelSpec = None,
                noise: NoiseMode = "const") -> torch.Tensor:
        return self.synthesize(w_plus, res=res, channels=channels, noise=noise)

    def _noises(self, noise: NoiseMode | list[torch.Tensor], batch: int,
                generator: torch.Generator | None) -> list[torch.Tensor]:
        if isinstance(noise, list):
            if len(noise) != self.num_layers:
                raise ValueError(f"need {self.num_layers} noise maps, got {len(noise)}")
            return noise
        if noise == "const":
            return [self.noises.get(i) for i in range(self.num_layers)]
        if noise == "random":
            dev = self._device()
            out = []
            for i in range(self.num_layers):
                s = self.noises.get(i).shape[-1]
                out.append(torch.randn(batch, 1, s, s, generator=generator).to(dev))
            return out
        raise ValueError(f"noise must be 'const', 'random' or a list of maps, got {noise!r}")

    def _synthesize_reference(self, styles: torch.Tensor, target: int, chans: list[int] | None,
                              noises: list[torch.Tensor], cancel: Callable[[], bool] | None = None) -> torch.Tensor:
        def c(i: int) -> int | None:
            return None if chans is None else chans[i]

        n = styles.shape[0]
        out = self.input(n, c(0))
        out = self.conv1(out, styles[:, 0], noises[0], c(1))
        skip = self.to_rgb1(out, styles[:, 1])
        feats = {4: out} if 4 in self._sle_lows else {}
        i = 1
        for b, to_rgb in enumerate(self.to_rgbs):
            if cancel is not None and cancel():
                raise RenderCancelled
            conv_a, conv_b = self.convs[2 * b], self.convs[2 * b + 1]
            out = conv_a(out, styles[:, i], noises[2 * b + 1], c(2 + 2 * b))
            out = conv_b(out, styles[:, i + 1], noises[2 * b + 2], c(3 + 2 * b))
            r = out.shape[-1]
            if r in self._sle_src:
                out = self.sle[str(r)](out, feats[self._sle_src[r]])
            if r in self._sle_lows:
                feats[r] = out
            skip = to_rgb(out, styles[:, i + 2], skip)
            if r == target:
                break
            i += 2
        return skip

    def _device(self) -> torch.device:
        return self.input.input.device
