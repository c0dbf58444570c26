"""Real Chromium across a bridge. Simulcast: Chromium publishes three layers on one node;
two aiortc viewers on another node, behind one bridge, get different layers by their own
ceilings (layer choice stays on the viewer's node; every layer crosses once). And Chromium
as a WHEP viewer on a remote node decodes an aiortc publisher's bridged stream."""

from __future__ import annotations

import asyncio

import pytest
from aiortc.mediastreams import AudioStreamTrack

from bench.flat_color_track import FlatColorTrack
from bench.loopback_node import RunningNode, running_node, token

from ..helpers import bridge, eventually, eventually_async
from ..interop.http_sessions import whip_publish
from .simulcast_helpers import WIDTHS, publish_simulcast, top_and_lowered_viewer

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]


async def test_remote_viewers_choose_their_layers(relay_node: RunningNode, browser: object) -> None:
    await publish_simulcast(relay_node, browser)
    async with running_node() as viewing:
        bridge(relay_node, viewing, "sim")
        room = viewing.worker.rooms["sim"]
        stand_in = next(t for t in room.tracks() if t.kind == "video")
        assert [layer.rid for layer in stand_in.layers] == ["q", "h", "f"]
        tasks: list[asyncio.Task[None]] = []
        try:
            two = await top_and_lowered_viewer(viewing, stand_in, tasks)
            assert set(two.top.since(two.lowered)[-10:]) == {WIDTHS["f"]}

            # The origin sends each layer once, to the one bridge.
            (out,) = relay_node.worker.bridging.outgoing.values()
            assert sorted(d.up.rid for d in out.by_ssrc.values() if d.up.kind == "video") == [
                "f",
                "h",
                "q",
            ]
        finally:
            for task in tasks:
                task.cancel()


async def test_chromium_whep_viewer_on_a_remote_node_decodes_the_bridged_stream(
    relay_node: RunningNode, browser: object
) -> None:
    publisher, _ = await whip_publish(
        relay_node, "show", token("show", "py-host"), FlatColorTrack(320, 240), AudioStreamTrack()
    )
    async with running_node() as viewing:
        page = await browser.new_page()  # type: ignore[attr-defined]
        try:
            await page.goto(viewing.http("/?view=show"))  # the demo page's WHEP player
            await eventually(lambda: "show" in viewing.worker.rooms, 20)
            bridge(relay_node, viewing, "show")
            frames_js = """async () => {
                const viewer = window.eurelayDemo.viewer;
                let frames = 0;
                if (viewer) (await viewer.pc.getStats()).forEach((s) => {
                    if (s.type === "inbound-rtp" && s.kind === "video") frames = s.framesDecoded;
                });
                return frames || 0;
            }"""
            decoded: list[int] = [0]

            async def decoding_past(count: int) -> bool:
                decoded.append(await page.evaluate(frames_js))
                return decoded[-1] > count

            await eventually_async(lambda: decoding_past(10), 30, 0.2)
            first = decoded[-1]
            await eventually_async(lambda: decoding_past(first + 10), 10, 0.2)
        finally:
            await page.close()
            await publisher.close()
