"""A node inside this process on loopback, and tokens for it: the bench's and the tests' node.

``running_node()`` serves the real app on free ports (HTTP and UDP) and closes every client
it handed out, then the server, on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp.test_utils import TestServer

from relay.worker import RelayWorker
from signaling.app import create_app, server_options
from signaling.app_keys import NODE
from signaling.client import EurelayClient
from signaling.node import Node
from signaling.settings import Settings, load_settings
from signaling.tokens import Grant, mint

API_KEY = "test-key"
API_SECRET = "test-secret-0123456789-0123456789-abcdef"
LOOPBACK = ["127.0.0.1"]


CLUSTER_SECRET = "cluster-secret-for-loopback-tests-only-0123"


def node_settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "http": {"host": "127.0.0.1", "port": 0},
        "rtc": {"udp_port": 0, "bind": "127.0.0.1", "announce": LOOPBACK},
        "keys": {API_KEY: API_SECRET},
        "cluster": {"secret": CLUSTER_SECRET},
    }
    for key, value in overrides.items():
        if isinstance(value, dict):
            base.setdefault(key, {}).update(value)
        else:
            base[key] = value
    return load_settings(None, base)


def token(
    room: str = "room",
    identity: str = "alice",
    *,
    publish: bool = True,
    subscribe: bool = True,
    data: bool = True,
    admin: bool = False,
    ttl: float = 3600,
    secret: str = API_SECRET,
    key: str = API_KEY,
    now: float | None = None,
) -> str:
    grant = Grant(
        room=room,
        can_publish=publish,
        can_subscribe=subscribe,
        can_publish_data=data,
        room_admin=admin,
    )
    return mint(key, secret, identity, grant, ttl=ttl, now=now)


@dataclass
class RunningNode:
    server: TestServer
    clients: list[EurelayClient] = field(default_factory=list)

    @property
    def node(self) -> Node:
        return self.server.app[NODE]

    @property
    def worker(self) -> RelayWorker:
        """The relay worker inside, for white-box checks (signaling never reaches in)."""
        return self.node.relay.worker

    @property
    def url(self) -> str:
        return str(self.server.make_url("/v1/rtc")).replace("http://", "ws://")

    def http(self, path: str) -> str:
        return str(self.server.make_url(path))

    def client(self, tok: str, **kwargs: Any) -> EurelayClient:
        client = EurelayClient(self.url, tok, host_addresses=LOOPBACK, **kwargs)
        self.clients.append(client)
        return client

    async def join(self, room: str, identity: str, **grant: Any) -> EurelayClient:
        client = self.client(token(room, identity, **grant))
        await client.connect()
        return client


@contextlib.asynccontextmanager
async def running_node(
    settings: Settings | None = None, host: str = "127.0.0.1"
) -> AsyncIterator[RunningNode]:
    app = create_app(settings or node_settings())
    server = TestServer(app, host=host, port=0)
    await server.start_server(**server_options())
    await app[NODE].announce(str(server.make_url("/")).rstrip("/"))
    running = RunningNode(server)
    try:
        yield running
    finally:
        for client in running.clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 5)
        await server.close()
