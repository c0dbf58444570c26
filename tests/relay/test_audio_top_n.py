"""A room's audio top-N without the network: which copies each listener is sent, and what
its numbering looks like across a pause."""

from __future__ import annotations

import struct

from relay.audio_level import AudioLevel
from relay.audio_top_n import select_loudest
from relay.codecs import OPUS, VP8
from relay.forwarder import forward_rtp
from relay.rate_limiter import TokenBucket
from relay.room import Participant, ParticipantKind, Permissions, Room, RoomConfig
from relay.rooms import Rooms
from relay.stats import RelayStats
from relay.track import DownTrack, UpTrack

from .fakes import FakeSink


def _participant(sid: str, kind: ParticipantKind = ParticipantKind.SIGNALLED) -> Participant:
    return Participant(
        room="R",
        identity=sid,
        permissions=Permissions(),
        data_limiter=TokenBucket(1, 1),
        sid=sid,
        kind=kind,
    )


def _speak(track: UpTrack, level: float, speaking: bool = True, at: float = 0.0) -> None:
    assert track.level is not None
    track.level.level, track.level.speaking, track.level.voiced_at = level, speaking, at


class _Room:
    """Publishers a..e, each with a microphone; listeners subscribed to all of them."""

    def __init__(self, n: int) -> None:
        self.room = Room(name="R", max_participants=0, audio_top_n=n)
        self.tracks: dict[str, UpTrack] = {}
        for sid in "abcde":
            publisher = _participant(sid)
            track = UpTrack(f"T{sid}", "audio", OPUS, "0", sid, "R", 1, level=AudioLevel(1))
            publisher.published[track.sid] = track
            self.room.participants[sid] = publisher
            self.tracks[sid] = track
        camera = UpTrack("Va", "video", VP8, "1", "a", "R", 2)
        self.room.participants["a"].published[camera.sid] = camera
        self.tracks["video"] = camera

    def listener(self, sid: str, kind: ParticipantKind = ParticipantKind.SIGNALLED) -> Participant:
        listener = _participant(sid, kind)
        for track in self.tracks.values():
            down = DownTrack(
                up=track, subscriber_sid=sid, mid=track.sid, payload_type=111, sink=FakeSink()
            )
            down.active = True
            track.add_down(down)
            listener.subscriptions[track.sid] = down
        self.room.participants[sid] = listener
        return listener


def _forwarded(listener: Participant) -> set[str]:
    return {
        d.up.publisher_sid
        for d in listener.subscriptions.values()
        if d.up.kind == "audio" and not d.paused
    }


def test_each_listener_gets_the_n_loudest_and_the_set_follows_the_speakers() -> None:
    r = _Room(2)
    listener = r.listener("L")
    _speak(r.tracks["b"], 0.2)
    _speak(r.tracks["d"], 0.05)
    _speak(r.tracks["e"], 0.0, speaking=False, at=-5.0)  # spoke a while ago
    select_loudest(r.room)
    assert _forwarded(listener) == {"b", "d"}
    assert not listener.subscriptions["Va"].paused  # video is never chosen away

    _speak(r.tracks["a"], 0.3)  # a starts, louder than d: d makes room
    select_loudest(r.room)
    assert _forwarded(listener) == {"a", "b"}

    _speak(r.tracks["a"], 0.0, speaking=False, at=1.0)  # everyone stops: the last speakers stay
    _speak(r.tracks["b"], 0.0, speaking=False, at=0.9)
    _speak(r.tracks["d"], 0.0, speaking=False, at=0.5)
    select_loudest(r.room)
    assert _forwarded(listener) == {"a", "b"}


def test_a_forwarded_voice_keeps_its_place_against_one_barely_louder() -> None:
    r = _Room(1)
    listener = r.listener("L")
    _speak(r.tracks["a"], 0.10)
    select_loudest(r.room)
    assert _forwarded(listener) == {"a"}
    _speak(r.tracks["b"], 0.12)  # a little louder: a stays
    select_loudest(r.room)
    assert _forwarded(listener) == {"a"}
    _speak(r.tracks["b"], 0.2)  # clearly louder (over 3 dB): b takes the place
    select_loudest(r.room)
    assert _forwarded(listener) == {"b"}


def test_viewers_and_rooms_without_top_n_are_left_alone() -> None:
    r = _Room(1)
    viewer = r.listener("V", ParticipantKind.VIEWER)
    select_loudest(r.room)
    assert _forwarded(viewer) == set("abcde")
    r.room.audio_top_n = 0
    listener = r.listener("L")
    select_loudest(r.room)
    assert _forwarded(listener) == set("abcde")


def _rtp(seq: int, ts: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 111, seq & 0xFFFF, ts, 0x99) + b"opus"


def test_a_paused_copy_resumes_with_the_next_number_and_the_publishers_clock() -> None:
    up = UpTrack("T", "audio", OPUS, "0", "P", "R", 0x99)
    down = DownTrack(up=up, subscriber_sid="L", mid="1", payload_type=111, sink=FakeSink())
    down.active = True
    up.add_down(down)
    sent: list[tuple[int, int]] = []
    stats = RelayStats()

    def send(data: bytes, addr: tuple[str, int]) -> None:
        sent.append(struct.unpack_from("!HI", data, 2))

    def packet(seq: int) -> None:
        forward_rtp(up, _rtp(seq, seq * 960), seq, seq * 960, send, stats, 0.0)

    for seq in range(100, 105):
        packet(seq)
    down.pause()
    for seq in range(105, 155):  # one second in which this listener gets nothing
        packet(seq)
    assert len(sent) == 5
    down.resume()
    for seq in range(155, 158):
        packet(seq)
    numbers = [n for n, _ in sent]
    assert numbers == [(numbers[0] + i) & 0xFFFF for i in range(8)]  # no gap: no loss
    stamps = [t for _, t in sent]
    assert stamps[5] - stamps[4] == 51 * 960  # the pause, in the publisher's time
    assert stamps[6] - stamps[5] == 960
    # a packet from within the pause arriving late is not sent: its number is taken
    packet(140)
    assert len(sent) == 8


def test_a_room_takes_the_nodes_default_unless_its_settings_say_otherwise() -> None:
    rooms = Rooms(10, 100, audio_top_n=3)
    assert rooms.create("plain").audio_top_n == 3
    stage = _participant("x")
    stage.room = "stage"
    assert rooms.admit(stage, RoomConfig(audio_top_n=0)).audio_top_n == 0
