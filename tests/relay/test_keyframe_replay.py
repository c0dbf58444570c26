"""A joiner's first picture from the packet cache, without the network: the latest keyframe
and what followed, in the joiner's numbering, then the live packets continuing it; and the
cases where the relay asks the publisher instead (too old, a hole, too long, muted)."""

from __future__ import annotations

import itertools
import struct
import time

from relay.codecs import VP8
from relay.forwarder import forward_rtp
from relay.keyframe_replay import MAX_PACKETS, replay_keyframe
from relay.packet_cache import PacketCache
from relay.repair import Repair
from relay.track import DownTrack, UpTrack

from .fakes import FakeSink, FakeTimers, FakeWire

SSRC = 0x1234


class _Publisher:
    rtcp_ssrc = 1

    def __init__(self) -> None:
        self.plis = 0

    def send_rtcp(self, data: bytes) -> None:
        self.plis += 1


def _vp8(seq: int, ts: int, key: bool = False, start: bool = True) -> bytes:
    descriptor = 0x10 if start else 0x00  # S=1 (partition 0) on a frame's first packet
    body = bytes([descriptor, 0x00 if key else 0x01]) + seq.to_bytes(2, "big") + b"m" * 100
    return struct.pack("!BBHII", 0x80, 96, seq, ts, SSRC) + body


def _padding(seq: int, ts: int) -> bytes:
    return struct.pack("!BBHII", 0xA0, 96, seq, ts, SSRC) + b"\x00" * 254 + b"\xff"


class _Relay:
    def __init__(self, max_age: float = 0.5) -> None:
        self.up = UpTrack(
            sid="T", kind="video", codec=VP8, mid="0", publisher_sid="P", room="R", ssrc=SSRC
        )
        self.up.cache = PacketCache()
        self.wire = FakeWire()
        self.publisher = _Publisher()
        self.repair = Repair(
            self.wire,
            lambda up: self.publisher,  # type: ignore[arg-type, return-value]
            keyframe_replay_age=max_age,
            call_later=FakeTimers().call_later,
        )

    def arrive(self, rtp: bytes, at: float | None = None) -> None:
        seq, ts = struct.unpack_from("!HI", rtp, 2)
        now = time.perf_counter() if at is None else at
        forward_rtp(self.up, rtp, seq, ts, self.wire.sendto, self.wire.stats, now)

    def join(self) -> DownTrack:
        down = DownTrack(up=self.up, subscriber_sid="S", mid="0", payload_type=96, sink=FakeSink())
        down.active = True
        down.attach(self.up, 0.0)
        self.repair.start(down)  # what activating a subscriber does
        return down

    def sent(self, to: DownTrack) -> list[tuple[int, int]]:
        """(out seq, incoming seq carried in the payload) sent to ``to``."""
        return [
            (struct.unpack_from("!H", p, 2)[0], int.from_bytes(p[14:16], "big"))
            for p in self.wire.sent
            if struct.unpack_from("!I", p, 8)[0] == to.ssrc
        ]


def _frames(relay: _Relay, first_seq: int, frames: int, key_first: bool = True) -> int:
    """Two packets a frame; the first frame a keyframe. Returns the next sequence number."""
    seq = first_seq
    for frame in range(frames):
        relay.arrive(_vp8(seq, frame * 3000, key=key_first and frame == 0))
        relay.arrive(_vp8(seq + 1, frame * 3000, start=False))
        seq += 2
    return seq


def _continuous(sent: list[tuple[int, int]]) -> bool:
    return all((b[0] - a[0]) & 0xFFFF == 1 for a, b in itertools.pairwise(sent))


def test_a_joiner_gets_the_latest_keyframe_and_what_followed_at_once() -> None:
    relay = _Relay()
    _frames(relay, 100, 3)  # a keyframe, then two more frames
    next_seq = _frames(relay, 106, 4)  # a newer keyframe, then three more frames
    down = relay.join()
    replayed = relay.sent(down)
    assert [incoming for _, incoming in replayed] == list(range(106, 114))  # from the newest
    assert _continuous(replayed)
    assert relay.publisher.plis == 0 and relay.wire.stats.keyframe_replays == 1
    assert down.started and not down.waiting_keyframe
    relay.arrive(_vp8(next_seq, 30000))  # live packets carry on the numbering
    after = relay.sent(down)
    assert after[-1][1] == next_seq and _continuous(after)


def test_padding_in_the_replayed_run_leaves_no_gap() -> None:
    relay = _Relay()
    relay.arrive(_vp8(10, 0, key=True))
    relay.arrive(_padding(11, 0))
    relay.arrive(_vp8(12, 3000))
    down = relay.join()
    replayed = relay.sent(down)
    assert [incoming for _, incoming in replayed] == [10, 12] and _continuous(replayed)
    relay.arrive(_vp8(13, 6000))
    assert _continuous(relay.sent(down))


def test_a_keyframe_older_than_the_replay_age_is_asked_for_again() -> None:
    relay = _Relay(max_age=0.5)
    now = time.perf_counter()
    relay.arrive(_vp8(1, 0, key=True), at=now - 0.8)
    relay.arrive(_vp8(2, 3000), at=now - 0.01)
    down = relay.join()
    assert relay.sent(down) == [] and down.waiting_keyframe
    assert relay.publisher.plis == 1


def test_a_run_with_a_hole_is_not_replayed() -> None:
    """A packet lost upstream and not resent yet: the joiner waits for a whole keyframe."""
    relay = _Relay()
    relay.arrive(_vp8(1, 0, key=True))
    relay.arrive(_vp8(3, 3000))  # 2 is missing
    down = relay.join()
    assert relay.sent(down) == [] and relay.publisher.plis == 1


def test_a_run_longer_than_a_receiver_holds_is_not_replayed() -> None:
    relay = _Relay()
    relay.arrive(_vp8(0, 0, key=True))
    for seq in range(1, MAX_PACKETS + 1):
        relay.arrive(_vp8(seq, seq * 3000))
    down = relay.join()
    assert relay.sent(down) == [] and relay.publisher.plis == 1


def test_nothing_received_while_the_track_was_muted_is_replayed() -> None:
    relay = _Relay()
    relay.up.muted = True
    relay.arrive(_vp8(1, 0, key=True))  # sent while muted: never forwarded
    relay.arrive(_vp8(2, 3000))
    relay.up.muted = False
    relay.up.replay_since = time.perf_counter()  # as Publishing.set_muted marks it
    relay.arrive(_vp8(3, 6000))
    down = relay.join()
    assert relay.sent(down) == [] and relay.publisher.plis == 1


def test_replay_off_always_asks() -> None:
    relay = _Relay(max_age=0.0)
    _frames(relay, 1, 2)
    down = relay.join()
    assert relay.sent(down) == [] and relay.publisher.plis == 1


def test_only_a_subscriber_waiting_for_its_start_is_replayed_to() -> None:
    relay = _Relay()
    _frames(relay, 1, 2)
    down = relay.join()
    count = len(relay.sent(down))
    wire = relay.wire
    assert not replay_keyframe(down, 0.5, wire.sendto, wire.stats, time.perf_counter())
    assert len(relay.sent(down)) == count  # already started: nothing sent twice
