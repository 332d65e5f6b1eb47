"""Channel configurations of an Anycost generator.

A configuration is one output width per sliceable layer, in module order: the constant
input, ``conv1``, ``convs.0``, ``convs.1``, … (two entries per resolution). ToRGB layers are
never sliced on their output.
"""

from __future__ import annotations

from collections.abc import Sequence

# Channel base of the published generators: width at each resolution for channel
# multiplier 1 before the ``channel_max`` cap.
BASE_CHANNELS: dict[int, int] = {
    4: 4096, 8: 2048, 16: 1024, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16,
}

# Uniform ratios the published models were trained with; any ratio in (0, 1] is accepted.
STANDARD_RATIOS: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)

ChannelSpec = float | Sequence[int] | None


def resolution_channels(resolution: int, channel_multiplier: float, channel_max: int) -> dict[int, int]:
    """Full width at each resolution 4..resolution."""
    out = {}
    r = 4
    while r <= resolution:
        out[r] = min(channel_max, int(BASE_CHANNELS[r] * channel_multiplier))
        r *= 2
    return out


def layer_resolutions(resolution: int) -> list[int]:
    """Resolution of every sliceable layer, in module order."""
    res = []
    r = 4
    while r <= resolution:
        res += [r, r]
        r *= 2
    return res


def uniform_channels(full_channels: Sequence[int], resolution: int, channel_max: int, ratio: float) -> list[int]:
    """The published uniform rule: every resolution scaled by ``ratio`` from the channel base."""
    if not 0.0 < float(ratio) <= 1.0:
        raise ValueError(f"channel ratio must be in (0, 1], got {ratio}")
    mult = full_channels[-1] / BASE_CHANNELS[resolution]
    out = []
    for r, full in zip(layer_resolutions(resolution), full_channels, strict=True):
        c = min(channel_max, int(BASE_CHANNELS[r] * ratio * mult))
        out.append(max(1, min(c, full)))
    return out


def resolve_channels(spec: ChannelSpec, full_channels: Sequence[int], resolution: int,
                     channel_max: int) -> list[int] | None:
    """Turn ``None`` / a ratio / a per-layer list into a validated per-layer list (None = full)."""
    if spec is None:
        return None
    if isinstance(spec, bool):
        raise TypeError("channels must be None, a ratio or a per-layer list")
    if isinstance(spec, int | float):
        if float(spec) == 1.0:
            return None
        return uniform_channels(full_channels, resolution, channel_max, float(spec))
    chans = [int(c) for c in spec]
    if len(chans) != len(full_channels):
        raise ValueError(f"flexible channel list needs {len(full_channels)} entries (one per layer), "
                         f"got {len(chans)}")
    for i, (c, full) in enumerate(zip(chans, full_channels, strict=True)):
        if not 1 <= c <= full:
            raise ValueError(f"layer {i}: {c} channels is outside 1..{full}")
    return chans
