"""Arithmetic work of a sub-generator, counted as real floating-point operations.

A multiply-add counts as 2 FLOPs. Work on zeros that an implementation may insert is not
counted: a stride-2 transposed convolution counts its kernel once per *input* pixel, and
the ×2 FIR upsampling of the skip branch counts only the taps that hit real samples.
Elementwise work (modulation, demodulation, noise, bias, activation) is included; it is
small next to the convolutions.
"""

from __future__ import annotations

from .channels import ChannelSpec
from .generator import Generator


def _modconv_flops(cin: int, cout: int, k: int, h_in: int, upsample: bool, demod: bool,
                   style_dim: int) -> tuple[int, int]:
    """(flops, output size) of one modulated conv on an h_in × h_in input."""
    flops = 2 * style_dim * cin  # modulation linear
    flops += cin * h_in * h_in  # x · s
    if upsample:
        h_out = 2 * h_in
        flops += 2 * k * k * cin * cout * h_in * h_in  # transposed conv, per input pixel
        taps = 16  # 4×4 blur on the (2h+1)² map, depthwise
        flops += 2 * taps * cout * h_out * h_out
    else:
        h_out = h_in
        flops += 2 * k * k * cin * cout * h_out * h_out
    if demod:
        flops += 2 * cin * cout + cout * h_out * h_out  # Σ s² w², then scale outputs
    return flops, h_out


def count_flops(G: Generator, res: int | None = None, channels: ChannelSpec = None) -> int:
    """FLOPs to render one image at ``res`` with ``channels`` (None = full), mapping excluded."""
    target = G.resolution if res is None else int(res)
    if target not in G.resolutions:
        raise ValueError(f"res must be one of {G.resolutions}")
    chans = G.resolve_channels(channels) or G.full_channels
    d = G.style_dim
    total = 0
    h = 4
    # conv1 + to_rgb1
    f, h = _modconv_flops(chans[0], chans[1], 3, h, False, True, d)
    total += f + 3 * chans[1] * h * h  # noise, bias, activation
    total += _modconv_flops(chans[1], 3, 1, h, False, False, d)[0] + 3 * h * h
    cin = chans[1]
    for b in range(len(G.to_rgbs)):
        ca, cb = chans[2 + 2 * b], chans[3 + 2 * b]
        f, h = _modconv_flops(cin, ca, 3, h, True, True, d)
        total += f + 3 * ca * h * h
        f, _ = _modconv_flops(ca, cb, 3, h, False, True, d)
        total += f + 3 * cb * h * h
        total += _modconv_flops(cb, 3, 1, h, False, False, d)[0] + 3 * h * h  # to_rgb + bias
        total += 2 * 4 * 3 * h * h + 3 * h * h  # skip upsample (4 real taps per output) + add
        if G._sle_src.get(h) is not None:
            lo = G._sle_src[h]
            cl = chans[1] if lo == 4 else chans[3 + 2 * (_log2(lo) - 3)]
            total += 2 * 16 * cl * cb + 2 * cb * cb + cb * h * h
        cin = cb
        if h == target:
            break
    return int(total)


def count_mapping_flops(G: Generator) -> int:
    """FLOPs of the mapping network for one z."""
    n_mlp = len(G.style) - 1
    return 2 * n_mlp * G.style_dim * G.style_dim


def _log2(x: int) -> int:
    return x.bit_length() - 1
