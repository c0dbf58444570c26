"""Collapses keyframe requests (PLI/FIR) from many subscribers into rate-limited upstream ones."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class KeyframeRequester:
    """At most one upstream request per ``interval`` seconds; later ones wait, none are lost."""

    interval: float = 0.5
    last_sent: float = -1e9
    pending: bool = False
    requested: int = 0  # subscriber requests seen
    sent: int = 0  # upstream requests made

    def request(self, now: float) -> bool:
        """Record a request; True if one should go upstream now."""
        self.requested += 1
        if now - self.last_sent >= self.interval:
            self.last_sent = now
            self.pending = False
            self.sent += 1
            return True
        self.pending = True
        return False

    def due(self, now: float) -> bool:
        """True if a deferred request is now allowed out (called from the periodic tick)."""
        if self.pending and now - self.last_sent >= self.interval:
            self.last_sent = now
            self.pending = False
            self.sent += 1
            return True
        return False
