"""Media through the relay between real aiortc peers (issue 2 tests 1-3)."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiortc.mediastreams import AudioStreamTrack, MediaStreamTrack, VideoStreamTrack
from aiortc.rtcrtpreceiver import RTCRtpReceiver

from bench.flat_color_track import FlatColorTrack
from bench.loopback_node import RunningNode

from ..helpers import eventually
from ..media import PassthroughEncoder, use_encoder

pytestmark = pytest.mark.timeout(60)


async def _tracks_by_kind(client: object, count: int) -> dict[str, MediaStreamTrack]:
    found: dict[str, MediaStreamTrack] = {}
    while len(found) < count:
        _, track = await client.next_track(10)  # type: ignore[attr-defined]
        found[track.kind] = track
    return found


async def test_three_subscribers_decode_video_and_receive_audio(relay_node: RunningNode) -> None:
    publisher = await relay_node.join("live", "host")
    await publisher.publish(FlatColorTrack(width=320, height=240), AudioStreamTrack())
    viewers = [await relay_node.join("live", f"viewer{i}", publish=False) for i in range(3)]
    for viewer in viewers:
        tracks = await _tracks_by_kind(viewer, 2)
        for _ in range(5):
            frame = await asyncio.wait_for(tracks["video"].recv(), 10)
        assert (frame.width, frame.height) == (320, 240)
        audio = await asyncio.wait_for(tracks["audio"].recv(), 10)
        assert audio.sample_rate == 48000 and audio.samples > 0
    stats = relay_node.worker.stats
    assert stats.rtp_packets_out > stats.rtp_packets_in  # fanned out, not decoded


async def test_payload_bytes_pass_through_untouched(
    relay_node: RunningNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The publisher's 'VP8' payloads are not VP8 at all; subscribers get the same bytes."""
    encoder = PassthroughEncoder()
    use_encoder(monkeypatch, encoder)
    received: list[bytes] = []
    original = RTCRtpReceiver._handle_rtp_packet

    async def capture(self: RTCRtpReceiver, packet: object, arrival_time_ms: int) -> None:
        if getattr(packet, "payload_type", None) == 96:
            received.append(bytes(packet.payload))  # type: ignore[attr-defined]
        await original(self, packet, arrival_time_ms)

    monkeypatch.setattr(RTCRtpReceiver, "_handle_rtp_packet", capture)
    publisher = await relay_node.join("raw", "publisher")
    await publisher.publish(VideoStreamTrack())
    subscribers = [await relay_node.join("raw", f"s{i}", publish=False) for i in range(2)]
    for sub in subscribers:
        await sub.next_track(10)
    await eventually(lambda: len(set(received) & set(encoder.sent)) >= 20, timeout=15)
    forwarded = set(received)
    assert forwarded <= set(encoder.sent), "a subscriber got bytes the publisher never sent"
    assert all(not p.startswith(b"\x9d\x01\x2a") for p in encoder.sent)


async def test_two_party_call_and_late_joiner(relay_node: RunningNode) -> None:
    alice = await relay_node.join("call", "alice")
    bob = await relay_node.join("call", "bob")
    await alice.publish(FlatColorTrack(width=160, height=120), AudioStreamTrack())
    await bob.publish(FlatColorTrack(width=176, height=144), AudioStreamTrack())
    at_alice = await _tracks_by_kind(alice, 2)
    at_bob = await _tracks_by_kind(bob, 2)
    frame = await asyncio.wait_for(at_alice["video"].recv(), 10)
    assert (frame.width, frame.height) == (176, 144)
    frame = await asyncio.wait_for(at_bob["video"].recv(), 10)
    assert (frame.width, frame.height) == (160, 120)
    await asyncio.wait_for(at_alice["audio"].recv(), 10)
    await asyncio.wait_for(at_bob["audio"].recv(), 10)

    started = time.monotonic()
    carol = await relay_node.join("call", "carol", publish=False)
    video = [t for t in [(await carol.next_track(5))[1] for _ in range(4)] if t.kind == "video"]
    first_frames = await asyncio.gather(*(asyncio.wait_for(v.recv(), 5) for v in video))
    elapsed = time.monotonic() - started
    assert sorted((f.width, f.height) for f in first_frames) == [(160, 120), (176, 144)]
    assert elapsed < 1.0, f"late joiner decoded its first frames after {elapsed:.2f}s"
