"""Gaps in a publisher's sequence numbers: what to NACK upstream, and when to give up.

A gap is NACKed at once, then again every ``interval`` up to ``retries`` times; a packet
still missing after that, or a gap too wide to recover, makes recovery hopeless and the
caller asks for a keyframe instead. At most ``max_missing`` sequence numbers are tracked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_GAP = 512  # a wider jump is a restart or a long outage: ask for a keyframe


@dataclass(slots=True)
class NackTracker:
    interval: float = 0.04
    retries: int = 3
    max_missing: int = 256
    highest: int = -1
    missing: dict[int, list[float]] = field(default_factory=dict)  # seq -> [last NACK, tries]
    hopeless: bool = False  # set when recovery failed; the caller clears it

    def received(self, seq: int, now: float) -> list[int] | None:
        """Record a packet; returns newly missing sequence numbers to NACK now, if any."""
        if self.highest < 0:
            self.highest = seq
            return None
        delta = (seq - self.highest) & 0xFFFF
        if delta == 1:
            self.highest = seq
            return None
        if delta == 0 or delta >= 0x8000:  # duplicate or late: maybe a retransmission
            if self.missing:
                self.missing.pop(seq, None)
            return None
        self.highest = seq
        if delta > MAX_GAP:
            self.missing.clear()
            self.hopeless = True
            return None
        gap = [(seq - d) & 0xFFFF for d in range(min(delta - 1, self.max_missing), 0, -1)]
        for lost in gap:
            self.missing[lost] = [now, 1.0]
        while len(self.missing) > self.max_missing:
            del self.missing[next(iter(self.missing))]
            self.hopeless = True
        return gap

    def due(self, now: float) -> list[int]:
        """Sequence numbers to NACK again now; exhausted ones are dropped as hopeless."""
        again = []
        for seq, entry in list(self.missing.items()):
            if now - entry[0] < self.interval:
                continue
            if entry[1] >= self.retries:
                del self.missing[seq]
                self.hopeless = True
                continue
            entry[0] = now
            entry[1] += 1
            again.append(seq)
        return again
