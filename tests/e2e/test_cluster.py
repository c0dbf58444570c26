"""Several nodes as separate processes on one real redis-server (issue 4 tests 2-5)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiortc.mediastreams import AudioStreamTrack

from bench.flat_color_track import FlatColorTrack
from bench.loopback_node import LOOPBACK, token
from bench.node_process import NodeProcess
from bench.redis_server import redis_server
from signaling.client import ClientError, EurelayClient

from ..cluster_nodes import GRACE, HEARTBEAT, TTL, NodeSpec, cluster
from ..delay_proxy import delay_proxy
from ..helpers import require_binary

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]
ADMIN = token("", "ops", admin=True, publish=False)


@pytest.fixture(autouse=True)
def _needs_redis() -> None:
    if require_binary("redis-server") is None:
        pytest.skip("redis-server is not installed (make test installs it)")


async def admin_get(node: NodeProcess, path: str) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.get(node.http_url + path, headers={"Authorization": f"Bearer {ADMIN}"}) as resp,
    ):
        return resp.status, await resp.json()


async def wait_nodes(node: NodeProcess, count: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = await admin_get(node, "/v1/nodes")
        if status == 200 and len(body["nodes"]) == count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{node.http_url} never saw {count} nodes")


@contextlib.asynccontextmanager
async def probes_via_proxies(nodes: dict[str, NodeProcess], rtt: dict[str, float]):  # type: ignore[no-untyped-def]
    """Per-client delay proxies in front of each region's ping endpoint."""
    async with contextlib.AsyncExitStack() as stack:
        urls = {}
        for region, node in nodes.items():
            host, port = node.http_address.split(":")
            proxy = await stack.enter_async_context(delay_proxy((host, int(port)), rtt[region]))
            urls[region] = f"http://127.0.0.1:{proxy}/v1/ping"
        yield urls


async def joined(entry: NodeProcess, room: str, identity: str, **kw: Any) -> EurelayClient:
    client = EurelayClient(entry.ws_url, token(room, identity), host_addresses=LOOPBACK, **kw)
    await client.connect()
    return client


async def test_clients_land_on_their_lowest_rtt_region(tmp_path: Path) -> None:
    specs = [
        NodeSpec("west-1", "eu-west", "fr"),
        NodeSpec("central-1", "eu-central", "de"),
        NodeSpec("north-1", "eu-north", "se"),
    ]
    async with redis_server() as redis, cluster(redis, specs, tmp_path) as nodes:
        await wait_nodes(nodes["central-1"], 3)
        by_region = {
            "eu-west": nodes["west-1"],
            "eu-central": nodes["central-1"],
            "eu-north": nodes["north-1"],
        }
        clients: list[EurelayClient] = []
        try:
            near_paris = {"eu-west": 5, "eu-central": 60, "eu-north": 120}
            async with probes_via_proxies(by_region, near_paris) as urls:
                alice = await joined(nodes["central-1"], "shop", "alice", probe_urls=urls)
                clients.append(alice)
                bob = await joined(nodes["north-1"], "shop", "bob", probe_urls=urls)
                clients.append(bob)
            assert alice.rtts["eu-west"] < alice.rtts["eu-central"] < alice.rtts["eu-north"]
            assert alice.joined.node_id == bob.joined.node_id == "west-1"  # type: ignore[union-attr]
            assert alice.redirects and alice.redirects[0].node_id == "west-1"
            await alice.publish(FlatColorTrack(160, 120))
            _, video = await bob.next_track(15)  # one room, one node: media flows
            await asyncio.wait_for(video.recv(), 15)

            near_stockholm = {"eu-west": 90, "eu-central": 50, "eu-north": 4}
            async with probes_via_proxies(by_region, near_stockholm) as urls:
                carol = await joined(nodes["west-1"], "fika", "carol", probe_urls=urls)
                clients.append(carol)
            assert carol.joined.node_id == "north-1"  # type: ignore[union-attr]

            status, route = await admin_get(
                nodes["west-1"], "/v1/route?room=fika&rtt=eu-north:3,eu-west:40"
            )
            assert status == 200 and route["node"] == "north-1"
            assert "already lives on north-1" in route["reason"]
            assert {c["node"] for c in route["candidates"]} == {"west-1", "central-1", "north-1"}
        finally:
            for client in clients:
                await client.close()


async def _route_node(node: NodeProcess, room: str, rtt: str) -> str | None:
    status, body = await admin_get(node, f"/v1/route?room={room}&rtt={rtt}")
    return body["node"] if status == 200 else None


