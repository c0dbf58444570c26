"""Whether the registry lists a node among a room's hosts follows whether it hosts the room."""

from __future__ import annotations

import asyncio

import pytest

from bench.loopback_node import RunningNode

from ..helpers import eventually

pytestmark = pytest.mark.timeout(30)


async def settled(relay_node: RunningNode) -> None:
    """The node's background work (room releases) has run."""
    tasks = list(relay_node.node._tasks)
    if tasks:
        await asyncio.wait(tasks, timeout=5)


async def test_a_reconnect_with_the_same_identity_keeps_the_rooms_claim(
    relay_node: RunningNode,
) -> None:
    node = relay_node.node
    registry = node.cluster.registry
    await relay_node.join("solo", "alice")
    assert node.settings.node_id in await registry.room_hosts("solo")
    # The same identity again (a reconnect): the old session leaves first, and for a moment
    # the room is empty, which must not give the claim up under the new session.
    await relay_node.join("solo", "alice")
    await settled(relay_node)
    assert relay_node.worker.rooms["solo"].participants
    assert node.settings.node_id in await registry.room_hosts("solo")


async def test_the_last_leave_releases_the_claim(relay_node: RunningNode) -> None:
    node = relay_node.node
    registry = node.cluster.registry
    client = await relay_node.join("brief", "bob")
    assert node.settings.node_id in await registry.room_hosts("brief")
    await client.close()
    await eventually(lambda: "brief" not in relay_node.worker.rooms)
    await settled(relay_node)
    assert not await registry.room_hosts("brief")
