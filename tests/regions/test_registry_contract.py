"""One contract, two backends: the in-memory registry and Redis (a real redis-server)."""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio.connection import AbstractConnection

from bench.redis_server import redis_server
from regions.models import NodeLoad, NodeRecord, NodeState, RoomPolicy
from regions.redis_registry import RedisRegistry
from regions.registry import Registry, create_registry

from ..helpers import eventually_async, require_binary

pytestmark = pytest.mark.timeout(30)
TTL = 0.5

Factory = Callable[[], Registry]


@pytest.fixture(params=["memory", "redis"])
async def make_registry(request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    """Returns a factory: each call is another signaling instance on the same backend."""
    made: list[Registry] = []
    if request.param == "memory":
        shared = create_registry("memory://", TTL)  # one process, one registry
        yield lambda: shared
        return
    if require_binary("redis-server") is None:
        pytest.skip("redis-server is not installed (make test installs it)")
    async with redis_server() as server:

        def make() -> Registry:
            registry = create_registry(server.url, TTL)
            made.append(registry)
            return registry

        yield make
        for registry in made:
            await registry.close()


def node(node_id: str, region: str = "eu-west", **extra: object) -> NodeRecord:
    return NodeRecord(id=node_id, region=region, signaling_url=f"http://{node_id}:7880", **extra)


async def test_register_heartbeat_and_expiry(make_registry: Factory) -> None:
    registry = make_registry()
    await registry.register(node("a"))
    await registry.register(node("b", "eu-central"))
    assert sorted(n.id for n in await registry.live_nodes()) == ["a", "b"]
    deadline = time.monotonic() + 0.9
    while time.monotonic() < deadline:  # a keeps beating, b goes silent
        await registry.heartbeat("a", NodeLoad(sessions=3, cpu=0.25))
        await asyncio.sleep(0.1)
    live = {n.id: n for n in await registry.live_nodes()}
    assert list(live) == ["a"]
    assert live["a"].load.sessions == 3 and live["a"].load.cpu == 0.25


async def test_draining_and_deregister(make_registry: Factory) -> None:
    registry = make_registry()
    await registry.register(node("a"))
    await registry.set_state("a", NodeState.DRAINING)
    [a] = await registry.live_nodes()
    assert a.state == NodeState.DRAINING
    await registry.heartbeat("a", NodeLoad())
    [a] = await registry.live_nodes()
    assert a.state == NodeState.DRAINING  # heartbeats keep the state
    await registry.deregister("a")
    assert await registry.live_nodes() == []


class MidCall:
    """Runs ``step`` once, as soon as Redis has answered the first command of a call: the call
    is then between its round trips, where another signaling instance's write can land.

    Hooks redis-py's reply reader, limited by a context variable to the call under test, so the
    test drives the registry through its public methods only and needs no sleeps.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, step: Callable[[], Awaitable[None]]):
        self.step = step
        self.landed = False  # step ran while the call was in flight
        self._inside = contextvars.ContextVar("inside", default=False)
        read_response = AbstractConnection.read_response

        async def read_then_step(conn: AbstractConnection, *args: Any, **kwargs: Any) -> Any:
            reply = await read_response(conn, *args, **kwargs)
            if self._inside.get() and not self.landed:
                self.landed = True  # before the step: its own replies pass straight through
                await self.step()
            return reply

        monkeypatch.setattr(AbstractConnection, "read_response", read_then_step)

    async def run(self, call: Awaitable[None]) -> None:
        token = self._inside.set(True)
        try:
            await call
        finally:
            self._inside.reset(token)
        if not self.landed:  # the memory backend: no round trips to land between
            await self.step()


async def test_heartbeat_in_flight_never_undoes_draining(
    make_registry: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    beating, draining = make_registry(), make_registry()
    await beating.register(node("a"))  # connects first: the next reply is the heartbeat's own
    drain = MidCall(monkeypatch, lambda: draining.set_state("a", NodeState.DRAINING))
    await drain.run(beating.heartbeat("a", NodeLoad(sessions=7)))
    assert drain.landed == isinstance(beating, RedisRegistry)
    [a] = await make_registry().live_nodes()
    assert a.state == NodeState.DRAINING  # the drain completed: no heartbeat may undo it
    assert a.load.sessions == 7  # and the heartbeat's load was not lost either


async def test_drain_in_flight_never_undoes_a_heartbeat(
    make_registry: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    draining, beating = make_registry(), make_registry()
    await draining.register(node("a"))
    beat = MidCall(monkeypatch, lambda: beating.heartbeat("a", NodeLoad(sessions=7)))
    await beat.run(draining.set_state("a", NodeState.DRAINING))
    assert beat.landed == isinstance(draining, RedisRegistry)
    [a] = await make_registry().live_nodes()
    assert a.state == NodeState.DRAINING
    assert a.load.sessions == 7  # a drain writing back the load it read would lose the beat


async def test_expired_node_stays_gone_until_it_registers(make_registry: Factory) -> None:
    registry = make_registry()
    await registry.register(node("a"))
    assert await registry.assign_room("shop", "a") == "a"
    await registry.set_state("a", NodeState.DRAINING)  # must not make the record outlive its TTL

    async def expired() -> bool:  # a stops beating
        return await registry.room_node("shop") is None

    await eventually_async(expired, 10 * TTL)  # a drained node too
    await registry.heartbeat("a", NodeLoad(sessions=1))  # a late beat does not revive the record
    await registry.set_state("a", NodeState.ACTIVE)
    await registry.heartbeat("ghost", NodeLoad())  # nor does a beat create one
    assert await registry.live_nodes() == []
    assert await registry.room_node("shop") is None
    await registry.register(node("a"))  # how a node comes back (signaling/cluster.py)
    [a] = await registry.live_nodes()
    assert a.state == NodeState.ACTIVE


async def test_concurrent_room_assignment_agrees(make_registry: Factory) -> None:
    first, second = make_registry(), make_registry()
    await first.register(node("a"))
    await first.register(node("b"))
    for i in range(20):
        room = f"race-{i}"
        owners = await asyncio.gather(first.assign_room(room, "a"), second.assign_room(room, "b"))
        assert owners[0] == owners[1]
        assert await second.room_node(room) == owners[0]


async def test_dead_owner_loses_the_room_and_release_is_owner_only(make_registry: Factory) -> None:
    registry = make_registry()
    await registry.register(node("a"))
    assert await registry.assign_room("shop", "a") == "a"
    await registry.release_room("shop", "b")  # not the owner: no effect
    assert await registry.room_node("shop") == "a"
    await asyncio.sleep(TTL + 0.2)  # a stops beating and expires
    await registry.register(node("b"))
    assert await registry.room_node("shop") is None
    assert await registry.assign_room("shop", "b") == "b"
    await registry.release_room("shop", "b")
    assert await registry.room_node("shop") is None


async def test_policies_and_learned_rtts(make_registry: Factory) -> None:
    registry = make_registry()
    assert await registry.room_policy("any") == RoomPolicy()
    policy = RoomPolicy(allowed_jurisdictions=["de"], allowed_regions=["eu-central"])
    await registry.set_room_policy("clinic", policy)
    assert await make_registry().room_policy("clinic") == policy
    await registry.record_rtt("192.0.2.0/24", "eu-west", 40.0)
    await registry.record_rtt("192.0.2.0/24", "eu-west", 20.0)
    learned = await make_registry().learned_rtts("192.0.2.0/24")
    assert learned["eu-west"] == pytest.approx(34.0, abs=0.01)  # moving average


def test_unknown_scheme_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"registry\.url"):
        create_registry("etcd://somewhere", 1.0)
