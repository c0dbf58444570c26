"""Repair beside the forwarder: subscribers' NACKs answered from the packet cache, and
keyframe requests aggregated per track before they reach the publisher.

Legs report here (``RepairRequests``); what goes upstream leaves through the publisher leg
that ``upstream`` finds, what goes down through the down track's own sink.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from . import rtcp
from .forwarder import fill_hole, resend
from .leg import Wire
from .publisher_leg import PublisherLeg
from .track import DownTrack, UpTrack

RESEND_MIN_INTERVAL = 0.1  # seconds between two retransmissions of one packet to one leg


class Repair:
    def __init__(
        self,
        wire: Wire,
        upstream: Callable[[UpTrack], PublisherLeg | None],
        nack_repair: bool = True,
    ) -> None:
        self.wire = wire
        self.stats = wire.stats
        self._upstream = upstream
        self.nack_repair = nack_repair  # off only to measure what repair is worth

    def request_keyframe(self, up: UpTrack) -> None:
        """Ask the publisher for a keyframe, at most once per interval per stream."""
        now = time.monotonic()
        for stream in up.streams():  # a simulcast track: every layer
            if stream.kind == "video" and stream.keyframes.request(now):
                self.send_pli(stream)

    def send_pli(self, up: UpTrack) -> None:
        leg = self._upstream(up)
        if leg is not None and up.ssrc is not None:
            leg.send_rtcp(rtcp.pli(leg.rtcp_ssrc, up.ssrc))
            self.stats.keyframe_requests_sent += 1

    def retransmit(self, down: DownTrack, lost: list[int]) -> None:
        """Answer a subscriber's NACK from the packet cache; what is gone needs a keyframe."""
        if down.up.cache is None or not self.nack_repair:
            return
        now = time.perf_counter()
        sink = down.sink
        sendto = self.wire.sendto
        # A packet is resent at most once per round trip: receivers that repeat every
        # missing number in each NACK would otherwise multiply the load on a link that is
        # already dropping packets.
        interval = max(RESEND_MIN_INTERVAL, 1.5 * (sink.rtt_ms or 0.0) / 1000.0)
        missing = False
        for out_seq in lost:
            if not down.may_resend(out_seq, now, interval):
                continue
            if not sink.retransmit_budget.allow(now):
                return  # flood: the rest is ignored
            origin = down.source_of(out_seq)  # the layer or publisher it was sent from
            if origin is None:
                missing = True
                fill_hole(down, out_seq, sendto, self.stats)
                continue
            source, seq_offset, ts_offset = origin
            in_seq = (out_seq - seq_offset) & 0xFFFF
            rtp = source.cache.get(in_seq, now) if source.cache is not None else None
            if rtp is not None:
                resend(down, rtp, seq_offset, ts_offset, sendto, self.stats)
                continue
            missing = True
            if not _awaited_upstream(source, in_seq):
                fill_hole(down, out_seq, sendto, self.stats)
        if missing:
            self.stats.nack_unanswerable += 1
            self.request_keyframe(down.up)


def _awaited_upstream(up: UpTrack, in_seq: int) -> bool:
    """Whether the relay is still NACKing the publisher for ``in_seq``: once it arrives it is
    forwarded, so the number must not be taken by a filler meanwhile."""
    return up.nacks is not None and in_seq in up.nacks.missing
