"""Simulcast across a bridge: Chromium publishes three layers on one node; two aiortc
viewers on another node, behind one bridge, get different layers by their own ceilings
(layer choice stays on the viewer's node; every layer crosses once)."""

from __future__ import annotations

import asyncio
import time

import pytest

from bench.loopback_node import RunningNode, running_node

from ..helpers import bridge, eventually
from .simulcast_helpers import RAMP_UP, WIDTHS, layer_of, publish_simulcast, settled_on, viewer

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
            _, _, top = await viewer(viewing, "top", tasks)
            low_client, sid, low = await viewer(viewing, "low", tasks)
            await eventually(lambda: all(lay.rate_bps > 0 for lay in stand_in.layers), RAMP_UP)
            await eventually(lambda: layer_of(viewing, "top") == "f", 30)
            await eventually(lambda: settled_on(top, WIDTHS["f"]), 15)

            await low_client.set_quality(sid, "low")
            lowered = time.monotonic()
            await eventually(lambda: layer_of(viewing, "low") == "q", 15)
            await eventually(lambda: low.since(lowered).count(WIDTHS["q"]) >= 15, 20)
            assert set(top.since(lowered)[-10:]) == {WIDTHS["f"]}

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
