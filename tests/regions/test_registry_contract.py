"""One contract, two backends: the in-memory registry and Redis (a real redis-server)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection

from bench.redis_server import RedisServer, redis_server
from regions.models import (
    MemberTrack,
    NodeLoad,
    NodeRecord,
    NodeState,
    RoomEvent,
    RoomMember,
    RoomPolicy,
)
from regions.redis_registry import RedisEventFeed, RedisRegistry
from regions.registry import Registry, RegistryError, create_registry

from ..helpers import eventually, eventually_async, require_binary

pytestmark = pytest.mark.timeout(30)
TTL = 0.5

Factory = Callable[[], Registry]


RedisBackend = tuple[RedisServer, Factory]


@contextlib.asynccontextmanager
async def redis_registries() -> AsyncIterator[RedisBackend]:
    """A redis-server and a factory of registries on it, all closed on exit."""
    if require_binary("redis-server") is None:
        pytest.skip("redis-server is not installed (make test installs it)")
    made: list[Registry] = []
    async with redis_server() as server:

        def make() -> Registry:
            registry = create_registry(server.url, TTL)
            made.append(registry)
            return registry

        try:
            yield server, make
        finally:
            for registry in made:
                await registry.close()


@pytest.fixture(params=["memory", "redis"])
async def make_registry(request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    """Returns a factory: each call is another signaling instance on the same backend."""
    if request.param == "memory":
        shared = create_registry("memory://", TTL)  # one process, one registry
        yield lambda: shared
        return
    async with redis_registries() as (_, make):
        yield make


@pytest.fixture
async def redis_backend() -> AsyncIterator[RedisBackend]:
    async with redis_registries() as backend:
        yield backend


def node(node_id: str, region: str = "eu-west", **extra: Any) -> NodeRecord:
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
    await registry.add_room_host("shop", "a")
    await registry.set_state("a", NodeState.DRAINING)  # must not make the record outlive its TTL

    async def expired() -> bool:  # a stops beating
        return await registry.room_hosts("shop") == []

    await eventually_async(expired, 10 * TTL)  # a drained node too
    await registry.heartbeat("a", NodeLoad(sessions=1))  # a late beat does not revive the record
    await registry.set_state("a", NodeState.ACTIVE)
    await registry.heartbeat("ghost", NodeLoad())  # nor does a beat create one
    assert await registry.live_nodes() == []
    assert await registry.room_hosts("shop") == []
    await registry.register(node("a"))  # how a node comes back (signaling/cluster.py)
    [a] = await registry.live_nodes()
    assert a.state == NodeState.ACTIVE


def member(sid: str, node_id: str, *tracks: MemberTrack) -> RoomMember:
    return RoomMember(sid=sid, identity=sid.lower(), node=node_id, tracks=list(tracks))


VIDEO = MemberTrack(sid="TR_cam", kind="video", name="camera", mime="video/VP8", layers=["q", "f"])


async def test_room_hosts_come_and_go(make_registry: Factory) -> None:
    registry = make_registry()
    await registry.register(node("a"))
    await registry.register(node("b"))
    for host in ("b", "a", "a"):
        await registry.add_room_host("shop", host)
    await registry.add_room_host("shop", "ghost")  # never registered: not live
    assert await make_registry().room_hosts("shop") == ["a", "b"]
    await registry.remove_room_host("shop", "b")
    await registry.remove_room_host("shop", "c")  # not a host: no effect
    assert await make_registry().room_hosts("shop") == ["a"]
    assert await registry.room_hosts("elsewhere") == []
    await registry.add_room_host("shop", "b")

    async def a_expired() -> bool:  # b keeps beating, a goes silent
        await registry.heartbeat("b", NodeLoad())
        return await registry.room_hosts("shop") == ["b"]

    await eventually_async(a_expired, 10 * TTL)
    # An expired host is hidden, not forgotten: it shows again if its node registers again.
    await registry.register(node("a"))
    assert await registry.room_hosts("shop") == ["a", "b"]


async def test_members_put_update_remove(make_registry: Factory) -> None:
    writer, reader = make_registry(), make_registry()
    alice, bob = member("PA_alice", "a"), member("PA_bob", "b")
    await writer.put_member("shop", bob)
    await writer.put_member("shop", alice)
    assert await reader.room_members("shop") == [alice, bob]  # by sid
    publishing = member("PA_alice", "a", VIDEO)
    await writer.put_member("shop", publishing)  # same sid: replaces the record
    assert await reader.room_members("shop") == [publishing, bob]
    await writer.remove_member("shop", publishing, "left")
    await writer.remove_member("shop", publishing, "left")  # twice: no effect
    assert await reader.room_members("shop") == [bob]
    assert await reader.room_members("elsewhere") == []


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_directory_entries_nobody_touches_expire(backend: str) -> None:
    """A room whose nodes all died leaves no identities behind: its members and hosts go
    ``directory_ttl`` after the last write or touch; a touched room stays."""
    async with contextlib.AsyncExitStack() as stack:
        if backend == "memory":
            registry = create_registry("memory://", 60.0, directory_ttl=1.0)
        else:
            if require_binary("redis-server") is None:
                pytest.skip("redis-server is not installed (make test installs it)")
            server = await stack.enter_async_context(redis_server())
            registry = create_registry(server.url, 60.0, directory_ttl=1.0)
            stack.push_async_callback(registry.close)
        await registry.register(node("a"))
        kept, left_behind = member("PA_kept", "a"), member("PA_gone", "a")
        for room, who in (("kept", kept), ("left-behind", left_behind)):
            await registry.put_member(room, who)
            await registry.add_room_host(room, "a")

        async def expired() -> bool:  # node a keeps touching "kept" only
            await registry.touch_rooms("a", ["kept"])
            return await registry.room_members("left-behind") == []

        await eventually_async(expired, 10, interval=0.2)
        assert await registry.room_hosts("left-behind") == []
        assert await registry.room_members("kept") == [kept]
        assert await registry.room_hosts("kept") == ["a"]


async def test_drop_node_members_takes_that_nodes_only(make_registry: Factory) -> None:
    first, second = make_registry(), make_registry()
    on_a = [member(f"PA_a{i}", "a") for i in range(10)]
    on_b = member("PA_b", "b")
    for each in [*on_a, on_b]:
        await first.put_member("shop", each)
    # Every surviving node drops a dead node's members: concurrent calls together drop each
    # member of a, and nothing of b.
    dropped = await asyncio.gather(
        first.drop_node_members("shop", "a"), second.drop_node_members("shop", "a")
    )
    assert {m.sid for d in dropped for m in d} == {m.sid for m in on_a}
    assert all(m in on_a for d in dropped for m in d)
    assert await second.room_members("shop") == [on_b]
    assert await first.drop_node_members("shop", "a") == []
    assert await first.drop_node_members("elsewhere", "a") == []


async def test_a_node_starting_again_clears_what_it_left(make_registry: Factory) -> None:
    """A node that died with nobody else in its rooms left members behind; started again
    under the same id, it removes them (with events, for nodes watching those rooms)."""
    before, after = make_registry(), make_registry()
    await before.register(node("a"))
    await before.register(node("b"))
    ghosts = [member("PA_g1", "a", VIDEO), member("PA_g2", "a")]
    other = member("PA_b", "b")
    for each in ghosts:
        await before.put_member("shop", each)
    await before.put_member("cafe", ghosts[0])
    await before.put_member("shop", other)
    await before.add_room_host("shop", "a")
    await before.add_room_host("shop", "b")
    seen = Feed()
    feed = after.event_feed(seen.on_event, seen.on_resubscribed)
    await feed.watch("shop")
    cleared = await after.clear_node("a", "node_restarted")
    assert sorted((room, m.sid) for room, m in cleared) == [
        ("cafe", "PA_g1"),
        ("shop", "PA_g1"),
        ("shop", "PA_g2"),
    ]
    assert await after.room_members("shop") == [other]
    assert await after.room_members("cafe") == []
    assert await after.room_hosts("shop") == ["b"]
    await eventually(lambda: len(seen.events) >= 2)
    assert {(e.member.sid, e.left, e.reason) for e in seen.events} == {
        ("PA_g1", True, "node_restarted"),
        ("PA_g2", True, "node_restarted"),
    }
    assert await after.clear_node("a", "node_restarted") == []  # nothing left the second time
    await feed.close()


class Feed:
    """What a node's feed callbacks saw."""

    def __init__(self) -> None:
        self.events: list[RoomEvent] = []
        self.resubscribed = 0

    def on_event(self, event: RoomEvent) -> None:
        self.events.append(event)

    def on_resubscribed(self) -> None:
        self.resubscribed += 1


