"""A subscriber's sequence numbers without the network: padding the relay drops, late packets
and NACKs, as Chromium's start (probing with padding between frames) produces them.

What the subscriber must see: numbers continuous from its first packet, no number for a
padding packet, every media packet under the number it was given when its neighbours were
numbered (a late one too), and fillers only for what the publisher never resent.
"""

from __future__ import annotations

import struct
import time

from relay.codecs import VP8
from relay.forwarder import forward_rtp
from relay.nack_tracker import NackTracker
from relay.packet_cache import PacketCache
from relay.repair import Repair
from relay.track import DownTrack, UpTrack

from .fakes import FakeSink, FakeTimers, FakeWire

SSRC = 0x1234


def _media(seq: int, ts: int, key: bool = False, marker: bool = False) -> bytes:
    descriptor = 0x10  # S=1, partition 0
    tag = 0x00 if key else 0x01
    body = bytes([descriptor, tag]) + seq.to_bytes(2, "big") + b"m" * 100
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | 96, seq, ts, SSRC) + body


def _padding(seq: int, ts: int) -> bytes:
    """Chromium's probe: padding only, the P bit and a last byte counting all of it."""
    return struct.pack("!BBHII", 0xA0, 96, seq, ts, SSRC) + b"\x00" * 254 + b"\xff"


class _Relay:
    """One published VP8 track, its cache and upstream gap tracking, and subscribers."""

    def __init__(self) -> None:
        self.up = UpTrack(
            sid="T", kind="video", codec=VP8, mid="0", publisher_sid="P", room="R", ssrc=SSRC
        )
        self.up.cache = PacketCache()
        self.up.nacks = NackTracker()
        self.wire = FakeWire()
        self.stats = self.wire.stats
        self.keyframes = 0
        self.timers = FakeTimers()
        self.repair = Repair(self.wire, lambda up: None, call_later=self.timers.call_later)
        self.repair.request_keyframe = self._count_keyframe  # type: ignore[method-assign]

    def _count_keyframe(self, up: UpTrack) -> None:
        self.keyframes += 1

    def subscriber(self) -> DownTrack:
        down = DownTrack(up=self.up, subscriber_sid="S", mid="0", payload_type=96, sink=FakeSink())
        down.active = True
        down.attach(self.up, 0.0)
        return down

    def arrive(self, rtp: bytes) -> None:
        """What the publisher leg does with a packet: gaps noted upstream, then forwarded."""
        seq, ts = struct.unpack_from("!HI", rtp, 2)
        now = time.perf_counter()
        assert self.up.nacks is not None
        self.up.nacks.received(seq, now)
        forward_rtp(self.up, rtp, seq, ts, self.wire.sendto, self.stats, now)

    def give_up_upstream(self) -> None:
        """The publisher never resent what is missing (as ``NackTracker.due`` ends it)."""
        assert self.up.nacks is not None
        self.up.nacks.missing.clear()
        self.repair.upstream_gave_up(self.up)

    def sent(self, to: DownTrack | None = None) -> list[tuple[int, int, bytes]]:
        """(out seq, out timestamp, payload) of everything sent (to one subscriber), in
        order; then forgotten."""
        out = [
            (*struct.unpack_from("!HI", p, 2), p[12:])
            for p in self.wire.sent
            if to is None or struct.unpack_from("!I", p, 8)[0] == to.ssrc
        ]
        if to is None:
            self.wire.sent.clear()
        return out


def _origin(payload: bytes) -> int:
    """The incoming sequence number a test media packet carries in its payload."""
    return int.from_bytes(payload[2:4], "big")


def _relative(sent: list[tuple[int, int, bytes]]) -> list[int]:
    first = sent[0][0]
    return [(s - first) & 0xFFFF for s, _, _ in sent]


def test_padding_between_frames_leaves_no_gap() -> None:
    relay = _Relay()
    relay.subscriber()
    relay.arrive(_media(100, 9000, key=True))
    relay.arrive(_media(101, 9000, marker=True))
    relay.arrive(_padding(102, 9000))
    relay.arrive(_media(103, 12000))
    relay.arrive(_media(104, 12000, marker=True))
    relay.arrive(_padding(105, 12000))
    relay.arrive(_padding(106, 12000))
    relay.arrive(_media(107, 15000, marker=True))
    sent = relay.sent()
    assert _relative(sent) == [0, 1, 2, 3, 4]
    assert [_origin(p) for _, _, p in sent] == [100, 101, 103, 104, 107]
    assert relay.stats.dropped["padding"] == 3


def test_a_probing_burst_of_padding_only_is_invisible_and_nacks_find_the_media() -> None:
    relay = _Relay()
    down = relay.subscriber()
    relay.arrive(_media(1000, 9000, key=True, marker=True))
    seq, ts = 1001, 9000
    for frame in range(40):  # Chromium while it probes: padding after nearly every frame
        for _ in range(frame % 4):
            relay.arrive(_padding(seq, ts))
            seq += 1
        ts += 3000
        relay.arrive(_media(seq, ts, marker=True))
        seq += 1
    sent = relay.sent()
    assert _relative(sent) == list(range(41))
    # a NACK for any number the subscriber saw, even from before dozens of bursts, is
    # answered with that very packet from the cache: no filler
    first = sent[0][0]
    relay.repair.retransmit(down, [(first + n) & 0xFFFF for n in (1, 5, 20, 39)])
    resent = relay.sent()
    assert [(s, p) for s, _, p in resent] == [(sent[n][0], sent[n][2]) for n in (1, 5, 20, 39)]
    assert relay.stats.holes_filled == 0 and relay.keyframes == 0


