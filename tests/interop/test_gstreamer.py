"""GStreamer 1.22's webrtcbin (Debian's packages) publishing with WHIP and playing with WHEP,
offering as it does with max-bundle: every section after the first has port 0 and
``a=bundle-only``. It also refuses an answer whose rejected section lacks the transport lines,
and serves DTLS with an RSA certificate when the relay is the DTLS client."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiortc.mediastreams import AudioStreamTrack

from bench.flat_color_track import FlatColorTrack
from bench.loopback_node import RunningNode, token

from .client_process import INTEROP, client_process, require_gstreamer
from .http_sessions import whep_view

pytestmark = pytest.mark.timeout(60)
SCRIPT = str(INTEROP / "gst_webrtc.py")


def bundle_only_sections(sdp: str) -> int:
    return sdp.count("a=bundle-only")


async def test_webrtcbin_publishes_with_whip_to_an_aiortc_viewer(relay_node: RunningNode) -> None:
    python = require_gstreamer()
    url = relay_node.http("/whip/gst")
    async with client_process(
        python, SCRIPT, "publish", url, token("gst", "webrtcbin"), "30"
    ) as gst:
        await gst.wait_for(lambda: gst.last("connected") is not None, 15, "DTLS connected")
        offer = gst.last("offer")
        assert offer is not None and bundle_only_sections(offer["sdp"]) == 1  # its audio
        room = relay_node.worker.rooms["gst"]
        assert {t.codec.mime for t in room.tracks()} == {"video/VP8", "audio/opus"}
        pc, tracks, _ = await whep_view(relay_node, "/whep/gst", token("gst", "v", publish=False))
        try:
            for _ in range(10):
                frame = await asyncio.wait_for(tracks["video"].recv(), 10)
            assert (frame.width, frame.height) == (320, 240)
            await asyncio.wait_for(tracks["audio"].recv(), 10)
        finally:
            await pc.close()
        assert await gst.stop() == 0  # and it DELETEd its session on the way out
    assert gst.errors() == []
    assert room.by_identity("webrtcbin") is None


async def test_webrtcbin_plays_an_aiortc_publisher_with_whep(relay_node: RunningNode) -> None:
    python = require_gstreamer()
    host = await relay_node.join("gst-play", "host")
    await host.publish(FlatColorTrack(320, 240), AudioStreamTrack())
    url = relay_node.http("/whep/gst-play")
    tok = token("gst-play", "player", publish=False)
    async with client_process(python, SCRIPT, "play", url, tok, "30") as gst:

        def decoded() -> bool:
            frames = gst.last("frames")
            return frames is not None and frames["video"] >= 30 and frames["audio"] >= 30

        await gst.wait_for(decoded, 20, "30 decoded video frames and 30 audio buffers")
        offer = gst.last("offer")
        assert offer is not None and bundle_only_sections(offer["sdp"]) == 1
        frames = gst.last("frames")
        assert frames is not None and (frames["width"], frames["height"]) == (320, 240)
        assert await gst.stop() == 0
    assert gst.errors() == []


async def test_a_rejected_bundle_only_section_leaves_the_rest_of_the_answer_usable(
    relay_node: RunningNode, caplog: pytest.LogCaptureFixture
) -> None:
    """PCMU audio is not forwarded: its section is answered with port 0, and webrtcbin (which
    refused the whole answer when that section had no fingerprint) still publishes the video."""
    python = require_gstreamer()
    caplog.set_level(logging.INFO, logger="relay.publishing")
    url = relay_node.http("/whip/pcmu")
    async with client_process(
        python, SCRIPT, "publish-pcmu", url, token("pcmu", "webrtcbin"), "30"
    ) as gst:
        await gst.wait_for(lambda: gst.last("connected") is not None, 15, "DTLS connected")
        room = relay_node.worker.rooms["pcmu"]
        assert [t.codec.mime for t in room.tracks()] == ["video/VP8"]
        pc, tracks, _ = await whep_view(relay_node, "/whep/pcmu", token("pcmu", "v", publish=False))
        try:
            for _ in range(5):
                frame = await asyncio.wait_for(tracks["video"].recv(), 10)
            assert (frame.width, frame.height) == (320, 240)
        finally:
            await pc.close()
    assert gst.errors() == []
    said = [r.getMessage() for r in caplog.records if "rejects" in r.getMessage()]
    assert len(said) == 1 and said[0].endswith(
        "publish answer rejects mid audio1 (audio): no codec the relay forwards (offered PCMU)"
    )


async def test_webrtcbin_serving_dtls_with_its_rsa_certificate(relay_node: RunningNode) -> None:
    """Offered a=setup:passive, the relay is the DTLS client and the suite follows
    webrtcbin's RSA certificate: aiortc's ECDSA-only cipher list failed this handshake."""
    python = require_gstreamer()
    url = relay_node.http("/whip/rsa")
    tok = token("rsa", "webrtcbin")
    async with client_process(python, SCRIPT, "publish-dtls-server", url, tok, "30") as gst:
        await gst.wait_for(lambda: gst.last("connected") is not None, 15, "DTLS connected")
        publisher = relay_node.worker.rooms["rsa"].by_identity("webrtcbin")
        assert publisher is not None and publisher.publisher_leg.dtls.role == "client"
        pc, tracks, _ = await whep_view(relay_node, "/whep/rsa", token("rsa", "v", publish=False))
        try:
            for _ in range(5):
                frame = await asyncio.wait_for(tracks["video"].recv(), 10)
            assert (frame.width, frame.height) == (320, 240)
        finally:
            await pc.close()
    assert gst.errors() == []
