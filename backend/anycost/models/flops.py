"""Arithmetic work of a sub-generator: real floating-point operations (``count_flops``), and
multiply-accumulates as the published Anycost files count them (``count_published_macs``).

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


def count_published_macs(G: Generator, res: int | None = None, channels: ChannelSpec = None) -> int:
    """Multiply-accumulates of one render from z as the published Anycost search files count them
    (their ``macs``): a profiler's count of the reference implementation's operations.

    Unlike ``count_flops`` it counts the work on inserted zeros, as that implementation runs it:
    the stride-2 transposed convolution per pixel of its (2h+1)² output, and the ×2 upsampling of
    the skip branch as a transposed convolution plus a 4×4 blur at the doubled size. It also counts
    the mapping network, each modulation's linear layer at the layer's full input width, the weight
    modulation and demodulation products, and one product per output value for noise and activation;
    additions are not counted. On the published config-f files it agrees to better than 1e-8.
    """
    target = G.resolution if res is None else int(res)
    if target not in G.resolutions:
        raise ValueError(f"res must be one of {G.resolutions}")
    chans = G.resolve_channels(channels) or G.full_channels
    full = G.full_channels
    d = G.style_dim

    def modulation(cin_full: int) -> int:  # linear, weight · scale, bias · lr
        return 2 * d * cin_full + cin_full

    def styled(cin: int, cout: int, cin_full: int, h_out: int, upsample: bool) -> int:
        k = 9
        macs = modulation(cin_full) + 3 * cout * cin * k  # modulate, scale, demodulate the weight
        if upsample:
            h_in = h_out // 2
            macs += cout * (2 * h_in + 1) ** 2 * cin * k + 16 * cout * h_out * h_out  # transposed conv, blur
        else:
            macs += cout * h_out * h_out * cin * k
        return macs + cout * h_out * h_out + h_out * h_out  # activation gain, noise weight

    def to_rgb(cin: int, cin_full: int, h: int, skip: bool) -> int:
        macs = modulation(cin_full) + 2 * 3 * cin + 3 * h * h * cin
        return macs + (3 * h * h * (4 + 16) if skip else 0)  # skip: zero-insertion conv + blur

    n_mlp = len(G.style) - 1
    total = d + n_mlp * (2 * d * d + 2 * d)  # pixel norm, then per layer: weight · scale, linear, bias, gain
    h = 4
    total += styled(chans[0], chans[1], full[0], h, False) + to_rgb(chans[1], full[1], h, False)
    cin, cin_full = chans[1], full[1]
    for b in range(len(G.to_rgbs)):
        ca, cb = chans[2 + 2 * b], chans[3 + 2 * b]
        h *= 2
        total += styled(cin, ca, cin_full, h, True) + styled(ca, cb, full[2 + 2 * b], h, False)
        total += to_rgb(cb, full[3 + 2 * b], h, True)
        if G._sle_src.get(h) is not None:  # few-shot models only; not in the published files
            lo = G._sle_src[h]
            cl = chans[1] if lo == 4 else chans[3 + 2 * (_log2(lo) - 3)]
            total += 16 * cl * cb + cb * cb + cb * h * h
        cin, cin_full = cb, full[3 + 2 * b]
        if h == target:
            break
    return int(total)


def count_mapping_flops(G: Generator) -> int:
    """FLOPs of the mapping network for one z."""
    n_mlp = len(G.style) - 1
    return 2 * n_mlp * G.style_dim * G.style_dim


def _log2(x: int) -> int:
    return x.bit_length() - 1
