"""Nodes learn RTTs from RTCP on live sessions and file them under the client's prefix."""

from __future__ import annotations

import asyncio

import pytest
from aiortc.mediastreams import AudioStreamTrack

from bench.flat_color_track import FlatColorTrack
from bench.loopback_node import node_settings, running_node

from ..helpers import eventually

pytestmark = pytest.mark.timeout(60)


async def test_rtt_from_receiver_reports_reaches_the_registry() -> None:
    settings = node_settings(region="eu-west", heartbeat_interval=0.3)
    async with running_node(settings) as rn:
        host = await rn.join("rtt", "host")
        await host.publish(FlatColorTrack(160, 120), AudioStreamTrack())
        viewer = await rn.join("rtt", "viewer", publish=False)
        _, track = await viewer.next_track(10)
        await asyncio.wait_for(track.recv(), 10)
        leg = rn.worker.rooms["rtt"].by_identity("viewer").subscriber_leg  # type: ignore[union-attr]
        # aiortc answers the relay's (forwarded) sender reports with receiver reports
        await eventually(lambda: leg.rtt_ms is not None, timeout=15)
        assert 0 <= leg.rtt_ms < 100  # loopback
        registry = rn.node.cluster.registry

        async def learned() -> dict[str, float]:
            while not (rtts := await registry.learned_rtts("127.0.0.0/24")):
                await asyncio.sleep(0.1)
            return rtts

        rtts = await asyncio.wait_for(learned(), 10)
        assert set(rtts) == {"eu-west"} and rtts["eu-west"] < 100
        nodes = await registry.live_nodes()
        assert nodes[0].load.sessions == 2 and nodes[0].load.bitrate_bps > 0
