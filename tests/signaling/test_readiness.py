"""``/readyz`` says whether the node can place sessions (issue 17): a load balancer must stop
sending traffic to a node that answers every join with 503 ``registry_unavailable``."""

from __future__ import annotations

import aiohttp
import pytest

from bench.loopback_node import node_settings, running_node
from bench.redis_server import redis_server

from ..helpers import eventually_async, require_binary

pytestmark = pytest.mark.timeout(30)


async def test_readyz_is_503_while_the_registry_is_gone_past_the_grace() -> None:
    if require_binary("redis-server") is None:
        pytest.skip("redis-server is not installed (make test installs it)")
    async with redis_server() as server:
        settings = node_settings(
            registry={"url": server.url},
            routing={"snapshot_grace": 0.5},
            heartbeat_interval=0.1,
        )
        async with running_node(settings) as rn, aiohttp.ClientSession() as http:
            last: dict[str, object] = {}

            async def readyz_is(status: int) -> bool:
                async with http.get(rn.http("/readyz")) as resp:
                    last.clear()
                    last.update(await resp.json())
                    return resp.status == status

            assert await readyz_is(200) and last["status"] == "ready"
            await server.stop()
            await eventually_async(lambda: readyz_is(503), 10)
            assert last["status"] == "registry_unavailable"
            assert "registry" in str(last["reason"])
            await server.start()  # same port: the heartbeat gets through again
            await eventually_async(lambda: readyz_is(200), 10)


async def test_readyz_is_503_with_a_reason_while_draining() -> None:
    async with running_node() as rn, aiohttp.ClientSession() as http:
        async with http.get(rn.http("/readyz")) as resp:
            assert resp.status == 200
        await rn.node.drain(0)
        async with http.get(rn.http("/readyz")) as resp:
            body = await resp.json()
            assert resp.status == 503 and body["status"] == "draining" and body["reason"]
