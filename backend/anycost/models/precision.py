"""Reduced precision where the CPU does it natively: bfloat16 previews.

On CPUs with native bf16 dot products (AVX512-BF16 or AMX) the fast render path runs about twice
as fast in bfloat16, at an error of about 1e-2 on the image. Whether previews use it is decided per
model and machine by measurement (``editing.session.Editor.preview_precision``); this module only
knows whether the hardware can.
"""

from __future__ import annotations

import os
from functools import lru_cache

BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native_bf16() -> bool:
    """True where the CPU multiplies bfloat16 natively. ``ANYCOST_BF16=0`` / ``=1`` overrides the check."""
    forced = os.environ.get("ANYCOST_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    return any(f in cpu_flags() for f in BF16_FLAGS)
