"""Token bucket used to limit data messages per participant."""

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
