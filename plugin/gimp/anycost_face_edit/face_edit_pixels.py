"""The pixels of the result layer, worked out without GIMP (standard library only).

The region travels as ``R'G'B'A u8``. On a 16/32-bit or linear image an opaque copy of every pixel
would round the ones the edit never touched, so the result layer is transparent wherever the edit
changed nothing: the composite then shows the source layer's own pixels at full precision there, and
semi-transparent source pixels are not laid over themselves a second time.
"""

from __future__ import annotations


def result_layer_pixels(result: bytes, original: bytes, mask: bytes | None = None) -> bytes:
    """``result`` (RGBA8) with alpha 0 where it equals ``original`` byte for byte or where the selection
    ``mask`` (A8, one byte per pixel; None: all selected) is 0. Colour bytes are kept as they are."""
    if len(result) != len(original) or len(result) % 4:
        raise ValueError(f"result ({len(result)} bytes) and original ({len(original)} bytes) must both be "
                         "the same whole number of RGBA8 pixels")
    if mask is not None and len(mask) * 4 != len(result):
        raise ValueError(f"the mask has {len(mask)} pixels, the region {len(result) // 4}")
    out = bytearray(result)
    # whole pixels compared as 32-bit words: one comparison per pixel rather than four
    new, old = memoryview(bytes(result)).cast("I"), memoryview(bytes(original)).cast("I")
    alpha = out[3::4]
    if mask is None:
        out[3::4] = bytes(0 if a == b else al for a, b, al in zip(new, old, alpha, strict=True))
    else:
        out[3::4] = bytes(0 if a == b or not m else al for a, b, m, al in zip(new, old, mask, alpha, strict=True))
    return bytes(out)
