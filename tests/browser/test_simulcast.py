"""Chromium simulcast through the relay, one layer per viewer (issue 5, simulcast).

Chromium publishes three layers over WHIP (960x540, 480x270, 240x135); the relay answers
the rids itself and tells the layers apart by the rid header extension. Two aiortc viewers
join the room: one lowers its ceiling to "low" and must decode the 240-pixel layer, then
raises it and climbs back to the top layer; the other keeps the top layer throughout.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest

from signaling.client import EurelayClient

from ..helpers import RunningNode, eventually, token

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]
WIDTHS = {"q": 240, "h": 480, "f": 960}


@dataclass
class Frames:
    widths: list[tuple[float, int]] = field(default_factory=list)

    def since(self, start: float) -> list[int]:
        return [w for t, w in self.widths if t >= start]


async def _decode(track: object, frames: Frames) -> None:
    while True:
        frame = await track.recv()  # type: ignore[attr-defined]
        frames.widths.append((time.monotonic(), frame.width))


async def _viewer(
    relay_node: RunningNode, name: str, tasks: list[asyncio.Task[None]]
) -> tuple[EurelayClient, str, Frames]:
    """An aiortc viewer (closed by the fixture) decoding the room's video into ``Frames``."""
    client = relay_node.client(token("sim", name, publish=False))
    await client.connect()
    frames = Frames()
    while True:  # the room's audio track may come first
        sid, track = await client.next_track(20)
        if track.kind == "video":
            break
    tasks.append(asyncio.create_task(_decode(track, frames)))
    return client, sid, frames


def _layer_of(relay_node: RunningNode, identity: str) -> str:
    viewer = relay_node.node.worker.rooms["sim"].by_identity(identity)
    assert viewer is not None
    downs = [d for d in viewer.subscriptions.values() if d.up.kind == "video"]
    return downs[0].up.rid if downs else ""


async def test_each_viewer_gets_its_own_layer(relay_node: RunningNode, browser: object) -> None:
    page = await browser.new_page()  # type: ignore[attr-defined]
    await page.goto(relay_node.http("/"))
    await page.evaluate(
        """async ([url, token]) => {
            const {whipPublish} = await import("/static/eurelay.js");
            const stream = await navigator.mediaDevices.getUserMedia(
                {video: {width: 960, height: 540, frameRate: 15}, audio: true});
            window.whip = await whipPublish(url, token, stream, {simulcast: true});
        }""",
        [relay_node.http("/whip/sim"), token("sim", "chromium", subscribe=False)],
    )
    await eventually(lambda: "sim" in relay_node.node.worker.rooms, 10)
    room = relay_node.node.worker.rooms["sim"]
    track = next(t for t in room.tracks() if t.kind == "video")
    assert [layer.rid for layer in track.layers] == ["q", "h", "f"]

    tasks: list[asyncio.Task[None]] = []
    try:
        _, _, top = await _viewer(relay_node, "top", tasks)
        low_client, sid, low = await _viewer(relay_node, "low", tasks)
        await eventually(lambda: all(layer.rate_bps > 0 for layer in track.layers), 20)
        await eventually(lambda: _layer_of(relay_node, "top") == "f", 20)
        # frames of the layer it started on may still be in its decoder: wait them out
        await eventually(lambda: top.widths[-5:] == [(t, 960) for t, _ in top.widths[-5:]], 10)

        await low_client.set_quality(sid, "low")
        lowered = time.monotonic()
        await eventually(lambda: _layer_of(relay_node, "low") == "q", 15)
        await eventually(lambda: low.since(lowered).count(WIDTHS["q"]) >= 15, 20)

        await low_client.set_quality(sid, "high")
        raised = time.monotonic()
        await eventually(lambda: _layer_of(relay_node, "low") == "f", 20)
        await eventually(lambda: low.since(raised).count(WIDTHS["f"]) >= 15, 20)

        top_widths = top.since(lowered)
        assert len(top_widths) >= 30 and set(top_widths) == {WIDTHS["f"]}, set(top_widths)
        assert relay_node.node.worker.stats.layer_switches >= 2
    finally:
        for task in tasks:
            task.cancel()
