"""Audio levels without the network: the RFC 6464 byte as senders write it, the speaking
state a tick makes of it, the room's order of speakers and the level crossing a bridge."""

from __future__ import annotations

import struct

from relay.active_speakers import ActiveSpeakers, rank
from relay.audio_level import BRIDGE_LEVEL_ID, HOLD, AudioLevel, read_audio_level
from relay.codecs import OPUS
from relay.forwarder import forward_rtp
from relay.rate_limiter import TokenBucket
from relay.room import Participant, Permissions
from relay.rooms import Rooms
from relay.stats import RelayStats
from relay.track import DownTrack, UpTrack

from .fakes import FakeSink

SSRC = 0x4321


def _one_byte(elements: list[tuple[int, bytes]], padding: int = 0) -> bytes:
    body = b"".join(bytes([(i << 4) | (len(v) - 1)]) + v for i, v in elements) + bytes(padding)
    body += bytes(-len(body) % 4)
    return b"\xbe\xde" + struct.pack("!H", len(body) // 4) + body


def _two_byte(elements: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(bytes([i, len(v)]) + v for i, v in elements)
    body += bytes(-len(body) % 4)
    return b"\x10\x00" + struct.pack("!H", len(body) // 4) + body


def _rtp(seq: int, extension: bytes = b"", csrcs: int = 0) -> bytes:
    b0 = 0x80 | (0x10 if extension else 0) | csrcs
    header = struct.pack("!BBHII", b0, 111, seq, seq * 960, SSRC)
    return header + bytes(4 * csrcs) + extension + b"opus-frame"


def test_the_level_is_read_from_either_header_form() -> None:
    twcc = (3, b"\x00\x07")
    assert read_audio_level(_rtp(1, _one_byte([twcc, (1, b"\x1e")])), 1) == 30
    assert read_audio_level(_rtp(1, _one_byte([(1, b"\x9e"), twcc])), 1) == 30  # V bit set
    assert read_audio_level(_rtp(1, _one_byte([(5, b"\x01")], padding=3)), 1) == -1
    assert read_audio_level(_rtp(1, _two_byte([(4, b"ab"), (1, b"\x7f")])), 1) == 127
    assert read_audio_level(_rtp(1), 1) == -1  # no extension at all
    assert read_audio_level(_rtp(1, _one_byte([(1, b"\x1e")]), csrcs=2), 1) == 30


def test_bad_extensions_read_as_no_level() -> None:
    good = _rtp(1, _one_byte([(1, b"\x1e")]))
    assert read_audio_level(good[:14], 1) == -1  # truncated before the extension header
    assert read_audio_level(good[:17], 1) == -1  # the length runs past the packet
    assert read_audio_level(_rtp(1, _one_byte([(15, b"\x00"), (1, b"\x1e")])), 1) == -1
    # the level's element would start past the block the length announces
    long_first = b"\xbe\xde\x00\x01" + bytes([(2 << 4) | 3]) + b"\x00\x00\x00" + b"\x10\x1e"
    assert read_audio_level(_rtp(1, long_first), 1) == -1


def _feed(level: AudioLevel, levels: list[int], up: UpTrack | None = None) -> int:
    """What the fast path does with one tick's packets; the packet count after them."""
    for dbov in levels:
        if up is not None:
            up.packets += 1
        if dbov <= 40:
            level.voiced += 1
            level.loudest = min(level.loudest, dbov)
    return level.counted + len(levels)


def test_speaking_needs_voiced_ticks_and_holds_through_short_pauses() -> None:
    level = AudioLevel(ext_id=1)
    now = 0.0
    assert not level.tick(now, _feed(level, [127, 127, 20, 127, 127]))  # a click: 1 in 5 loud
    now += 0.1
    assert level.tick(now, _feed(level, [25, 30, 60, 28, 127])) and level.level > 0.02  # speech
    spoken = level.level
    for _ in range(int(HOLD / 0.1)):  # a pause between words
        now += 0.1
        assert level.tick(now, _feed(level, [127] * 5))
    assert level.level < spoken
    now += 0.2
    assert not level.tick(now, _feed(level, [127] * 5))
    now += 0.1
    assert not level.tick(now, level.counted)  # no packets at all: silent too
    # packets without the extension (or muted) count as silent ones
    now += 0.1
    assert not level.tick(now, _feed(level, [20]) + 4)


def _participant(sid: str) -> Participant:
    return Participant(
        room="R", identity=sid, permissions=Permissions(), data_limiter=TokenBucket(1, 1), sid=sid
    )


def test_order_is_loudest_first_but_does_not_flip_on_small_differences() -> None:
    a, b, c = _participant("a"), _participant("b"), _participant("c")
    assert [p.sid for p, _ in rank((), {a: 0.1, b: 0.3, c: 0.2})] == ["b", "c", "a"]
    # b leads; c is a little louder now: no change. Then much louder: it moves ahead.
    assert [p.sid for p, _ in rank(("b", "c"), {b: 0.3, c: 0.35})] == ["b", "c"]
    assert [p.sid for p, _ in rank(("b", "c"), {b: 0.1, c: 0.35})] == ["c", "b"]
    # a newcomer far louder than everyone goes first
    assert [p.sid for p, _ in rank(("b",), {b: 0.01, a: 0.5})] == ["a", "b"]


def test_a_room_is_told_on_change_only_and_not_more_often_than_the_interval() -> None:
    rooms = Rooms(10, 100)
    alice = _participant("alice")
    rooms.admit(alice)
    track = UpTrack("T", "audio", OPUS, "0", "alice", "R", SSRC, level=AudioLevel(1))
    alice.published["T"] = track
    told: list[list[str]] = []
    speakers = ActiveSpeakers(rooms, lambda room, order: told.append([p.sid for p, _ in order]))
    assert track.level is not None
    now = 100.0
    for _ in range(10):  # one second of speech
        _feed(track.level, [20] * 5, track)
        speakers.tick(now)
        now += 0.1
    assert told == [["alice"]]
    for _ in range(10):  # silence: speaking ends after HOLD, told then
        _feed(track.level, [127] * 5, track)
        speakers.tick(now)
        now += 0.1
    assert told == [["alice"], []]
    # speaking again at once: held back until the interval since the last event has passed
    sent_at = rooms.by_name["R"].speakers_sent_at
    _feed(track.level, [20] * 5, track)
    speakers.tick(sent_at + 0.1)
    assert told == [["alice"], []]
    speakers.tick(sent_at + 0.35)  # still speaking (held), now due
    assert told == [["alice"], [], ["alice"]]


def test_the_fast_path_counts_levels_and_writes_them_toward_a_bridge_only() -> None:
    up = UpTrack("T", "audio", OPUS, "0", "P", "R", SSRC, level=AudioLevel(ext_id=3))
    subscriber = DownTrack(up=up, subscriber_sid="S", mid="1", payload_type=111, sink=FakeSink())
    bridge = DownTrack(up=up, subscriber_sid="B", mid="T", payload_type=111, sink=FakeSink())
    bridge.carries_level = True
    for down in (subscriber, bridge):
        down.active = True
        up.add_down(down)
    sent: list[bytes] = []
    stats = RelayStats()
    for seq, dbov in ((10, 35), (11, 12), (12, 90)):
        rtp = _rtp(seq, _one_byte([(2, b"\x00\x01"), (3, bytes([dbov]))]))
        forward_rtp(up, rtp, seq, seq * 960, lambda data, addr: sent.append(data), stats, 0.0)
    assert up.level is not None
    assert (up.packets, up.level.voiced, up.level.loudest) == (3, 2, 12)
    to_subscriber, to_bridge = sent[0::2], sent[1::2]
    assert all(not packet[0] & 0x10 for packet in to_subscriber)  # extensions dropped
    assert [read_audio_level(p, BRIDGE_LEVEL_ID) for p in to_bridge] == [35, 12, 90]
    assert all(p.endswith(b"opus-frame") for p in sent)
    seqs = [struct.unpack_from("!H", p, 2)[0] for p in to_bridge]
    assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(3)]
