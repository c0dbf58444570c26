"""Rate limits: a token bucket per participant (data messages, WebSocket messages), and a
count per key and second for sources that are not participants yet (STUN requests per IP
address, joins per client IP)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class TokenBucket:
    rate: float  # tokens per second
    burst: float
    tokens: float = -1.0
    updated: float = 0.0

    def allow(self, now: float, cost: float = 1.0) -> bool:
        if self.tokens < 0:
            self.tokens = self.burst
            self.updated = now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


class PerKeyWindow:
    """At most ``limit`` events per key in each window of ``window`` seconds; 0: no limit.
    The counts are forgotten at every new window, so memory is bounded by the keys seen in
    one window (a flood of spoofed sources included)."""

    __slots__ = ("_counts", "_started", "limit", "window")

    def __init__(self, limit: int, window: float = 1.0) -> None:
        self.limit = limit
        self.window = window
        self._counts: dict[str, int] = {}
        self._started = 0.0

    def allow(self, key: str, now: float) -> bool:
        if not self.limit:
            return True
        if now - self._started >= self.window:
            self._counts.clear()
            self._started = now
        count = self._counts.get(key, 0) + 1
        self._counts[key] = count
        return count <= self.limit
