"""WHIP ingest: an aiortc publisher and FFmpeg's WHIP muxer (default options)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack

from signaling import protocol as p

from ..helpers import RunningNode, token
from ..media import FlatColorTrack

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[2]


async def whip_publish(
    relay_node: RunningNode, room: str, tok: str, *tracks: object
) -> tuple[RTCPeerConnection, str]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    for track in tracks:
        pc.addTransceiver(track, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            relay_node.http(f"/whip/{room}"),
            data=pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {tok}"},
        ) as resp,
    ):
        assert resp.status == 201, await resp.text()
        assert resp.content_type == "application/sdp"
        assert resp.headers["ETag"]
        location = resp.headers["Location"]
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        await pc.setRemoteDescription(RTCSessionDescription(await resp.text(), "answer"))
    return pc, location


async def test_aiortc_whip_publisher_reaches_websocket_viewers(relay_node: RunningNode) -> None:
    viewer = await relay_node.join("ingest", "viewer", publish=False)
    pc, location = await whip_publish(
        relay_node,
        "ingest",
        token("ingest", "streamer"),
        FlatColorTrack(320, 240),
        AudioStreamTrack(),
    )
    try:
        joined = await viewer.wait_for(p.ParticipantJoined, timeout=5)
        assert joined.participant.identity == "streamer"
        kinds = {}
        for _ in range(2):
            _, track = await viewer.next_track(10)
            kinds[track.kind] = track
        frame = await asyncio.wait_for(kinds["video"].recv(), 10)
        assert (frame.width, frame.height) == (320, 240)
        await asyncio.wait_for(kinds["audio"].recv(), 10)

        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {token('ingest', 'streamer')}"}
            async with http.patch(
                relay_node.http(location),
                data="a=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n",
                headers={**headers, "Content-Type": "application/trickle-ice-sdpfrag"},
            ) as resp:
                assert resp.status == 204
            async with http.delete(relay_node.http(location), headers=headers) as resp:
                assert resp.status == 200
        left = await viewer.wait_for(p.ParticipantLeft, timeout=5)
        assert left.identity == "streamer"
        assert relay_node.node.worker.rooms["ingest"].by_identity("streamer") is None
    finally:
        await pc.close()


@pytest.mark.xfail(
    strict=True,
    reason="FFmpeg 8 (PyAV 18.1) signs DTLS with a secp224r1 certificate by default; OpenSSL "
    "3.5+/4 (aiortc's DTLS via cryptography 50) no longer accepts P-224 in TLS, so the "
    "handshake fails with 'wrong curve' in either DTLS role",
)
async def test_ffmpeg_whip_muxer_publishes_h264_and_opus(relay_node: RunningNode) -> None:
    """FFmpeg runs in its own process: PyAV holds the GIL through the WHIP handshake."""
    viewer = await relay_node.join("ffmpeg", "viewer", publish=False)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.interop.ffmpeg_whip",
        relay_node.http("/whip/ffmpeg"),
        token("ffmpeg", "encoder"),
        "20",
        cwd=ROOT,
    )
    try:
        tracks = {}
        for _ in range(2):
            _, track = await viewer.next_track(20)
            tracks[track.kind] = track
        published = relay_node.node.worker.rooms["ffmpeg"].tracks()
        assert {t.codec.mime for t in published} == {"video/H264", "audio/opus"}
        publisher = relay_node.node.worker.rooms["ffmpeg"].by_identity("encoder")
        assert publisher is not None and publisher.publisher_leg.dtls.role == "client"
        for _ in range(5):
            frame = await asyncio.wait_for(tracks["video"].recv(), 15)
        assert (frame.width, frame.height) == (320, 240)
        await asyncio.wait_for(tracks["audio"].recv(), 10)
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)
