"""Real Chromium across a cascade: two nodes of two regions on a real redis-server, the room
bridged between them by the nodes themselves. Simulcast: Chromium publishes three layers on
one node; two aiortc viewers on the other, behind one bridge, get different layers by their
own ceilings (layer choice stays on the viewer's node; every layer crosses once). And
Chromium as a WHEP viewer on the remote node decodes an aiortc publisher's bridged stream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from aiortc.mediastreams import AudioStreamTrack

from bench.flat_color_track import FlatColorTrack
from bench.loopback_node import RunningNode, node_settings, running_node, token
from bench.redis_server import redis_server

from ..helpers import eventually, eventually_async, require_binary
from ..interop.http_sessions import whip_publish
from .simulcast_helpers import WIDTHS, publish_simulcast, top_and_lowered_viewer

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]


@contextlib.asynccontextmanager
async def two_regions() -> AsyncIterator[tuple[RunningNode, RunningNode]]:
    """``origin`` (eu-central) and ``viewing`` (eu-west) on one redis-server. A client with no
    latency data lands in the region of the node it asks (the default region)."""
    if require_binary("redis-server") is None:
        pytest.skip("redis-server is not installed (make test installs it)")
    async with redis_server() as server:
        shared = {"registry": {"url": server.url}, "heartbeat_interval": 0.2, "node_ttl": 1.5}
        async with (
            running_node(node_settings(node_id="origin", region="eu-central", **shared)) as a,
            running_node(node_settings(node_id="viewing", region="eu-west", **shared)) as b,
        ):
            for node in (a, b):
                await eventually(lambda n=node: len(n.node.cluster.snapshot) == 2, 10)  # type: ignore[misc]
            yield a, b


async def test_remote_viewers_choose_their_layers(browser: object) -> None:
    async with two_regions() as (origin, viewing):
        await publish_simulcast(origin, browser)
        tasks: list[asyncio.Task[None]] = []
        try:
            two = await top_and_lowered_viewer(viewing, tasks)
            assert set(two.top.since(two.lowered)[-10:]) == {WIDTHS["f"]}
            stand_in = next(t for t in viewing.worker.rooms["sim"].tracks() if t.kind == "video")
            assert [layer.rid for layer in stand_in.layers] == ["q", "h", "f"]

            # The origin sends each layer once, to the one bridge.
            (out,) = origin.worker.bridging.outgoing.values()
            assert sorted(d.up.rid for d in out.by_ssrc.values() if d.up.kind == "video") == [
                "f",
                "h",
                "q",
            ]
        finally:
            for task in tasks:
                task.cancel()


async def test_chromium_whep_viewer_on_a_remote_node_decodes_the_bridged_stream(
    browser: object,
) -> None:
    async with two_regions() as (origin, viewing):
        publisher, _ = await whip_publish(
            origin, "show", token("show", "py-host"), FlatColorTrack(320, 240), AudioStreamTrack()
        )
        page = await browser.new_page()  # type: ignore[attr-defined]
        try:
            await page.goto(viewing.http("/?view=show"))  # the demo page's WHEP player
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
            # the viewer is on the viewing node, fed by one bridge from the origin
            assert viewing.node.relay.bridge_load()["in"] == (1, 2)
            assert origin.node.relay.bridge_load()["out"] == (1, 2)
        finally:
            await page.close()
            await publisher.close()