def test_a_viewer_joining_mid_probe_counts_from_its_first_packet() -> None:
    relay = _Relay()
    early = relay.subscriber()
    relay.arrive(_media(10, 1000, key=True, marker=True))
    relay.arrive(_padding(11, 1000))
    relay.arrive(_media(12, 4000, marker=True))
    relay.arrive(_padding(13, 4000))
    late = relay.subscriber()  # joins in the middle of the burst, waits for a keyframe
    relay.arrive(_padding(14, 4000))
    relay.arrive(_media(15, 7000, marker=True))  # a delta frame: not for the new viewer
    relay.arrive(_padding(16, 7000))
    relay.arrive(_media(17, 10000, key=True))
    relay.arrive(_padding(18, 10000))  # padding within the keyframe's burst (as paced)
    relay.arrive(_media(19, 10000, marker=True))
    relay.arrive(_padding(20, 10000))
    relay.arrive(_padding(21, 10000))
    relay.arrive(_media(22, 13000, marker=True))
    to_late = relay.sent(to=late)
    assert [_origin(p) for _, _, p in to_late] == [17, 19, 22]
    assert _relative(to_late) == [0, 1, 2]
    assert _relative(relay.sent(to=early)) == [0, 1, 2, 3, 4, 5]


def test_a_late_retransmission_after_padding_takes_its_own_number() -> None:
    relay = _Relay()
    down = relay.subscriber()
    relay.arrive(_media(500, 9000, key=True))
    # 501, the frame's last packet, is lost upstream; the relay NACKs it at once
    relay.arrive(_padding(502, 9000))  # Chromium probes meanwhile
    relay.arrive(_padding(503, 9000))
    relay.arrive(_media(504, 12000, marker=True))
    before = relay.sent()
    assert _relative(before) == [0, 2]  # the subscriber sees one hole: 501's number
    hole = (before[0][0] + 1) & 0xFFFF
    relay.repair.retransmit(down, [hole])  # still awaited upstream: nothing sent yet
    assert relay.sent() == [] and relay.keyframes == 0
    relay.arrive(_media(501, 9000, marker=True))  # the publisher's retransmission
    late = relay.sent()
    assert [(s, _origin(p)) for s, _, p in late] == [(hole, 501)]
    relay.arrive(_media(505, 15000, marker=True))
    assert _relative(before + late + relay.sent()) == [0, 2, 1, 3]
    relay.repair.retransmit(down, [hole])  # asked again later: the very packet, from cache
    assert [_origin(p) for _, _, p in relay.sent()] == [501]
    assert relay.stats.holes_filled == 0


def test_a_genuine_upstream_loss_is_still_filled() -> None:
    relay = _Relay()
    down = relay.subscriber()
    relay.arrive(_media(700, 9000, key=True))
    relay.arrive(_media(701, 9000, marker=True))
    relay.arrive(_media(703, 12000, marker=True))  # 702 lost upstream, for good
    relay.arrive(_padding(704, 12000))
    relay.arrive(_media(705, 15000, marker=True))
    sent = relay.sent()
    assert _relative(sent) == [0, 1, 3, 4]
    hole = (sent[0][0] + 2) & 0xFFFF
    relay.repair.retransmit(down, [hole])  # awaited upstream: no filler yet
    assert relay.sent() == [] and relay.stats.holes_filled == 0
    # aiortc NACKs a hole once, when it appears: when the publisher gives up, the hole
    # the subscriber asked for is filled without waiting for it to ask again
    relay.give_up_upstream()
    filled = relay.sent()
    assert [s for s, _, _ in filled] == [hole] and relay.stats.holes_filled == 1
    # the filler belongs to the frame around the hole (the previous packet's timestamp),
    # not to the newest frame: it must not make a frame of its own
    assert filled[0][1] == sent[1][1] and filled[0][2] == b"\x00\x00"
    assert relay.keyframes == 1


def test_late_packets_from_before_a_subscribers_start_are_not_forwarded() -> None:
    relay = _Relay()
    relay.arrive(_media(300, 9000, key=True))
    relay.arrive(_media(302, 9000, marker=True))  # 301 missing
    relay.subscriber()
    relay.arrive(_media(303, 12000, key=True, marker=True))
    relay.arrive(_media(301, 9000))  # late, from a frame the subscriber never started
    relay.arrive(_media(304, 15000, marker=True))
    assert [_origin(p) for _, _, p in relay.sent()] == [303, 304]


def test_late_padding_fills_its_own_number() -> None:
    relay = _Relay()
    relay.subscriber()
    relay.arrive(_media(50, 9000, key=True, marker=True))
    relay.arrive(_padding(52, 9000))  # 51 (padding too) is late
    relay.arrive(_media(53, 12000, marker=True))
    relay.arrive(_padding(51, 9000))
    sent = relay.sent()
    assert _relative(sent) == [0, 2, 1]  # the late probe closes its hole: nothing to NACK
    assert sent[2][2][-1] == 0xFF  # sent as the padding it is
