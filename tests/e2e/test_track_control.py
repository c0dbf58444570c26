"""Codecs, RTCP termination, mute, unsubscribe and node capacity."""

from __future__ import annotations

import asyncio

import pytest
from aiortc.mediastreams import AudioStreamTrack

from bench.flat_color_track import FlatColorTrack
from bench.loopback_node import RunningNode, node_settings, running_node
from signaling import protocol as p
from signaling.client import ClientError

from ..helpers import eventually

pytestmark = pytest.mark.timeout(60)


async def test_h264_packetization_mode_1_is_forwarded(relay_node: RunningNode) -> None:
    publisher = await relay_node.join("h264", "camera")
    await publisher.publish(FlatColorTrack(320, 240), video_codec="video/H264")
    track = relay_node.worker.rooms["h264"].tracks()[0]
    assert track.codec.mime == "video/H264"
    assert str(track.codec.fmtp["packetization-mode"]) == "1"
    viewer = await relay_node.join("h264", "viewer", publish=False)
    _, video = await viewer.next_track(10)
    for _ in range(5):
        frame = await asyncio.wait_for(video.recv(), 10)
    assert (frame.width, frame.height) == (320, 240)


async def test_relay_sends_sender_and_receiver_reports(relay_node: RunningNode) -> None:
    """Subscribers see SRs in their own numbering; the publisher sees the relay's RRs."""
    publisher = await relay_node.join("rtcp", "speaker")
    await publisher.publish(FlatColorTrack(160, 120), AudioStreamTrack())
    viewer = await relay_node.join("rtcp", "listener", publish=False)
    for _ in range(2):
        await viewer.next_track(10)
    subscriber_ssrcs = {
        d.ssrc for t in relay_node.worker.rooms["rtcp"].tracks() for d in t.down_tracks
    }

    async def kinds(pc: object, kind: str) -> list[int]:
        stats = await pc.getStats()  # type: ignore[attr-defined]
        return [s.ssrc for s in stats.values() if s.type == kind]

    async def reported() -> None:
        while True:
            # aiortc files an SR under the sender's SSRC, an RR under the reporter's SSRC
            remote_out = await kinds(viewer._sub, "remote-outbound-rtp")
            remote_in = await kinds(publisher._pub, "remote-inbound-rtp")
            if set(remote_out) == subscriber_ssrcs and len(remote_in) == 2:
                return
            await asyncio.sleep(0.2)

    await asyncio.wait_for(reported(), 10)
    assert relay_node.worker.stats.rtcp_packets_out > 0


async def test_mute_and_unsubscribe(relay_node: RunningNode) -> None:
    host = await relay_node.join("ctl", "host")
    mids = await host.publish(FlatColorTrack(160, 120), AudioStreamTrack())
    viewer = await relay_node.join("ctl", "viewer", publish=False)
    received = {}
    for _ in range(2):
        sid, track = await viewer.next_track(10)
        received[track.kind] = sid
    worker = relay_node.worker
    video_sid = received["video"]
    assert video_sid in mids.values()

    await host.mute(video_sid, True)
    muted = await viewer.wait_for(p.TrackMuted, timeout=5)
    assert muted.track_sid == video_sid and muted.muted
    up = worker.rooms["ctl"].find_track(video_sid)
    down = up.down_tracks[0]
    before = down.packets_sent
    await eventually(lambda: worker.stats.dropped["muted"] > 10)
    assert down.packets_sent == before  # nothing forwarded while muted
    await host.mute(video_sid, False)
    await eventually(lambda: down.packets_sent > before)

    await viewer.unsubscribe(video_sid)
    await eventually(lambda: not up.down_tracks)
    await eventually(
        lambda: (
            viewer._sub.remoteDescription is not None
            and "a=inactive" in viewer._sub.remoteDescription.sdp
        )
    )
    audio_up = worker.rooms["ctl"].find_track(received["audio"])
    assert len(audio_up.down_tracks) == 1  # the other subscription is untouched
    await viewer.subscribe(video_sid)
    await eventually(lambda: len(up.down_tracks) == 1 and up.down_tracks[0].packets_sent > 0)

    await host.mute("TR_unknown")
    error = await host.wait_for(p.Error, timeout=5)
    assert error.code == "not_found"


async def test_node_capacity_is_enforced() -> None:
    async with running_node(node_settings(capacity={"max_participants": 2})) as rn:
        await rn.join("a", "one")
        await rn.join("b", "two")
        with pytest.raises(ClientError) as refused:
            await rn.join("c", "three")
        assert refused.value.code == "node_full"
        assert "c" not in rn.worker.rooms


async def test_publishing_more_tracks_later_renegotiates(relay_node: RunningNode) -> None:
    host = await relay_node.join("grow", "host")
    viewer = await relay_node.join("grow", "viewer", publish=False)
    await host.publish(FlatColorTrack(160, 120))
    _, video = await viewer.next_track(10)
    await host.publish(AudioStreamTrack())
    published = await viewer.wait_for(p.TrackPublished, lambda e: e.track.kind == "audio")
    sid, audio = await viewer.next_track(10)
    assert sid == published.track.sid and audio.kind == "audio"
    await asyncio.wait_for(audio.recv(), 10)
    await asyncio.wait_for(video.recv(), 10)
    assert len(relay_node.worker.rooms["grow"].tracks()) == 2
