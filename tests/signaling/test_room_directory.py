"""The room directory on a real redis-server under faults (issue 20): a node claims the rooms
it hosts again when Redis lost its data, and a hung Redis does not slow every join."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as redis

from bench.loopback_node import node_settings, running_node, token
from bench.redis_server import RedisServer, free_port, redis_server
from regions.models import NodeLoad, RoomPolicy
from regions.registry import RegistryError

from ..helpers import eventually, eventually_async, require_binary

pytestmark = pytest.mark.timeout(30)


async def test_a_flushed_redis_gets_the_hosted_rooms_back() -> None:
    if require_binary("redis-server") is None:
        pytest.skip("redis-server is not installed (make test installs it)")
    async with redis_server() as server:
        settings = node_settings(registry={"url": server.url}, heartbeat_interval=0.1, node_ttl=1)
        async with running_node(settings) as rn:
            registry = rn.node.cluster.registry
            node_id = rn.node.settings.node_id
            await rn.join("kept", "alice")
            assert node_id in await registry.room_hosts("kept")

            async def reclaimed() -> bool:
                return node_id in await registry.room_hosts("kept")

            client = redis.from_url(server.url)
            try:
                await client.flushall()
                assert not await registry.room_hosts("kept")
                # heartbeats every 0.1 s: the claim is back within one or two
                await eventually_async(reclaimed, 5)
                assert any(n.id == node_id for n in await registry.live_nodes())
            finally:
                await client.aclose()


async def test_a_hung_redis_costs_one_short_wait_then_none() -> None:
    """SIGSTOP makes Redis hang (a refused connection fails fast; a hung one waited for the
    socket timeout on every registry call of every join)."""
    if require_binary("redis-server") is None:
        pytest.skip("redis-server is not installed (make test installs it)")
    async with redis_server() as server:
        settings = node_settings(
            registry={"url": server.url},
            heartbeat_interval=0.2,
            routing={"registry_timeout": 0.2},
        )
        async with running_node(settings) as rn:
            cluster = rn.node.cluster
            await rn.join("before", "alice")
            assert server.process is not None
            os.kill(server.process.pid, signal.SIGSTOP)
            try:
                await rn.join("during-1", "bob")  # one short wait, then the snapshot
                assert cluster.registry_timeouts == 1
                for i in range(3):  # and no more waits until a heartbeat gets through
                    await rn.join(f"during-{i + 2}", "carol")
                assert cluster.registry_timeouts == 1
            finally:
                os.kill(server.process.pid, signal.SIGCONT)
            # Redis answers again: a heartbeat gets through and joins use the registry.
            await eventually(lambda: not cluster._registry_quiet, 10)
            await rn.join("after", "dave")
            assert rn.node.settings.node_id in await cluster.registry.room_hosts("after")


async def test_two_nodes_that_disagree_send_a_client_on_once() -> None:
    """Each node's node list says the other is less loaded (as two idle nodes' lists often
    disagree): the first claims the room for the second before redirecting, and the second
    takes the session instead of sending it back."""
    if require_binary("redis-server") is None:
        pytest.skip("redis-server is not installed (make test installs it)")
    async with redis_server() as server:
        # heartbeats far apart: the node lists stay as the test sets them
        settings = {"registry": {"url": server.url}, "heartbeat_interval": 60, "node_ttl": 120}
        async with (
            running_node(node_settings(node_id="a", **settings)) as a,
            running_node(node_settings(node_id="b", **settings)) as b,
        ):
            for rn in (a, b):
                await rn.node.cluster._beat()  # both see both
            for rn, busy in ((a, "a"), (b, "b")):
                rn.node.cluster.snapshot = [
                    n.model_copy(update={"load": NodeLoad(sessions=50 if n.id == busy else 0)})
                    for n in rn.node.cluster.snapshot
                ]
            headers = {"Content-Type": "application/sdp", **_bearer(token("loop", "cam"))}
            async with aiohttp.ClientSession() as http:
                url, hops = a.http("/whip/loop"), []
                for _ in range(5):  # a WHIP client following 307s with its token
                    async with http.post(
                        url, data="v=0\r\n", headers=headers, allow_redirects=False
                    ) as resp:
                        hops.append(resp.status)
                        if resp.status != 307:
                            break
                        url = resp.headers["Location"]
            # one redirect, to b, which took it (and found the offer wanting)
            assert hops == [307, 400], hops
            assert url.startswith(b.http("/whip/loop"))
            assert "b" in await b.node.cluster.registry.room_hosts("loop")


def _bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


async def test_the_redirect_marker_does_not_get_around_residency() -> None:
    if require_binary("redis-server") is None:
        pytest.skip("redis-server is not installed (make test installs it)")
    async with redis_server() as server:
        settings = {"registry": {"url": server.url}, "heartbeat_interval": 60, "node_ttl": 120}
        async with (
            running_node(node_settings(node_id="de", jurisdiction="de", **settings)) as de,
            running_node(node_settings(node_id="fr", jurisdiction="fr", **settings)) as fr,
        ):
            for rn in (de, fr):
                await rn.node.cluster._beat()
            await de.node.cluster.set_policy("vault", RoomPolicy(allowed_jurisdictions=["fr"]))
            headers = {"Content-Type": "application/sdp", **_bearer(token("vault", "cam"))}
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    de.http("/whip/vault?redirected=1"),
                    data="v=0\r\n",
                    headers=headers,
                    allow_redirects=False,
                ) as resp,
            ):
                # not taken here, marker or not; and not sent on a second time
                assert resp.status == 503
                assert (await resp.json())["code"] == "no_eligible_node"
            assert "vault" not in de.worker.rooms


async def test_a_leave_refused_while_redis_is_down_reaches_it_later(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """A participant leaves while Redis is down; Redis comes back with its data (saved at
    shutdown): the refused directory write is tried again until it lands, so the
    participant does not stay in the directory for good."""
    if require_binary("redis-server") is None:
        pytest.skip("redis-server is not installed (make test installs it)")
    server = RedisServer(free_port(), data_dir=str(tmp_path))  # its own dump file
    await server.start()
    try:
        settings = node_settings(registry={"url": server.url}, heartbeat_interval=0.2)
        async with running_node(settings) as rn:
            registry = rn.node.cluster.registry
            client = await rn.join("brief", "alice")

            async def listed() -> bool:
                return [m.identity for m in await registry.room_members("brief")] == ["alice"]

            await eventually_async(listed, 5)
            admin = redis.from_url(server.url)
            with contextlib.suppress(Exception):
                await admin.shutdown(save=True)  # the server closes the connection
            await admin.aclose()
            assert server.process is not None
            await server.process.wait()
            caplog.set_level(logging.WARNING, logger="signaling.cascade")
            await client.close()
            await eventually(lambda: "brief" not in rn.worker.rooms)
            await eventually(
                lambda: any("directory write failed" in r.getMessage() for r in caplog.records),
                10,
            )
            await server.start()  # loads the dump: alice is still listed there

            async def gone() -> bool:
                try:
                    return await registry.room_members("brief") == []
                except RegistryError:
                    return False

            await eventually_async(gone, 10)
    finally:
        await server.stop()