async def test_event_feed_carries_member_changes_in_order(make_registry: Factory) -> None:
    watcher, writer = make_registry(), make_registry()
    seen = Feed()
    feed = watcher.event_feed(seen.on_event, seen.on_resubscribed)
    await feed.watch("shop")  # returns subscribed: nothing published after it is missed
    alice, bob = member("PA_alice", "a"), member("PA_bob", "b")
    publishing = member("PA_alice", "a", VIDEO)
    await writer.put_member("shop", alice)
    await writer.put_member("cafe", bob)  # not watched
    await writer.put_member("shop", publishing)
    await writer.put_member("shop", bob)
    await writer.remove_member("shop", publishing, "disconnected")
    expected = [
        RoomEvent(room="shop", node="a", member=alice),
        RoomEvent(room="shop", node="a", member=publishing),
        RoomEvent(room="shop", node="b", member=bob),
        RoomEvent(room="shop", node="a", member=publishing, left=True, reason="disconnected"),
    ]
    await eventually(lambda: len(seen.events) >= len(expected))
    # One publisher, in order: cafe's event, published before the last three, would be here.
    assert seen.events == expected
    assert seen.resubscribed == 0
    await feed.close()


async def test_unwatched_rooms_are_not_delivered(make_registry: Factory) -> None:
    watcher, writer = make_registry(), make_registry()
    seen = Feed()
    feed = watcher.event_feed(seen.on_event, seen.on_resubscribed)
    await feed.watch("shop")
    await feed.watch("cafe")
    await feed.unwatch("cafe")
    await feed.unwatch("never-watched")
    await writer.put_member("cafe", member("PA_cafe", "a"))
    await writer.put_member("shop", member("PA_shop", "a"))
    await eventually(lambda: len(seen.events) >= 1)
    assert [e.room for e in seen.events] == ["shop"]
    await feed.watch("cafe")  # watched again
    await writer.put_member("cafe", member("PA_cafe", "a"))
    await eventually(lambda: len(seen.events) >= 2)
    assert [e.room for e in seen.events] == ["shop", "cafe"]
    await feed.close()
    await writer.put_member("shop", member("PA_shop", "a"))
    assert await watcher.room_members("shop") == [member("PA_shop", "a")]


