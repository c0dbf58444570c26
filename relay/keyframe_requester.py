"""Collapses keyframe requests (PLI/FIR) from many subscribers into rate-limited upstream ones.

A request passes at once when none went upstream within ``interval`` (a lone joiner waits
for nothing but the publisher); later ones wait for the next allowed moment. A keyframe
that arrives meanwhile answers every request made before it, so subscribers joining in a
burst share the one asked for and the deferred request is not sent at all.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class KeyframeRequester:
    """At most one upstream request per ``interval`` seconds; later ones wait, none are lost."""

    interval: float = 0.5
    last_sent: float = -1e9
    pending: bool = False  # a request waits for the next allowed moment or a keyframe
    requested: int = 0  # subscriber requests seen
    sent: int = 0  # upstream requests made
    answered: int = 0  # deferred requests a keyframe answered before they went upstream

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

    def arrived(self) -> None:
        """A keyframe started (the fast path saw it while a request was pending): whoever
        asked before it gets it, so the deferred request has nothing left to ask for."""
        if self.pending:
            self.pending = False
            self.answered += 1
