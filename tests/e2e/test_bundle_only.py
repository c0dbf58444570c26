"""The WebSocket's publish_offer takes bundle-only sections as WHIP does: GStreamer's
webrtcbin offer (max-bundle, captured) publishes both its tracks. No media flows here; the
real client runs in tests/interop/test_gstreamer.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.loopback_node import RunningNode
from relay.sdp_negotiation import parse_description
from signaling import protocol as p

pytestmark = pytest.mark.timeout(30)
OFFER = Path(__file__).parents[1] / "relay" / "sdp" / "gstreamer-1.22-whip-offer.sdp"


async def test_publish_offer_with_a_bundle_only_section_publishes_it(
    relay_node: RunningNode,
) -> None:
    client = await relay_node.join("bundle", "gst")
    sdp = OFFER.read_bytes().decode()
    client._answer = asyncio.get_running_loop().create_future()  # where the answer lands
    await client._send(p.PublishOffer(type="publish_offer", sdp=sdp, tracks=[]))
    answer = await asyncio.wait_for(client._answer, 10)
    assert set(answer.tracks) == {"video0", "audio1"}
    assert "a=group:BUNDLE video0 audio1\r\n" in answer.sdp
    assert [m.port for m in parse_description(answer.sdp).media] == [9, 9]
    room = relay_node.worker.rooms["bundle"]
    assert {t.codec.mime for t in room.tracks()} == {"video/VP8", "audio/opus"}
