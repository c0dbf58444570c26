"""Audio RED (RFC 2198) end to end with aiortc peers: a publisher taught RED (``tests.media``)
is answered with it and sends it; a subscriber that takes RED receives it as is, a plain
aiortc subscriber (aiortc has no RED) receives the primary blocks as Opus and decodes the
publisher's tone from them."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from bench.loopback_node import RunningNode, node_settings, running_node, token
from relay.track import UpTrack

from ..helpers import eventually
from ..interop.http_sessions import whep_view
from ..media import RED_PT, ToneTrack, teach_aiortc_red, without_red

pytestmark = pytest.mark.timeout(60)

TONE = 0.5  # -9 dBov at 400 Hz: 16 zero crossings in a 20 ms frame


class Heard:
    """Reads a remote audio track: frames decoded and how many look like the tone."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self.frames = 0
        self.tone = 0  # frames loud enough, crossing zero as often as 400 Hz does
        self.task = asyncio.create_task(self._read(track))

    async def _read(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame: Any = await track.recv()
                self.frames += 1
                left = frame.to_ndarray()[0][0::2].astype(float)  # s16 stereo, interleaved
                rms = (left**2).mean() ** 0.5 / 32768
                crossings = int(((left[:-1] < 0) != (left[1:] < 0)).sum())
                if rms > TONE / 4 and 12 <= crossings <= 20:
                    self.tone += 1

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def _audio(node: RunningNode, room: str) -> UpTrack:
    return next(t for t in node.worker.rooms[room].tracks() if t.kind == "audio")


async def test_red_is_negotiated_forwarded_and_stripped_for_a_plain_subscriber(
    relay_node: RunningNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoders, red_received = teach_aiortc_red(monkeypatch)
    alice = await relay_node.join("red", "alice")
    await alice.publish(ToneTrack(TONE))
    await eventually(lambda: bool(encoders) and encoders[0].sent > 50)  # answered RED first
    track = _audio(relay_node, "red")
    assert track.red_payload_type == RED_PT and track.codec.mime == "audio/opus"

    bob = await relay_node.join("red", "bob", publish=False)  # takes RED
    _, bob_track = await bob.next_track(10)
    bob_heard = Heard(bob_track)
    without_red()
    carol = await relay_node.join("red", "carol", publish=False)  # plain aiortc
    _, carol_track = await carol.next_track(10)
    carol_heard = Heard(carol_track)

    downs = {d.subscriber_sid: d for d in track.down_tracks}
    assert downs[bob.sid].red_payload_type == RED_PT
    assert downs[carol.sid].red_payload_type == -1
    await eventually(lambda: carol_heard.tone >= 50 and bob_heard.tone >= 50, timeout=15)
    # bob got RED with its redundant block (aiortc's Opus is 96: retagged to the relay's 111)
    assert any(p[0] == 0x80 | 111 for p in red_received)
    assert all(p[0] & 0x7F == 111 for p in red_received)
    # nothing malformed, and carol decoded the tone from the primary blocks alone
    assert relay_node.worker.stats.dropped["red_malformed"] == 0
    assert carol_heard.tone >= 0.9 * carol_heard.frames - 5, (carol_heard.tone, carol_heard.frames)
    await bob_heard.stop()
    await carol_heard.stop()


async def test_whep_viewers_get_red_or_the_primary_blocks(
    relay_node: RunningNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoders, red_received = teach_aiortc_red(monkeypatch)
    alice = await relay_node.join("red-whep", "alice")
    await alice.publish(ToneTrack(TONE))
    await eventually(lambda: bool(encoders) and encoders[0].sent > 10)
    taking, taking_tracks, _ = await whep_view(
        relay_node, "/whep/red-whep", token("red-whep", "v1", publish=False)
    )
    without_red()
    plain, plain_tracks, _ = await whep_view(
        relay_node, "/whep/red-whep", token("red-whep", "v2", publish=False)
    )
    try:
        await eventually(lambda: "audio" in taking_tracks and "audio" in plain_tracks)
        heard = [Heard(taking_tracks["audio"]), Heard(plain_tracks["audio"])]
        await eventually(lambda: all(h.tone >= 50 for h in heard), timeout=15)
        reds = {d.red_payload_type for d in _audio(relay_node, "red-whep").down_tracks}
        assert reds == {RED_PT, -1}
        assert any(p[0] & 0x80 for p in red_received)  # with a redundant block, as sent
        for h in heard:
            await h.stop()
    finally:
        await taking.close()
        await plain.close()


async def test_audio_levels_and_speakers_work_with_a_red_publisher(
    relay_node: RunningNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoders, _ = teach_aiortc_red(monkeypatch)
    alice = await relay_node.join("red-level", "alice")
    await alice.publish(ToneTrack(TONE))
    listener = await relay_node.join("red-level", "dave", publish=False)
    await eventually(lambda: [s.identity for s in listener.active_speakers] == ["alice"])
    assert encoders and encoders[0].sent > 0
    assert _audio(relay_node, "red-level").red_payload_type == RED_PT


async def test_red_off_answers_plain_opus(monkeypatch: pytest.MonkeyPatch) -> None:
    encoders, _ = teach_aiortc_red(monkeypatch)
    async with running_node(node_settings(rtc={"audio_red": False})) as node:
        alice = await node.join("plain", "alice")
        await alice.publish(ToneTrack(TONE))
        bob = await node.join("plain", "bob", publish=False)
        _, received = await bob.next_track(10)
        heard = Heard(received)
        await eventually(lambda: heard.tone >= 20)
        assert _audio(node, "plain").red_payload_type == -1
        assert not encoders  # the answer had no RED: aiortc sent Opus
        await heard.stop()
