"""The room directory on a real redis-server survives Redis losing its data: the node
hosting a room claims it again when it re-registers (issue 20, rooms split after a flush)."""

from __future__ import annotations

import asyncio

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
