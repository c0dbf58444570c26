"""The room directory on a real redis-server under faults (issue 20): a node claims the rooms
it hosts again when Redis lost its data, and a hung Redis does not slow every join."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
import redis.asyncio as redis

from bench.loopback_node import node_settings, running_node
from bench.redis_server import redis_server

from ..helpers import require_binary

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
            assert await registry.room_node("kept") == node_id
            client = redis.from_url(server.url)
            try:
                await client.flushall()
                assert await registry.room_node("kept") is None
                # heartbeats every 0.1 s: the claim is back within one or two
                deadline = asyncio.get_running_loop().time() + 5
                while await registry.room_node("kept") != node_id:
                    assert asyncio.get_running_loop().time() < deadline, "never reclaimed"
                    await asyncio.sleep(0.05)
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
            deadline = asyncio.get_running_loop().time() + 10
            while cluster._registry_quiet:
                assert asyncio.get_running_loop().time() < deadline, "still quiet"
                await asyncio.sleep(0.05)
            await rn.join("after", "dave")
            assert await cluster.registry.room_node("after") == rn.node.settings.node_id
