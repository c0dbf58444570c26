"""A voice room with an audio top-N: a listener is sent only the loudest tracks, the set
follows the speakers, and what it receives stays continuous (no loss counted, timestamps
never going back) across the pauses."""

from __future__ import annotations

import asyncio
import contextlib
import itertools

import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from bench.loopback_node import RunningNode, token
from signaling.admin_client import RoomAdmin

from ..helpers import eventually
from ..media import ToneTrack

pytestmark = pytest.mark.timeout(90)

RECENT = 0.25  # a track whose last frame is this recent is being received


class Reception:
    """Reads every remote audio track of a client: when each last gave a frame, and the
    timestamps of its frames."""

    def __init__(self) -> None:
        self.last: dict[str, float] = {}
        self.frames: dict[str, int] = {}
        self.pts: dict[str, list[int]] = {}
        self.tasks: list[asyncio.Task[None]] = []

    def read(self, name: str, track: MediaStreamTrack) -> None:
        self.frames[name], self.pts[name] = 0, []
        self.tasks.append(asyncio.create_task(self._read(name, track)))

    async def _read(self, name: str, track: MediaStreamTrack) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                self.last[name] = loop.time()
                self.frames[name] += 1
                self.pts[name].append(frame.pts)

    def receiving(self) -> set[str]:
        now = asyncio.get_running_loop().time()
        return {name for name, at in self.last.items() if now - at < RECENT}

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def _only(reception: Reception, wanted: set[str], others: list[str]) -> None:
    """``wanted`` and nothing else arrive: while the wanted ones play on for 50 frames
    (a second), no other track gets a single frame."""
    await eventually(lambda: reception.receiving() == wanted, timeout=10)
    before = {name: reception.frames[name] for name in others}
    mark = {name: reception.frames[name] for name in wanted}
    await eventually(lambda: all(reception.frames[n] >= mark[n] + 50 for n in wanted), timeout=10)
    assert {name: reception.frames[name] for name in others} == before


async def test_a_listener_gets_the_two_loudest_of_six_and_follows_a_change(
    relay_node: RunningNode,
) -> None:
    base = relay_node.http("/").rstrip("/")
    async with RoomAdmin(base, token("seats", "ops", admin=True)) as admin:
        room = await admin.create_room("seats", audio_top_n=2)
    assert room["audio_top_n"] == 2
    amplitudes = [0.5, 0.3, 0.03, 0.03, 0.0, 0.0]  # two loud, two quiet, two silent
    tones = {f"p{i}": ToneTrack(a) for i, a in enumerate(amplitudes)}
    for name, tone in tones.items():
        publisher = await relay_node.join("seats", name, subscribe=False)
        await publisher.publish(tone)
    listener = await relay_node.join("seats", "listener", publish=False)
    owners = {
        t.sid: p.identity
        for p in relay_node.worker.rooms["seats"].participants.values()
        for t in p.published.values()
    }
    reception = Reception()
    try:
        for _ in tones:
            track_sid, track = await listener.next_track(10)
            reception.read(owners[track_sid], track)

        await _only(reception, {"p0", "p1"}, ["p2", "p3", "p4", "p5"])

        # the loud two fall silent, two others speak up: the listener's set follows
        for name, amplitude in (("p0", 0.0), ("p1", 0.0), ("p4", 0.5), ("p5", 0.3)):
            tones[name].amplitude = amplitude
        await _only(reception, {"p4", "p5"}, ["p0", "p1", "p2", "p3"])

        # and back: tracks taken back resume where they stopped
        for name, amplitude in (("p0", 0.5), ("p1", 0.3), ("p4", 0.0), ("p5", 0.0)):
            tones[name].amplitude = amplitude
        await _only(reception, {"p0", "p1"}, ["p2", "p3", "p4", "p5"])

        # continuity on the listener's side: its receiver counts no loss on any track, and
        # no track's timestamps ever went back
        assert listener._sub is not None
        report = await listener._sub.getStats()
        inbound = [s for s in report.values() if s.type == "inbound-rtp" and s.kind == "audio"]
        assert len(inbound) == 4  # p2 and p3 never sent a packet: no stream to report
        assert [s.packetsLost for s in inbound] == [0] * 4, inbound
        for name, stamps in reception.pts.items():
            assert all(b > a for a, b in itertools.pairwise(stamps)), name
        # the quiet two were never among the loudest: never sent a packet
        assert reception.frames["p2"] == reception.frames["p3"] == 0
    finally:
        await reception.stop()
