"""Abuse limits of the service: what one peer may send and how much the backend holds."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from anycost_client.protocol import Limits


@dataclass(frozen=True)
class ServiceLimits:
    wire: Limits = field(default_factory=Limits)  # header/frame sizes, replay window
    max_region_pixels: int = 64 * 1024 * 1024
    max_sessions: int = 16
    max_sessions_per_peer: int = 8
    rate: float = 200.0  # messages per second per peer, sustained
    burst: float = 400.0  # messages a peer may send at once

    def describe(self) -> dict:
        return {
            "max_frame_bytes": self.wire.max_frame_bytes, "max_header_bytes": self.wire.max_header_bytes,
            "max_frames": self.wire.max_frames, "max_side": self.wire.max_side,
            "max_region_pixels": self.max_region_pixels, "max_sessions": self.max_sessions,
            "max_sessions_per_peer": self.max_sessions_per_peer, "rate": self.rate, "burst": self.burst,
            "clock_skew": self.wire.clock_skew,
        }


class RateLimiter:
    """Token bucket per peer. Also spaces out the error replies to a peer, so that a flood of
    bad messages cannot make the backend flood back."""

    def __init__(self, rate: float, burst: float, max_peers: int = 4096):
        self.rate, self.burst, self.max_peers = rate, burst, max_peers
        self._buckets: dict[bytes, list[float]] = {}  # peer → [tokens, last time]

    def allow(self, peer: bytes, cost: float = 1.0, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        b = self._buckets.get(peer)
        if b is None:
            if len(self._buckets) >= self.max_peers:
                self._forget(now)
            b = self._buckets[peer] = [self.burst, now]
        b[0] = min(self.burst, b[0] + (now - b[1]) * self.rate)
        b[1] = now
        if b[0] < cost:
            return False
        b[0] -= cost
        return True

    def _forget(self, now: float) -> None:
        # drop the peers whose buckets are full again: they hold no state worth keeping
        full = [p for p, (tok, t) in self._buckets.items() if tok + (now - t) * self.rate >= self.burst]
        for p in full or list(self._buckets)[: len(self._buckets) // 2]:
            del self._buckets[p]