async def test_redis_feed_resubscribes_after_a_restart(redis_backend: RedisBackend) -> None:
    server, make_registry = redis_backend
    watcher, writer = make_registry(), make_registry()
    seen = Feed()
    feed = watcher.event_feed(seen.on_event, seen.on_resubscribed)
    await feed.watch("shop")
    alice, bob = member("PA_alice", "a"), member("PA_bob", "b")
    await writer.put_member("shop", alice)
    await eventually(lambda: len(seen.events) == 1)
    await server.restart()  # breaks every connection; the data is gone too (no persistence)
    await eventually(lambda: seen.resubscribed == 1)  # subscribed again: the caller re-reads
    await writer.put_member("shop", bob)
    await eventually(lambda: len(seen.events) == 2)
    assert seen.events[1] == RoomEvent(room="shop", node="b", member=bob)
    assert seen.resubscribed == 1
    await feed.close()


async def test_redis_feed_resubscribes_after_its_connection_is_killed(
    redis_backend: RedisBackend,
) -> None:
    server, make_registry = redis_backend
    watcher, writer = make_registry(), make_registry()
    seen = Feed()
    feed = watcher.event_feed(seen.on_event, seen.on_resubscribed)
    await feed.watch("shop")
    admin = aioredis.from_url(server.url, decode_responses=True)
    try:
        # Redis stays up: redis-py's own reconnect succeeds at once, and must not hide the gap.
        assert await admin.client_kill_filter(_type="pubsub") == 1
        await eventually(lambda: seen.resubscribed == 1)
        assert len(await admin.client_list(_type="pubsub")) == 1  # one connection per feed
    finally:
        await admin.aclose()
    alice = member("PA_alice", "a")
    await writer.put_member("shop", alice)
    await eventually(lambda: len(seen.events) >= 1)
    assert seen.events == [RoomEvent(room="shop", node="a", member=alice)]
    await feed.close()


