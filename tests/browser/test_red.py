"""Audio RED (RFC 2198) between Chromiums through the relay: Chromium publishes RED when the
relay's answer puts it first; a Chromium WHEP viewer (here through a downlink that drops 10%
of packets: ``bench.red_loss`` measures the concealment) and Chromium subscribers of the
WebSocket flow receive it as is."""

from __future__ import annotations

import pytest

from bench.loopback_node import RunningNode
from bench.red_loss import inbound_audio, start_call, wait_for_samples
from relay.netem import Impairment, UdpImpairmentProxy

from ..helpers import eventually, eventually_async
from .demo_page import join_demo

pytestmark = pytest.mark.timeout(90)

RED_PT = 63  # Chromium's number for red/48000/2

RECEIVE_CODECS_JS = """() => window.viewer.getTransceivers()[0].receiver.getParameters()
    .codecs.map((c) => c.mimeType)"""


async def test_chromium_publisher_and_viewer_negotiate_red(
    relay_node: RunningNode, browser: object
) -> None:
    proxy = UdpImpairmentProxy(("127.0.0.1", relay_node.worker.port), seed=1)
    await proxy.start()
    try:
        publisher, viewer = await start_call(browser, relay_node, "red", proxy.port)
        await wait_for_samples(viewer, 48000, 20)
        room = relay_node.worker.rooms["red"]
        (track,) = room.tracks()
        assert track.red_payload_type == RED_PT  # the publisher's leg: RED
        (down,) = track.down_tracks
        assert down.red_payload_type == RED_PT  # the viewer's leg: RED, passed as is
        assert "audio/red" in await viewer.evaluate(RECEIVE_CODECS_JS)

        proxy.set(down=Impairment(loss=0.10))
        start = await inbound_audio(viewer)
        assert start is not None
        sent = down.packets_sent

        async def more_audio() -> bool:
            now = await inbound_audio(viewer)
            return now is not None and now["totalSamplesReceived"] > (
                start["totalSamplesReceived"] + 3 * 48000
            )

        await eventually_async(more_audio, timeout=20, interval=0.2)  # three seconds' worth
        assert proxy.down.dropped > 0 and down.packets_sent > sent
        assert relay_node.worker.stats.dropped["red_malformed"] == 0
        await viewer.close()
        await publisher.close()
    finally:
        proxy.close()


async def test_chromium_participants_send_each_other_red(
    relay_node: RunningNode, browser: object
) -> None:
    """The WebSocket flow: each publish answer puts RED first, and the relay's offer to each
    Chromium subscriber (RED first around Opus) is answered with RED kept."""
    await join_demo(browser, relay_node, "ann", room="red-duo")
    await join_demo(browser, relay_node, "ben", room="red-duo")

    def red_audio() -> list[tuple[int, list[int]]]:
        room = relay_node.worker.rooms["red-duo"]
        return [
            (t.red_payload_type, [d.red_payload_type for d in t.down_tracks])
            for t in room.tracks()
            if t.kind == "audio"
        ]

    await eventually(lambda: red_audio() == [(RED_PT, [RED_PT])] * 2, timeout=20)
