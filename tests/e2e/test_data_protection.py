"""GDPR, checked from the outside (issue 18): a real call from another host leaves no full
client IP in the node's log at any level (aiortc's and aioice's debug lines included) and no
identity, room name or IP in /metrics."""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import pytest
import yaml

from bench.loopback_node import API_KEY, API_SECRET, token
from bench.node_process import spawn_node

from ..interop.ns_peers import ROOT, peer
from ..netns import peer_namespace

pytestmark = pytest.mark.timeout(90)


async def test_a_call_leaves_no_client_ip_in_logs_and_nothing_personal_in_metrics(
    tmp_path: Path,
) -> None:
    room, host, viewer = "consultation-4711", "dr-schmidt", "patient-meyer"
    with peer_namespace() as ns:
        config = tmp_path / "node.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "keys": {API_KEY: API_SECRET},
                    "http": {"host": ns.host_ip},
                    "rtc": {"bind": "0.0.0.0", "announce": [ns.host_ip]},
                }
            )
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with (tmp_path / "node.log").open("wb") as log:
            async with spawn_node(
                config, "--log-level", "debug", env=env, cwd=ROOT, stderr=log
            ) as node:
                publish = [f"{node.http_url}/whip/{room}", token(room, host, subscribe=False)]
                async with peer(ns, "whip", *publish, "--transport", "none") as publisher:
                    await publisher.wait_line("connected")
                    play = [f"{node.http_url}/whep/{room}", token(room, viewer, publish=False)]
                    async with peer(ns, "whep", *play, "--transport", "none") as player:
                        await player.wait_line("frame 320x240")
                        async with (
                            aiohttp.ClientSession() as http,
                            http.get(node.http_url + "/metrics") as resp,
                        ):
                            metrics = await resp.text()
        text = (tmp_path / "node.log").read_text(errors="replace")
    assert "eurelay_relay_rtp_sent_packets_total" in metrics
    for personal in (ns.peer_ip, room, host, viewer):
        assert personal not in metrics
    assert ns.peer_ip not in text
    # the client's address was logged (where each leg connected from), truncated to its /24
    assert ns.peer_ip.rsplit(".", 1)[0] + ".x" in text