async def test_redis_feed_while_redis_is_down(redis_backend: RedisBackend) -> None:
    server, make_registry = redis_backend
    watcher, writer = make_registry(), make_registry()
    seen = Feed()
    feed = watcher.event_feed(seen.on_event, seen.on_resubscribed)
    await feed.watch("shop")
    await server.stop()
    await feed.watch("cafe")  # neither raises: the reader subscribes the rooms when back
    await feed.unwatch("shop")
    await server.start()
    await eventually(lambda: seen.resubscribed == 1)
    await writer.put_member("shop", member("PA_shop", "a"))
    await writer.put_member("cafe", member("PA_cafe", "a"))
    await eventually(lambda: len(seen.events) >= 1)
    assert [e.room for e in seen.events] == ["cafe"]
    await server.stop()
    await asyncio.wait_for(feed.close(), 1.0)  # no round trip to a server that is gone


async def test_redis_skips_invalid_records_and_events(redis_backend: RedisBackend) -> None:
    server, make_registry = redis_backend
    watcher, writer = make_registry(), make_registry()
    seen = Feed()
    feed = watcher.event_feed(seen.on_event, seen.on_resubscribed)
    await feed.watch("shop")
    other = aioredis.from_url(server.url, decode_responses=True)
    try:
        await other.hset("eurelay:members:shop", "PA_bad", "not json")
        await other.hset("eurelay:members:shop", "PA_newer", '{"sid": "PA_newer", "x": 1}')
        await other.publish("eurelay:events:shop", "not json")
        misrouted = RoomEvent(room="cafe", node="a", member=member("PA_x", "a"))
        await other.publish("eurelay:events:shop", misrouted.model_dump_json())
    finally:
        await other.aclose()
    alice = member("PA_alice", "a")
    await writer.put_member("shop", alice)
    await eventually(lambda: len(seen.events) >= 1)
    assert seen.events == [RoomEvent(room="shop", node="a", member=alice)]
    assert isinstance(feed, RedisEventFeed) and feed.dropped == 2
    assert await watcher.room_members("shop") == [alice]
    assert await watcher.drop_node_members("shop", "a") == [alice]


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


async def test_the_epoch_holds_until_the_data_is_lost(make_registry: Factory) -> None:
    first, second = make_registry(), make_registry()
    epoch = await first.epoch()
    assert epoch and await second.epoch() == epoch == await first.epoch()


async def test_redis_gets_a_new_epoch_after_a_flush_and_a_restart(
    redis_backend: RedisBackend,
) -> None:
    server, make = redis_backend
    registry = make()
    first = await registry.epoch()
    flusher = aioredis.from_url(server.url)
    try:
        await flusher.flushall()
    finally:
        await flusher.aclose()
    second = await registry.epoch()
    assert second != first and await make().epoch() == second
    await server.restart()

    async def renewed() -> bool:
        try:
            return await registry.epoch() not in (first, second)
        except RegistryError:
            return False  # the client reconnects on its next call

    await eventually_async(renewed, 10)
