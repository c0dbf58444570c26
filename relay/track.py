"""Published tracks (up) and their per-subscriber copies (down): plain state, no I/O.

An ``UpTrack`` is what a publisher sends on its publisher leg; a ``DownTrack`` is one
subscriber's view of it, with its own SSRC and the offsets that make its sequence numbers
and timestamps continuous across pauses and publisher changes.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from .codecs import Codec
from .keyframe_requester import KeyframeRequester
from .nack_tracker import NackTracker
from .packet_cache import PacketCache


def random_ssrc() -> int:
    return secrets.randbits(32) or 1


@dataclass(slots=True)
class ReceiveStats:
    """RFC 3550 appendix A.1 bookkeeping for the receiver reports we send publishers."""

    base_seq: int = -1
    max_seq: int = 0
    cycles: int = 0
    received: int = 0
    expected_prior: int = 0
    received_prior: int = 0
    jitter: float = 0.0
    last_transit: float | None = None
    last_sr_mid32: int = 0  # middle 32 bits of the last SR's NTP timestamp
    last_sr_at: float = 0.0  # monotonic arrival time of that SR

    def update(self, seq: int) -> None:
        if self.base_seq < 0:
            self.base_seq = seq
            self.max_seq = seq
        else:
            delta = (seq - self.max_seq) & 0xFFFF
            if delta < 0x8000:
                if seq < self.max_seq:
                    self.cycles += 0x10000
                self.max_seq = seq
        self.received += 1

    def update_jitter(self, arrival_units: float, timestamp: int) -> None:
        transit = arrival_units - timestamp
        if self.last_transit is not None:
            d = abs(transit - self.last_transit)
            self.jitter += (d - self.jitter) / 16.0
        self.last_transit = transit

    @property
    def extended_max(self) -> int:
        return self.cycles + self.max_seq

    def interval_loss(self) -> tuple[int, int]:
        """(fraction lost 0-255 since the last report, cumulative lost); starts a new interval."""
        expected = self.extended_max - self.base_seq + 1
        lost = max(0, expected - self.received)
        expected_interval = expected - self.expected_prior
        received_interval = self.received - self.received_prior
        self.expected_prior = expected
        self.received_prior = self.received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        return fraction, min(lost, 0x7FFFFF)


@dataclass(slots=True, eq=False)
class UpTrack:
    sid: str
    kind: str
    codec: Codec  # as the publisher sends it (its payload type)
    mid: str
    publisher_sid: str
    room: str
    ssrc: int | None  # None until the first packet binds it (offers without a=ssrc)
    name: str = ""
    muted: bool = False
    down_tracks: list[DownTrack] = field(default_factory=list)
    stats: ReceiveStats = field(default_factory=ReceiveStats)
    keyframes: KeyframeRequester = field(default_factory=KeyframeRequester)
    cache: PacketCache | None = None  # video: answers subscribers' NACKs
    nacks: NackTracker | None = None  # video: gaps to NACK upstream
    packets: int = 0
    octets: int = 0

    def add_down(self, down: DownTrack) -> None:
        self.down_tracks = [*self.down_tracks, down]  # copy-on-write: the fast path iterates

    def remove_down(self, down: DownTrack) -> None:
        self.down_tracks = [d for d in self.down_tracks if d is not down]


@dataclass(slots=True, eq=False)
class DownTrack:
    """One subscriber's copy of an UpTrack. ``sink`` is the subscriber leg (opaque here)."""

    up: UpTrack
    subscriber_sid: str
    mid: str
    payload_type: int
    sink: Any
    ssrc: int = field(default_factory=random_ssrc)
    active: bool = False  # the subscriber has accepted the m-line carrying this SSRC
    waiting_keyframe: bool = True
    started: bool = False
    seq_offset: int = 0
    ts_offset: int = 0
    last_seq: int = field(default_factory=lambda: secrets.randbits(16))
    last_ts: int = field(default_factory=lambda: secrets.randbits(32))
    packets_sent: int = 0
    octets_sent: int = 0
    lost_reported: int = 0  # the subscriber's cumulative loss in its previous report
    lost_repaired_at: int = 0  # cumulative loss already answered with a keyframe

    def unrepaired_loss(self, cumulative_lost: int, fraction_lost: int) -> bool:
        """True when the subscriber's reports show holes that retransmission did not fill.

        Receivers count retransmitted packets as received, so repaired loss disappears
        from the cumulative count. If the count stays above what was already answered
        while no new loss happens, packets are missing for good (some receivers only NACK
        on new gaps, so a lost retransmission at the end of a loss burst is never asked
        again): only a keyframe gets that subscriber decoding again.
        """
        stuck = cumulative_lost > self.lost_repaired_at and cumulative_lost == self.lost_reported
        self.lost_reported = cumulative_lost
        if stuck and fraction_lost == 0 and self.up.kind == "video":
            self.lost_repaired_at = cumulative_lost
            return True
        return False

    def continue_from(self, previous: DownTrack) -> None:
        """Take over a previous source's numbering on the same m-line (publisher switch)."""
        self.ssrc = previous.ssrc
        self.last_seq = previous.last_seq
        self.last_ts = previous.last_ts
        self.started = previous.started
        self.packets_sent = previous.packets_sent
        self.octets_sent = previous.octets_sent

    def start_at(self, seq: int, timestamp: int) -> None:
        """Continue this leg's numbering from the incoming packet (seq, timestamp)."""
        self.seq_offset = (self.last_seq + 1 - seq) & 0xFFFF
        # One tick later than the last timestamp sent keeps timestamps monotonic.
        step = 1 if self.started else 0
        self.ts_offset = (self.last_ts + step - timestamp) & 0xFFFFFFFF
        self.started = True
        self.waiting_keyframe = False
