"""WHIP ingest: an aiortc publisher and FFmpeg's WHIP muxer (default options)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aiohttp
import pytest
from aiortc.mediastreams import AudioStreamTrack

from bench.flat_color_track import FlatColorTrack
from bench.loopback_node import RunningNode, token
from signaling import protocol as p

from .http_sessions import whep_view, whip_publish

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[2]


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
        assert relay_node.worker.rooms["ingest"].by_identity("streamer") is None
    finally:
        await pc.close()


def ffmpeg_python() -> str | None:
    """The interpreter of .venv-ffmpeg (PyAV 19: an FFmpeg whose WHIP muxer works)."""
    python = ROOT / ".venv-ffmpeg" / "bin" / "python"
    if python.exists():
        return str(python)
    if os.environ.get("CI") == "true":
        raise RuntimeError(".venv-ffmpeg is missing: make test builds it (scripts/ffmpeg-venv.sh)")
    return None


async def test_ffmpeg_whip_muxer_publishes_h264_and_opus(relay_node: RunningNode) -> None:
    """FFmpeg's own ICE/DTLS/SRTP, default options: it offers a=setup:passive, so the relay
    is the DTLS client. It runs in its own process with its own PyAV."""
    python = ffmpeg_python()
    if python is None:
        pytest.skip("no .venv-ffmpeg (make test builds it)")
    proc = await asyncio.create_subprocess_exec(
        python,
        str(ROOT / "tests" / "interop" / "ffmpeg_whip.py"),
        relay_node.http("/whip/ffmpeg"),
        token("ffmpeg", "encoder"),
        "20",
    )
    try:
        room = None
        for _ in range(200):
            room = relay_node.worker.rooms.get("ffmpeg")
            if room is not None and len(room.tracks()) == 2:
                break
            await asyncio.sleep(0.05)
        assert room is not None
        assert {t.codec.mime for t in room.tracks()} == {"video/H264", "audio/opus"}
        publisher = room.by_identity("encoder")
        assert publisher is not None and publisher.publisher_leg.dtls.role == "client"
        pc, tracks, _ = await whep_view(
            relay_node, "/whep/ffmpeg", token("ffmpeg", "v", publish=False)
        )
        try:
            for _ in range(5):
                frame = await asyncio.wait_for(tracks["video"].recv(), 15)
            assert (frame.width, frame.height) == (320, 240)
            await asyncio.wait_for(tracks["audio"].recv(), 10)
        finally:
            await pc.close()
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)
