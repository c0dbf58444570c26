"""``/metrics`` parses as Prometheus text and moves with traffic (issue 2 test 8)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from aiortc.mediastreams import AudioStreamTrack
from prometheus_client.parser import text_string_to_metric_families

from bench.flat_color_track import FlatColorTrack
from bench.loopback_node import RunningNode
from relay.stats import DROP_REASONS

from ..helpers import eventually

pytestmark = pytest.mark.timeout(60)


async def _scrape(relay_node: RunningNode) -> dict[str, float]:
    async with aiohttp.ClientSession() as http, http.get(relay_node.http("/metrics")) as resp:
        assert resp.status == 200
        text = await resp.text()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.name + "".join(f"|{k}={v}" for k, v in sorted(sample.labels.items()))
            values[key] = sample.value
            assert "identity" not in sample.labels and "ip" not in sample.labels
    return values


async def test_metrics_move_with_traffic(relay_node: RunningNode) -> None:
    idle = await _scrape(relay_node)
    assert idle["eurelay_relay_rooms"] == 0
    assert idle["eurelay_relay_rtp_sent_packets_total"] == 0

    host = await relay_node.join("metered", "host")
    await host.publish(FlatColorTrack(160, 120), AudioStreamTrack())
    viewer = await relay_node.join("metered", "viewer", publish=False)
    _, track = await viewer.next_track(10)
    await viewer.wait_data_channels()
    await host.wait_data_channels()
    host.send_data("hi")
    await asyncio.wait_for(viewer.data.get(), 5)
    await eventually(lambda: relay_node.worker.stats.rtp_packets_out > 50)

    busy = await _scrape(relay_node)
    assert busy["eurelay_relay_rooms"] == 1
    assert busy["eurelay_relay_participants"] == 2
    assert busy["eurelay_relay_tracks|kind=video"] == 1
    assert busy["eurelay_relay_tracks|kind=audio"] == 1
    assert busy["eurelay_signaling_connections"] == 2
    assert busy["eurelay_relay_rtp_received_packets_total"] > 0
    assert busy["eurelay_relay_rtp_sent_packets_total"] > 50
    assert busy["eurelay_relay_rtp_sent_bytes_total"] > 0
    # the viewer's video started at a keyframe asked for, or at the publisher's first one
    # replayed from the cache (it joined right after the publisher started)
    started = busy["eurelay_relay_keyframe_requests_sent_total"]
    assert started + busy["eurelay_relay_keyframe_replays_total"] >= 1
    assert busy["eurelay_relay_data_messages_total|direction=out"] >= 1
    assert busy["eurelay_relay_forward_duration_seconds_count"] > 0
    assert busy["eurelay_relay_dtls_handshake_duration_seconds_count"] >= 3
    assert busy["eurelay_relay_stun_requests_total"] >= 3

    later = await _scrape(relay_node)
    assert (
        later["eurelay_relay_rtp_sent_packets_total"]
        >= busy["eurelay_relay_rtp_sent_packets_total"]
    )
    del track


async def test_every_family_is_documented(relay_node: RunningNode) -> None:
    """docs/METRICS.md names every family a node serves, and every drop reason."""
    documented = (Path(__file__).resolve().parents[2] / "docs" / "METRICS.md").read_text()
    async with aiohttp.ClientSession() as http, http.get(relay_node.http("/metrics")) as resp:
        text = await resp.text()
    served = {f.name for f in text_string_to_metric_families(text) if f.name.startswith("eurelay")}
    assert len(served) > 20
    # counters are listed as scraped, with their _total
    missing = [n for n in served if f"`{n}`" not in documented and f"`{n}_total`" not in documented]
    assert missing == []
    assert all(f"`{reason}`" in documented for reason in DROP_REASONS)


async def test_health_endpoints(relay_node: RunningNode) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(relay_node.http("/healthz")) as resp:
            assert resp.status == 200
        async with http.get(relay_node.http("/readyz")) as resp:
            assert resp.status == 200
        relay_node.node.draining = True
        async with http.get(relay_node.http("/readyz")) as resp:
            assert resp.status == 503
