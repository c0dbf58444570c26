"""libdatachannel (npm node-datachannel, the WebRTC stack of OBS's WHIP output) publishing with
WHIP and playing with WHEP. It sends a session-level fingerprint and ``a=group:LS``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiortc.mediastreams import AudioStreamTrack

from bench.flat_color_track import FlatColorTrack
from bench.loopback_node import RunningNode, token

from .client_process import INTEROP, client_process, require_node_datachannel, vp8_frames
from .http_sessions import whep_view

pytestmark = pytest.mark.timeout(60)
SCRIPT = str(INTEROP / "libdatachannel" / "whip_whep.cjs")


async def test_libdatachannel_publishes_with_whip_to_an_aiortc_viewer(
    relay_node: RunningNode, tmp_path: Path
) -> None:
    node = require_node_datachannel()
    frames = vp8_frames(tmp_path / "vp8.json")
    url = relay_node.http("/whip/ldc")
    async with client_process(
        node, SCRIPT, "publish", url, token("ldc", "libdatachannel"), "30", str(frames)
    ) as ldc:
        await ldc.wait_for(lambda: ldc.last("connected") is not None, 15, "DTLS connected")
        room = relay_node.worker.rooms["ldc"]
        assert {t.codec.mime for t in room.tracks()} == {"video/VP8", "audio/opus"}
        pc, tracks, _ = await whep_view(relay_node, "/whep/ldc", token("ldc", "v", publish=False))
        try:
            for _ in range(10):  # the replayed VP8, decoded by aiortc
                frame = await asyncio.wait_for(tracks["video"].recv(), 10)
            assert (frame.width, frame.height) == (320, 240)
            await asyncio.wait_for(tracks["audio"].recv(), 10)
        finally:
            await pc.close()
        assert await ldc.stop() == 0  # and it DELETEd its session on the way out
    assert ldc.errors() == []
    assert room.by_identity("libdatachannel") is None


async def test_libdatachannel_plays_an_aiortc_publisher_with_whep(relay_node: RunningNode) -> None:
    node = require_node_datachannel()
    host = await relay_node.join("ldc-play", "host")
    await host.publish(FlatColorTrack(320, 240), AudioStreamTrack())
    url = relay_node.http("/whep/ldc-play")
    tok = token("ldc-play", "player", publish=False)
    async with client_process(node, SCRIPT, "play", url, tok, "30") as ldc:

        def received() -> bool:
            rtp = ldc.last("rtp")
            return rtp is not None and rtp["video"] >= 60 and rtp["audio"] >= 100

        await ldc.wait_for(received, 20, "60 video and 100 audio RTP packets")
        rtp = ldc.last("rtp")
        assert rtp is not None and rtp["gaps"] == 0, rtp
        assert await ldc.stop() == 0
    assert ldc.errors() == []
