"""Chromium simulcast through the relay, one layer per viewer (issue 5, simulcast).

Chromium publishes three layers over WHIP (960x540, 480x270, 240x135); the relay answers
the rids itself and tells the layers apart by the rid header extension. Two aiortc viewers
join the room each time: one gets a lower layer (it asks for one, or its link is capped)
and then climbs back; the other keeps the top layer throughout.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from bench.loopback_node import RunningNode
from relay.netem import Impairment, UdpImpairmentProxy

from ..helpers import eventually
from .simulcast_helpers import (
    RAMP_UP,
    WIDTHS,
    layer_of,
    publish_simulcast,
    settled_on,
    top_and_lowered_viewer,
    viewer,
)

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]


async def test_each_viewer_gets_its_own_layer(relay_node: RunningNode, browser: object) -> None:
    await publish_simulcast(relay_node, browser)
    tasks: list[asyncio.Task[None]] = []
    try:
        two = await top_and_lowered_viewer(relay_node, tasks)
        top, low, lowered = two.top, two.low, two.lowered

        await two.low_client.set_quality(two.low_sid, "high")
        raised = time.monotonic()
        await eventually(lambda: layer_of(relay_node, "low") == "f", 20)
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
    track = await publish_simulcast(relay_node, browser)
    proxy = UdpImpairmentProxy(("127.0.0.1", relay_node.worker.port), seed=5)
    await proxy.start()
    tasks: list[asyncio.Task[None]] = []
    try:
        _, _, free = await viewer(relay_node, "free", tasks)
        _, _, capped = await viewer(relay_node, "capped", tasks, via=("127.0.0.1", proxy.port))
        await eventually(lambda: all(layer.rate_bps > 0 for layer in track.layers), RAMP_UP)
        await eventually(
            lambda: layer_of(relay_node, "free") == layer_of(relay_node, "capped") == "f", 30
        )
        await eventually(lambda: settled_on(free, WIDTHS["f"]), 10)
        free_layers: list[str] = []

        async def watch_free() -> None:
            while True:
                free_layers.append(layer_of(relay_node, "free"))
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
        await eventually(lambda: layer_of(relay_node, "capped") in ("q", "h"), 20)
        await eventually(lambda: sum(w < WIDTHS["f"] for w in capped.since(capped_at)) >= 15, 30)
        # (the relay usually moves it when the cap's queue shows in the round trip, before
        # the queue overflows: proxy.down.dropped may well be 0)

        proxy.set(down=Impairment())
        lifted_at = time.monotonic()
        await eventually(lambda: layer_of(relay_node, "capped") == "f", 40)
        await eventually(lambda: capped.since(lifted_at).count(WIDTHS["f"]) >= 15, 20)

        assert free_layers and set(free_layers) == {"f"}, free_layers
        top = free.since(capped_at)
        assert len(top) >= 30 and set(top) == {WIDTHS["f"]}, sorted(set(top))
    finally:
        for task in tasks:
            task.cancel()
        proxy.close()
