"""Chromium simulcast through the relay, one layer per viewer (issue 5, simulcast).

Chromium publishes three layers over WHIP (960x540, 480x270, 240x135); the relay answers
the rids itself and tells the layers apart by the rid header extension. Two aiortc viewers
join the room each time: one gets a lower layer (it asks for one, or its link is capped)
and then climbs back; the other keeps the top layer throughout.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest

from bench.loopback_node import RunningNode, token
from relay.netem import Impairment, UdpImpairmentProxy
from relay.track import UpTrack
from signaling.client import EurelayClient

from ..helpers import eventually

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]
# Chromium turns its upper layers on as its bandwidth estimate grows: seconds on an idle
# machine, longer on a loaded one (a clean-clone CI run once needed more than 20 s).
RAMP_UP = 40
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
    relay_node: RunningNode,
    name: str,
    tasks: list[asyncio.Task[None]],
    via: tuple[str, int] | None = None,
) -> tuple[EurelayClient, str, Frames]:
    """An aiortc viewer (closed by the fixture) decoding the room's video into ``Frames``."""
    client = relay_node.client(token("sim", name, publish=False), media_via=via)
    await client.connect()
    frames = Frames()
    while True:  # the room's audio track may come first
        sid, track = await client.next_track(20)
        if track.kind == "video":
            break
    tasks.append(asyncio.create_task(_decode(track, frames)))
    return client, sid, frames


def _layer_of(relay_node: RunningNode, identity: str) -> str:
    viewer = relay_node.worker.rooms["sim"].by_identity(identity)
    assert viewer is not None
    downs = [d for d in viewer.subscriptions.values() if d.up.kind == "video"]
    return downs[0].up.rid if downs else ""


def _settled_on(frames: Frames, width: int) -> bool:
    """The last few decoded frames all have ``width`` (earlier layers have drained)."""
    last = [w for _, w in frames.widths[-5:]]
    return len(last) == 5 and set(last) == {width}


async def _publish_simulcast(relay_node: RunningNode, browser: object) -> UpTrack:
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
    await eventually(lambda: "sim" in relay_node.worker.rooms, 10)
    room = relay_node.worker.rooms["sim"]
    track = next(t for t in room.tracks() if t.kind == "video")
    assert [layer.rid for layer in track.layers] == ["q", "h", "f"]
    return track


async def test_each_viewer_gets_its_own_layer(relay_node: RunningNode, browser: object) -> None:
    track = await _publish_simulcast(relay_node, browser)
    tasks: list[asyncio.Task[None]] = []
    try:
        _, _, top = await _viewer(relay_node, "top", tasks)
        low_client, sid, low = await _viewer(relay_node, "low", tasks)
        await eventually(lambda: all(layer.rate_bps > 0 for layer in track.layers), RAMP_UP)
        await eventually(lambda: _layer_of(relay_node, "top") == "f", 20)
        # frames of the layer it started on may still be in its decoder: wait them out
        await eventually(lambda: _settled_on(top, WIDTHS["f"]), 10)

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
        assert relay_node.worker.stats.layer_switches >= 2
    finally:
        for task in tasks:
            task.cancel()


async def test_capped_viewer_drops_a_layer_and_climbs_back(
    relay_node: RunningNode, browser: object
) -> None:
    """Issue 5 test 5: a viewer behind a bandwidth cap below the top layer gets a lower
    layer and decodes it; lifting the cap moves it up again; an uncapped viewer keeps the
    top layer throughout."""
    track = await _publish_simulcast(relay_node, browser)
    proxy = UdpImpairmentProxy(("127.0.0.1", relay_node.worker.port), seed=5)
    await proxy.start()
    tasks: list[asyncio.Task[None]] = []
    try:
        _, _, free = await _viewer(relay_node, "free", tasks)
        _, _, capped = await _viewer(relay_node, "capped", tasks, via=("127.0.0.1", proxy.port))
        await eventually(lambda: all(layer.rate_bps > 0 for layer in track.layers), RAMP_UP)
        await eventually(
            lambda: _layer_of(relay_node, "free") == _layer_of(relay_node, "capped") == "f", 30
        )
        await eventually(lambda: _settled_on(free, WIDTHS["f"]), 10)
        free_layers: list[str] = []

        async def watch_free() -> None:
            while True:
                free_layers.append(_layer_of(relay_node, "free"))
                await asyncio.sleep(0.5)

        tasks.append(asyncio.create_task(watch_free()))

        def ramped_up() -> bool:  # Chromium starts its upper layers low
            q, h, f = (layer.rate_bps for layer in track.layers)
            return 0 < q < h < f and f > 300_000

        await eventually(ramped_up, RAMP_UP)
        rates = [layer.rate_bps for layer in track.layers]
        cap_kbps = (rates[1] + rates[2]) / 2 / 1000 + 60  # "h", audio and headers fit
        # a link with a deep buffer (1 s), as mobile links have: the cap shows as loss once
        # the queue overflows, and keyframes of the lower layer still get through
        proxy.set(down=Impairment(rate_kbps=cap_kbps, queue_ms=1000))
        capped_at = time.monotonic()
        await eventually(lambda: _layer_of(relay_node, "capped") in ("q", "h"), 20)
        await eventually(lambda: sum(w < WIDTHS["f"] for w in capped.since(capped_at)) >= 15, 30)
        # (the relay usually moves it when the cap's queue shows in the round trip, before
        # the queue overflows: proxy.down.dropped may well be 0)

        proxy.set(down=Impairment())
        lifted_at = time.monotonic()
        await eventually(lambda: _layer_of(relay_node, "capped") == "f", 40)
        await eventually(lambda: capped.since(lifted_at).count(WIDTHS["f"]) >= 15, 20)

        assert free_layers and set(free_layers) == {"f"}, free_layers
        top = free.since(capped_at)
        assert len(top) >= 30 and set(top) == {WIDTHS["f"]}, sorted(set(top))
    finally:
        for task in tasks:
            task.cancel()
        proxy.close()
