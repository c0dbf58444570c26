"""Repair beside the forwarder: subscribers' NACKs answered from the packet cache, and
keyframe requests aggregated per track before they reach the publisher.

Legs report here (``RepairRequests``); what goes upstream leaves through the publisher leg
that ``upstream`` finds, what goes down through the down track's own sink.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

from . import rtcp
from .forwarder import BEHIND_LIMIT, fill_hole, frame_timestamp, resend
from .keyframe_replay import replay_keyframe
from .leg import Wire
from .publisher_leg import PublisherLeg
from .track import DownTrack, UpTrack

RESEND_MIN_INTERVAL = 0.1  # seconds between two retransmissions of one packet to one leg
MAX_AWAITED = 64  # NACKed numbers per subscriber kept while the publisher is asked for them
# A NACKed packet is sent up to this many times in all, half a round trip apart, unless
# the receiver says meanwhile that it has it: aiortc asks for a missing packet once, when
# the gap appears, so a lost retransmission used to wait for its next new gap. How many
# depends on the loss the receiver reports: enough that all are lost once in a thousand.
MIN_COPIES, MAX_COPIES = 3, 5
ALL_COPIES_LOST = 1e-3
CONGESTED_LOSS = 0.25
RESEND_AGAIN_MIN = 0.04  # seconds: above a local network's round trip plus scheduling
RESEND_AGAIN_MAX = 0.5
RESEND_AGAIN_UNKNOWN_RTT = 0.12
# Then, while the receiver says nothing (its next NACK stops or takes over the copies), a
# few more, 4 and 8 spacings later, congested or not: aiortc's next NACK waits for a new gap,
# and when loss ends there is none, so a packet whose copies were all lost (or that got none:
# a 20 % storm reported as 27 %) stalled it for seconds.
TAIL_COPIES = 2

CallLater = Callable[..., Any]  # loop.call_later's shape: (delay, callback, *args)


class Repair:
    def __init__(
        self,
        wire: Wire,
        upstream: Callable[[UpTrack], PublisherLeg | None],
        nack_repair: bool = True,
        keyframe_replay_age: float = 0.0,
        call_later: CallLater | None = None,
    ) -> None:
        self.wire = wire
        self.stats = wire.stats
        self._upstream = upstream
        self.nack_repair = nack_repair  # off only to measure what repair is worth
        self.keyframe_replay_age = keyframe_replay_age  # 0: joiners wait for a new keyframe
        self._call_later = call_later  # None: the running loop's (tests give their own)

    def start(self, down: DownTrack) -> None:
        """A subscriber's copy just became sendable: it starts at the track's latest
        keyframe from the cache if that is recent enough, else at the next one, asked for."""
        now = time.perf_counter()
        if not replay_keyframe(down, self.keyframe_replay_age, self.wire.sendto, self.stats, now):
            self.request_keyframe(down.up)

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

    def retransmit(self, down: DownTrack, lost: list[int], nack: bool = True) -> None:
        """Answer a subscriber's NACK from the packet cache (``nack``: ``lost`` is a NACK
        the subscriber sent, not numbers the relay kept for it).

        A packet the relay is still asking the publisher for is left alone: forwarded when
        it arrives, filled by ``upstream_gave_up`` if it never does. Only a filler (the
        packet is gone) means a broken picture, and a keyframe request.
        """
        if down.up.cache is None or not self.nack_repair:
            return
        now = time.perf_counter()
        sink = down.sink
        sendto = self.wire.sendto
        # A packet is resent at most once per round trip: receivers that repeat every
        # missing number in each NACK would otherwise multiply the load on a link that is
        # already dropping packets.
        interval = max(RESEND_MIN_INTERVAL, 1.5 * (sink.rtt_ms or 0.0) / 1000.0)
        filled = False
        if nack and down.resending:
            # What the receiver no longer asks for, it has: aiortc lists every missing
            # packet in each NACK; Chromium those due for a retry, and asks again itself.
            for seq in down.resending.difference(lost):
                down.resending.discard(seq)
                down.resent_at.pop(seq, None)
        for out_seq in lost:
            if not down.may_resend(out_seq, now, interval):
                continue
            if not sink.retransmit_budget.allow(now):
                break  # flood: the rest is ignored
            origin = down.source_of(out_seq)  # the layer or publisher it was sent from
            if origin is None:
                filled = fill_hole(down, out_seq, down.last_ts, sendto, self.stats) or filled
                continue
            source, seq_offset, ts_offset = origin
            in_seq = (out_seq - seq_offset) & 0xFFFF
            cache = source.cache
            rtp = cache.get(in_seq, now) if cache is not None else None
            if rtp is not None:
                if resend(down, rtp, seq_offset, ts_offset, sendto, self.stats):
                    down.resends += 1
                    self._resend_later(down, out_seq, now, 1)
                continue
            if _awaited_upstream(source, in_seq):
                down.resent_at.pop(out_seq, None)  # not answered yet: may be, as soon as it can
                if out_seq not in down.awaited:
                    down.awaited.append(out_seq)
                    if len(down.awaited) > MAX_AWAITED:
                        del down.awaited[0]
                continue
            timestamp = frame_timestamp(down, out_seq, now)
            filled = fill_hole(down, out_seq, timestamp, sendto, self.stats) or filled
        if filled:
            self.stats.nack_unanswerable += 1
            self.request_keyframe(down.up)

    def _resend_later(self, down: DownTrack, out_seq: int, sent: float, copies: int) -> None:
        """Send ``out_seq`` again half a round trip after ``sent`` unless the receiver
        asked for it again (a newer send owns it) or sent a NACK without it (it has it).

        Receiver reports cannot tell: a receiver counts duplicates as received, so the
        copies themselves hide a packet still missing from the cumulative loss."""
        sink = down.sink
        count = copies_for(sink.fraction_lost)
        tail = copies - count + 1  # 1, 2: the copies sent while the receiver is quiet
        if tail > TAIL_COPIES:
            down.resending.discard(out_seq)
            return
        down.resending.add(out_seq)
        rtt = down.sink.rtt_ms
        # Half a round trip: a resend lost in turn is repaired well within 300 ms at 100 ms
        # RTT, and copies are spaced enough that one short burst rarely takes them all.
        delay = RESEND_AGAIN_UNKNOWN_RTT if rtt is None else 0.5 * rtt / 1000.0
        delay = min(max(delay, RESEND_AGAIN_MIN), RESEND_AGAIN_MAX)
        if tail > 0:
            delay *= 2 << tail  # 4, then 8 spacings
        if self._call_later is None:
            self._call_later = asyncio.get_running_loop().call_later
        # One timer per resent packet: retransmissions are a few percent of the packets at
        # most and bounded per leg by its retransmit budget; the per-packet path has none.
        self._call_later(delay, self._resend_again, down, out_seq, sent, copies)

    def _resend_again(self, down: DownTrack, out_seq: int, sent: float, copies: int) -> None:
        if down.resent_at.get(out_seq) != sent:
            return  # asked for again (that send carries on) or received
        down.resending.discard(out_seq)
        if down.sink.closed:
            return  # the subscriber left (or the node is stopping) meanwhile
        now = time.perf_counter()
        sink = down.sink
        if not sink.retransmit_budget.allow(now):
            return
        if (down.last_seq - out_seq) & 0xFFFF > BEHIND_LIMIT:  # it may have had it long since
            return
        origin = down.source_of(out_seq)
        if origin is None:
            return
        source, seq_offset, ts_offset = origin
        cache = source.cache
        rtp = cache.get((out_seq - seq_offset) & 0xFFFF, now) if cache is not None else None
        if rtp is None or not resend(
            down, rtp, seq_offset, ts_offset, self.wire.sendto, self.stats
        ):
            return
        down.resent_at[out_seq] = now
        down.resends_again += 1
        self.stats.resends_again += 1
        self._resend_later(down, out_seq, now, copies + 1)

    def upstream_gave_up(self, up: UpTrack) -> None:
        """The publisher did not resend some packets in time. Subscribers that asked for
        them meanwhile get fillers now: aiortc NACKs a hole once, when it appears, and its
        jitter buffer then waits for it (about 2 s at Chromium's start) unless it comes."""
        for down in up.down_tracks:
            if down.awaited:
                waiting, down.awaited = down.awaited, []
                self.retransmit(down, waiting, nack=False)


def copies_for(fraction_lost: float | None) -> int:
    """Quick sends of a NACKed packet (the ``TAIL_COPIES`` slow ones come after) for a
    receiver that loses ``fraction_lost`` of its packets: 3 up to ~10 % loss, 5 at 20 %;
    one above ``CONGESTED_LOSS``, where loss is a link too small for what it is sent, and
    quick copies crowd out the media (a capped link decoded half the frames with them).
    A round trip above the path's lowest did not tell congestion apart: a busy receiver's
    reports inflate it too, and its copies stopped."""
    loss = fraction_lost or 0.0
    if loss > CONGESTED_LOSS:
        return 1
    if loss <= 0.1:
        return MIN_COPIES
    return min(MAX_COPIES, max(MIN_COPIES, math.ceil(math.log(ALL_COPIES_LOST) / math.log(loss))))


def _awaited_upstream(up: UpTrack, in_seq: int) -> bool:
    """Whether the relay is still NACKing the publisher for ``in_seq``: once it arrives it is
    forwarded, so the number must not be taken by a filler meanwhile."""
    return up.nacks is not None and in_seq in up.nacks.missing