async def test_killed_node_is_avoided_and_terminated_node_drains(tmp_path: Path) -> None:
    specs = [
        NodeSpec("west-1", "eu-west"),
        NodeSpec("west-2", "eu-west"),
        NodeSpec("central-1", "eu-central"),
    ]
    async with redis_server() as redis, cluster(redis, specs, tmp_path) as nodes:
        await wait_nodes(nodes["central-1"], 3)
        west = "eu-west:5,eu-central:50"
        # Either west node may be chosen first (equal load); kill that one.
        first = await _route_node(nodes["central-1"], "fresh", west)
        assert first in ("west-1", "west-2")
        other = "west-2" if first == "west-1" else "west-1"

        os.kill(nodes[first].pid, signal.SIGKILL)
        killed_at = time.monotonic()
        while await _route_node(nodes["central-1"], "fresh", west) == first:
            assert time.monotonic() - killed_at < TTL + 3 * HEARTBEAT + 1.0
            await asyncio.sleep(0.05)
        assert await _route_node(nodes["central-1"], "fresh", west) == other
        await wait_nodes(nodes[other], 2)

        # A call on the other west node, then SIGTERM: it drains instead of dropping the call.
        probes = {"eu-west": 5.0, "eu-central": 50.0}
        host = EurelayClient(nodes[other].ws_url, token("call", "host"), host_addresses=LOOPBACK)
        host.rtts = probes
        await host.connect()
        guest = EurelayClient(nodes[other].ws_url, token("call", "guest"), host_addresses=LOOPBACK)
        guest.rtts = probes
        await guest.connect()
        assert host.joined.node_id == guest.joined.node_id == other  # type: ignore[union-attr]
        await host.publish(FlatColorTrack(160, 120), AudioStreamTrack())
        _, video = await guest.next_track(15)
        await asyncio.wait_for(video.recv(), 15)

        nodes[other].process.send_signal(signal.SIGTERM)
        async with aiohttp.ClientSession() as http:
            for _ in range(50):
                async with http.get(nodes[other].http_url + "/readyz") as resp:
                    if resp.status == 503:
                        break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("/readyz never turned 503")
        for _ in range(50):
            _, body = await admin_get(nodes["central-1"], "/v1/nodes")
            states = {n["id"]: n["state"] for n in body["nodes"]}
            if states.get(other) == "draining":
                break
            await asyncio.sleep(0.1)
        assert states.get(other) == "draining"
        newcomer = EurelayClient(
            nodes[other].ws_url, token("call", "late"), host_addresses=LOOPBACK
        )
        newcomer.rtts = probes
        await newcomer.connect()
        assert newcomer.joined.node_id == "central-1"  # type: ignore[union-attr]
        # Sent away from the draining node, it still gets the call's media: central-1
        # bridges the host's tracks from there (issue 20, case 5).
        while True:
            _, late_track = await newcomer.next_track(20)
            if late_track.kind == "video":
                break
        await asyncio.wait_for(late_track.recv(), 20)
        await newcomer.close()
        for _ in range(30):  # the existing call keeps flowing on the draining node
            await asyncio.wait_for(video.recv(), 5)
        assert nodes[other].process.returncode is None
        await guest.leave()
        await host.leave()
        assert await asyncio.wait_for(nodes[other].process.wait(), 10) == 0


async def test_redis_outage_keeps_media_then_refuses_then_recovers(tmp_path: Path) -> None:
    async with (
        redis_server() as redis,
        cluster(redis, [NodeSpec("west-1", "eu-west")], tmp_path) as nodes,
    ):
        node = nodes["west-1"]
        await wait_nodes(node, 1)
        host = await joined(node, "live", "host")
        viewer = await joined(node, "live", "viewer")
        await host.publish(FlatColorTrack(160, 120))
        _, video = await viewer.next_track(15)
        await asyncio.wait_for(video.recv(), 15)

        await redis.stop()
        stopped = time.monotonic()
        while time.monotonic() - stopped < GRACE + 1.0:  # media is not the registry's business
            await asyncio.wait_for(video.recv(), 5)
        with pytest.raises(ClientError) as refused:
            await joined(node, "other", "late")
        assert refused.value.code == "registry_unavailable"

        await redis.start()  # same port, empty: nodes re-register by themselves
        for _ in range(60):
            try:
                again = await joined(node, "other", "late")
                break
            except ClientError:
                await asyncio.sleep(0.2)
        else:
            raise AssertionError("joins never recovered after Redis came back")
        assert again.joined.node_id == "west-1"  # type: ignore[union-attr]
        await asyncio.wait_for(video.recv(), 5)
        for client in (again, viewer, host):
            await client.close()


async def test_residency_is_never_violated(tmp_path: Path) -> None:
    specs = [NodeSpec("west-1", "eu-west", "fr"), NodeSpec("central-1", "eu-central", "de")]
    async with redis_server() as redis, cluster(redis, specs, tmp_path) as nodes:
        await wait_nodes(nodes["west-1"], 2)
        async with aiohttp.ClientSession() as http:
            for name, jurisdictions in (("klinik", ["de"]), ("vard", ["se"])):
                async with http.post(
                    nodes["west-1"].http_url + "/v1/rooms",
                    json={"name": name, "allowed_jurisdictions": jurisdictions},
                    headers={"Authorization": f"Bearer {ADMIN}"},
                ) as resp:
                    assert resp.status == 201
        patient = EurelayClient(
            nodes["west-1"].ws_url, token("klinik", "patient"), host_addresses=LOOPBACK
        )
        patient.rtts = {"eu-west": 1.0, "eu-central": 80.0}  # nearest is the wrong country
        await patient.connect()
        assert patient.joined.node_id == "central-1"  # type: ignore[union-attr]
        await patient.close()
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                nodes["west-1"].http_url + "/whip/klinik?x=1",
                data="v=0\r\n",
                headers={
                    "Content-Type": "application/sdp",
                    "Authorization": f"Bearer {token('klinik', 'camera')}",
                },
                allow_redirects=False,
            ) as resp,
        ):
            assert resp.status == 307  # WHIP clients are sent to the room's node
            # (marked as redirected: central-1 takes it without deciding again)
            location = nodes["central-1"].http_url + "/whip/klinik?x=1&redirected=1"
            assert resp.headers["Location"] == location
        with pytest.raises(ClientError) as refused:
            await joined(nodes["central-1"], "vard", "nobody")
        assert refused.value.code == "no_eligible_node"
        status, route = await admin_get(nodes["central-1"], "/v1/route?room=vard")
        assert status == 200 and route["node"] is None
        assert all(not c["eligible"] and "jurisdiction" in c["why"] for c in route["candidates"])
