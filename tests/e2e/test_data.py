"""Data messages over the data channels (issue 2 test 5)."""

from __future__ import annotations

import asyncio

import pytest

from bench.loopback_node import node_settings, running_node
from signaling import protocol as p
from signaling.client import EurelayClient

pytestmark = pytest.mark.timeout(60)


async def _join_all(rn: object, room: str, names: list[str]) -> list[EurelayClient]:
    clients = [await rn.join(room, n) for n in names]  # type: ignore[attr-defined]
    for c in clients:
        await c.wait_data_channels()
    return clients


async def _next(client: EurelayClient, timeout: float = 5.0) -> dict[str, object]:
    return await asyncio.wait_for(client.data.get(), timeout)


async def test_broadcast_and_targeted_messages() -> None:
    async with running_node() as rn:
        alice, bob, carol = await _join_all(rn, "chat", ["alice", "bob", "carol"])
        alice.send_data("hello all", topic="chat")
        for receiver in (bob, carol):
            message = await _next(receiver)
            assert message["payload"] == "hello all"
            assert message["topic"] == "chat"
            assert message["from_identity"] == "alice"

        alice.send_data("just for carol", to=["carol"])
        assert (await _next(carol))["payload"] == "just for carol"

        bob.send_data("lossy ping", lossy=True)
        assert (await _next(alice))["payload"] == "lossy ping"
        assert (await _next(carol))["payload"] == "lossy ping"

        await asyncio.sleep(0.3)  # nothing else may arrive: no echo, no leak to bob
        assert alice.data.empty(), "the sender got its own message back"
        assert bob.data.empty(), "bob got a message addressed to carol only"
        assert carol.data.empty()


async def test_oversize_and_over_rate_messages_get_errors() -> None:
    settings = node_settings(rooms={"data_max_bytes": 1024, "data_rate": 5.0, "data_burst": 5.0})
    async with running_node(settings) as rn:
        alice, bob = await _join_all(rn, "limits", ["alice", "bob"])
        alice.send_data("x" * 2000)
        error = await alice.wait_for(p.Error, timeout=5)
        assert error.code == "data_too_large"

        for i in range(20):
            alice.send_data(f"m{i}")
        error = await alice.wait_for(p.Error, lambda e: e.code == "data_rate_limited", timeout=5)
        assert not error.fatal
        await asyncio.sleep(0.3)
        delivered = bob.data.qsize()
        assert 5 <= delivered < 20, f"{delivered} messages got through a limit of 5/s"

        bob.reliable.send('{"payload": "truncated')  # not the JSON envelope
        error = await bob.wait_for(p.Error, timeout=5)
        assert error.code == "invalid_data_message"


async def test_data_needs_its_grant() -> None:
    async with running_node() as rn:
        muted = await rn.join("quiet", "reader", data=False)
        other = await rn.join("quiet", "other")
        await muted.wait_data_channels()
        await other.wait_data_channels()
        muted.send_data("should not pass")
        error = await muted.wait_for(p.Error, timeout=5)
        assert error.code == "permission_denied"
        await asyncio.sleep(0.2)
        assert other.data.empty()
