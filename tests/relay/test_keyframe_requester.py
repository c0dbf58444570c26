"""Keyframe requests toward a publisher without the network: the throttle per stream, and
subscribers joining in a burst sharing the keyframe one of them asked for."""

from __future__ import annotations

import struct

from relay.codecs import VP8
from relay.forwarder import forward_rtp
from relay.keyframe_requester import KeyframeRequester
from relay.packet_cache import PacketCache
from relay.repair import Repair
from relay.track import DownTrack, UpTrack

from .fakes import FakeSink, FakeWire

SSRC = 0x1234


def test_the_first_request_passes_at_once() -> None:
    requester = KeyframeRequester(interval=0.5)
    assert requester.request(100.0)
    assert requester.sent == 1 and not requester.pending


def test_requests_within_the_interval_wait_for_the_next_allowed_moment() -> None:
    requester = KeyframeRequester(interval=0.5)
    assert requester.request(10.0)
    assert not requester.request(10.1)
    assert requester.pending
    assert not requester.due(10.4)
    assert requester.due(10.5)
    assert not requester.due(10.6)  # one deferred request, sent once
    assert requester.sent == 2


def test_a_keyframe_answers_the_requests_made_before_it() -> None:
    requester = KeyframeRequester(interval=0.5)
    assert requester.request(10.0)  # the first joiner asks
    assert not any(requester.request(10.0 + i * 0.005) for i in range(1, 10))  # the burst
    requester.arrived()  # the keyframe the first one asked for starts them all
    assert not requester.pending
    assert not requester.due(10.5) and not requester.due(11.0)
    assert requester.sent == 1 and requester.requested == 10 and requester.answered == 1


def test_a_request_after_the_keyframe_still_gets_one_of_its_own() -> None:
    requester = KeyframeRequester(interval=0.5)
    assert requester.request(10.0)
    requester.arrived()  # nothing pending: the keyframe answered the request that went up
    assert requester.answered == 0
    assert not requester.request(10.2)  # came after it: waits for the next moment
    assert requester.due(10.5)
    assert requester.sent == 2


def test_a_lost_request_is_asked_again_once_the_interval_is_over() -> None:
    """The publisher never answered (the PLI was lost): the deferred one goes out."""
    requester = KeyframeRequester(interval=0.5)
    assert requester.request(10.0)
    assert not requester.request(10.05)
    assert requester.due(10.5)


class _Publisher:
    """Where the repair sends its PLIs: counts them."""

    def __init__(self) -> None:
        self.rtcp_ssrc = 1
        self.plis = 0

    def send_rtcp(self, data: bytes) -> None:
        self.plis += 1


def _vp8(seq: int, ts: int, key: bool) -> bytes:
    body = bytes([0x10, 0x00 if key else 0x01]) + b"m" * 100  # S=1 partition 0; P bit
    return struct.pack("!BBHII", 0x80, 96, seq, ts, SSRC) + body


def test_joiners_in_a_burst_share_one_request_through_the_fast_path() -> None:
    """Ten subscribers start while the keyframe the first asked for is on its way: one
    PLI goes up, the keyframe starts all ten, and the tick has nothing left to send."""
    up = UpTrack(sid="T", kind="video", codec=VP8, mid="0", publisher_sid="P", room="R", ssrc=SSRC)
    up.cache = PacketCache()
    publisher = _Publisher()
    wire = FakeWire()
    repair = Repair(wire, lambda track: publisher)  # type: ignore[arg-type, return-value]
    forward_rtp(up, _vp8(1, 0, key=True), 1, 0, wire.sendto, wire.stats, 0.0)
    forward_rtp(up, _vp8(2, 3000, key=False), 2, 3000, wire.sendto, wire.stats, 0.0)
    downs = []
    for i in range(10):
        down = DownTrack(up=up, subscriber_sid=f"S{i}", mid="0", payload_type=96, sink=FakeSink())
        down.active = True
        down.attach(up, 0.0)
        repair.request_keyframe(up)  # what activating a subscriber does
        downs.append(down)
    assert publisher.plis == 1 and up.keyframes.pending
    forward_rtp(up, _vp8(3, 6000, key=False), 3, 6000, wire.sendto, wire.stats, 0.0)
    assert not any(d.started for d in downs) and up.keyframes.pending  # not a keyframe
    forward_rtp(up, _vp8(4, 9000, key=True), 4, 9000, wire.sendto, wire.stats, 0.0)
    assert all(d.started for d in downs)
    assert not up.keyframes.pending  # answered: the tick sends nothing more
    assert not up.keyframes.due(up.keyframes.last_sent + up.keyframes.interval)
    assert wire.stats.keyframe_requests_sent == 1
