"""Redis registry (redis-py asyncio): shared by every node and signaling instance.

Keys (prefix ``eurelay:``): ``node:{id}`` JSON node record with a TTL of ``node_ttl`` that
each heartbeat renews, so a dead node's record expires by itself; ``nodes`` set of ids;
``hosts:{room}`` set of the ids of the nodes hosting the room; ``members:{room}`` hash
sid -> JSON ``RoomMember``; ``node-rooms:{id}`` set of the rooms a node has had members
in (what it clears when it starts again) — these three expire ``directory_ttl`` after the
last write or touch (nodes touch the rooms they host), so nothing outlives its nodes;
``policy:{name}`` JSON room settings (residency, public viewing, limits);
``rtt:{prefix}`` hash region -> learned RTT (ms); ``epoch`` an id created with the data
(a new one means the data was lost). Pub/sub channel ``events:{room}``
carries each member change as a JSON ``RoomEvent``, published in the transaction that
writes ``members:{room}``.

Heartbeats and state changes are Lua scripts that edit only their own fields of
``node:{id}`` inside Redis, so one never writes back a stale copy of the other (a heartbeat
cannot undo DRAINING), and neither recreates an expired record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as redis
from pydantic import ValidationError
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from .memory_registry import RTT_WEIGHT
from .models import NodeLoad, NodeRecord, NodeState, RoomEvent, RoomMember, RoomPolicy
from .registry import RegistryError

logger = logging.getLogger(__name__)

PREFIX = "eurelay:"
EVENTS = PREFIX + "events:"  # pub/sub channel prefix: one channel per room
RTT_TTL_SECONDS = 7 * 24 * 3600

# KEYS[1] node key, KEYS[2] node id set; ARGV[1] load JSON, ARGV[2] unix time, ARGV[3] TTL ms.
# Only load and last_heartbeat change; state is register's and set_state's. A missing record
# stays missing: the node re-registers with its own state (signaling/cluster.py). cjson writes
# numbers with 14 significant digits: last_heartbeat keeps 0.1 ms, plenty for liveness.
HEARTBEAT = """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local ok, node = pcall(cjson.decode, raw)
if not ok or type(node) ~= 'table' then return 0 end
node.load = cjson.decode(ARGV[1])
node.last_heartbeat = tonumber(ARGV[2])
redis.call('SET', KEYS[1], cjson.encode(node), 'PX', ARGV[3])
redis.call('SADD', KEYS[2], node.id)
return 1
"""

# KEYS[1] node key; ARGV[1] state. KEEPTTL: a state change is not a heartbeat.
SET_STATE = """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local ok, node = pcall(cjson.decode, raw)
if not ok or type(node) ~= 'table' then return 0 end
node.state = ARGV[1]
redis.call('SET', KEYS[1], cjson.encode(node), 'KEEPTTL')
return 1
"""

# KEYS[1] hosts set; ARGV[1] node key prefix. One round trip: the hosts whose record has not
# expired. The others stay in the set, hidden: pruning here could race a node that came back.
LIVE_HOSTS = """
local live = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. id) == 1 then table.insert(live, id) end
end
return live
"""

# KEYS[1] members hash; ARGV[1] node id. Atomic, so a member of another node put meanwhile is
# never deleted, and each dropped member is returned by one caller only.
DROP_NODE_MEMBERS = """
local dropped = {}
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local ok, member = pcall(cjson.decode, fields[i + 1])
  if ok and type(member) == 'table' and member.node == ARGV[1] then
    redis.call('HDEL', KEYS[1], fields[i])
    table.insert(dropped, fields[i + 1])
  end
end
return dropped
"""

# A feed that lost its connection tries again after this long, doubling up to the maximum.
RECONNECT_MIN_SECONDS = 0.1
RECONNECT_MAX_SECONDS = 1.0


def _channel(room: str) -> str:
    return EVENTS + room


def _members(raws: list[str]) -> list[RoomMember]:
    """The records that validate, by sid: another version's or a hand-written record is skipped."""
    members = []
    for raw in raws:
        try:
            members.append(RoomMember.model_validate_json(raw))
        except ValidationError:
            logger.debug("skipping an invalid room member record: %.200s", raw)
    return sorted(members, key=lambda m: m.sid)


class RedisEventFeed:
    """One pub/sub connection and the task reading it (see ``Registry.event_feed``).

    ``watch`` returns once Redis confirmed the subscription, so a directory read after it
    misses nothing. While Redis is down, ``watch`` and ``unwatch`` do not raise: they change
    the set of rooms and return; the reader subscribes that set when it has reconnected and
    then calls ``on_resubscribed``. Its own reconnection: redis-py's would resubscribe behind
    our back, without telling us that events were lost in between.
    """

    def __init__(
        self,
        client: Any,
        on_event: Callable[[RoomEvent], None],
        on_resubscribed: Callable[[], None],
    ) -> None:
        self._client = client
        self._on_event = on_event
        self._on_resubscribed = on_resubscribed
        self._rooms: set[str] = set()
        self._pubsub: Any = None  # while connected; None while down or reconnecting
        self._lock = asyncio.Lock()  # subscription changes never overlap a connection swap
        self._settled = asyncio.Event()  # no connection attempt in progress
        self._confirming: dict[str, asyncio.Future[bool]] = {}  # channel -> watch() waiting
        self._pending: set[str] = set()  # channels resubscribed, not yet confirmed
        self._missed = False  # events may have been lost: on_resubscribed when subscribed again
        self.dropped = 0  # messages that were not a RoomEvent
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def watch(self, room: str) -> None:
        await self._settled.wait()  # the first connection is still being made
        channel = _channel(room)
        async with self._lock:
            confirmed = self._confirming.get(channel)  # a concurrent watch() of the room
            if confirmed is None:
                if room in self._rooms:
                    return
                self._rooms.add(room)
                if self._pubsub is None:
                    self._missed = True
                    return
                confirmed = asyncio.get_running_loop().create_future()
                self._confirming[channel] = confirmed
                try:
                    await self._pubsub.subscribe(channel)
                except (RedisError, OSError) as exc:
                    # The connection broke: the reader notices too and reconnects.
                    logger.debug("subscribing to %s failed: %s", channel, exc)
                    self._confirming.pop(channel, None)
                    self._missed = True
                    return
        # Shielded: another watch() of the room may be waiting for the same reply. False if
        # the connection was lost first; _missed is set then.
        await asyncio.shield(confirmed)

    async def unwatch(self, room: str) -> None:
        async with self._lock:
            if room not in self._rooms:
                return
            self._rooms.discard(room)
            if self._pubsub is None:
                return
            try:
                await self._pubsub.unsubscribe(_channel(room))
            except (RedisError, OSError) as exc:  # reconnecting leaves the room out anyway
                logger.debug("unsubscribing from %s failed: %s", room, exc)

    async def close(self) -> None:
        """Stops the reader and drops the connection without a round trip: no hang if down."""
        self._task.cancel()
        await asyncio.wait([self._task], timeout=5)  # bounded: see relay/background.py
        async with self._lock:  # a watch() in flight finishes sending first (socket_timeout)
            await self._disconnect()
        self._settled.set()  # a watch() waiting for the first connection returns

    async def _run(self) -> None:
        delay = RECONNECT_MIN_SECONDS
        while True:
            try:
                await self._connect()
                delay = RECONNECT_MIN_SECONDS
                await self._read()
            except (RedisError, OSError) as exc:
                logger.debug("room event feed lost redis: %s", exc)
            except Exception:  # whatever it was, the feed carries on with a new connection
                logger.exception("room event feed failed")
            async with self._lock:
                if self._pubsub is not None and self._rooms:
                    self._missed = True
                await self._disconnect()
            await asyncio.sleep(delay)
            delay = min(2 * delay, RECONNECT_MAX_SECONDS)

    async def _connect(self) -> None:
        self._settled.clear()
        try:
            async with self._lock:
                pubsub = self._client.pubsub()
                channels = {_channel(room) for room in self._rooms}
                try:
                    await pubsub.connect()
                    if channels:
                        await pubsub.subscribe(*channels)
                except BaseException:
                    with contextlib.suppress(RedisError, OSError):
                        await pubsub.aclose()
                    raise
                self._pubsub = pubsub
                self._pending = channels
                self._caught_up()
        finally:
            self._settled.set()

    async def _disconnect(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        for confirmed in self._confirming.values():
            if not confirmed.done():
                confirmed.set_result(False)
        self._confirming.clear()
        if pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                # Without waiting for the peer; shielded, so a close() cancelling the reader
                # meanwhile leaves no connection half closed.
                await asyncio.shield(pubsub.aclose())

    async def _read(self) -> None:
        while True:
            message = await self._pubsub.get_message(timeout=None)
            if message is None:
                continue
            kind, channel = message["type"], message["channel"]
            if kind == "subscribe":
                confirmed = self._confirming.pop(channel, None)
                if confirmed is not None and not confirmed.done():
                    confirmed.set_result(True)
                self._pending.discard(channel)
                self._caught_up()
            elif kind == "message":
                self._deliver(channel[len(EVENTS) :], message["data"])

    def _caught_up(self) -> None:
        if self._pending or not self._missed:
            return
        self._missed = False
        try:
            self._on_resubscribed()
        except Exception:
            logger.exception("on_resubscribed failed")

    def _deliver(self, room: str, data: str) -> None:
        if room not in self._rooms:
            return  # published before Redis saw our UNSUBSCRIBE
        try:
            event = RoomEvent.model_validate_json(data)
        except ValidationError:
            event = None
        if event is None or event.room != room:
            self.dropped += 1
            logger.debug("dropping an invalid room event on %s: %.200s", room, data)
            return
        try:
            self._on_event(event)
        except Exception:  # a subscriber's bug must not stop the feed
            logger.exception("room event handler failed")


class RedisRegistry:
    def __init__(self, url: str, node_ttl: float, directory_ttl: float = 600.0) -> None:
        self.node_ttl = node_ttl
        self.directory_ttl = directory_ttl
        self._directory_ttl_s = max(1, int(directory_ttl))  # EXPIRE takes whole seconds
        # One retry, at once, on a new connection: after a Redis restart the pool hands out
        # its dead connections (redis-py skips its check for them while maintenance
        # notifications are "auto", the default) and each would fail one call.
        self._redis: Any = redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=2.0,
            socket_connect_timeout=2.0,
            retry=Retry(NoBackoff(), 1),
        )
        # Feeds connect with no retries of redis-py's own: a feed reconnects by itself, and
        # knows then that it has to say so (RedisEventFeed).
        self._feed_redis: Any = redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=2.0,
            socket_connect_timeout=2.0,
            retry=Retry(NoBackoff(), 0),
        )
        self._feeds: set[RedisEventFeed] = set()
        self._live_hosts = self._redis.register_script(LIVE_HOSTS)
        self._drop_node_members = self._redis.register_script(DROP_NODE_MEMBERS)
        self._heartbeat = self._redis.register_script(HEARTBEAT)
        self._set_state = self._redis.register_script(SET_STATE)

    @property
    def _ttl_ms(self) -> int:
        return max(1, int(self.node_ttl * 1000))

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except (RedisError, OSError) as exc:
            raise RegistryError(f"redis: {exc}") from exc

    async def _write(self, node: NodeRecord) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(PREFIX + "node:" + node.id, node.model_dump_json(), px=self._ttl_ms)
        pipe.sadd(PREFIX + "nodes", node.id)
        await self._call(pipe.execute())

    async def _read(self, node_id: str) -> NodeRecord | None:
        raw = await self._call(self._redis.get(PREFIX + "node:" + node_id))
        if raw is None:
            return None
        try:
            return NodeRecord.model_validate_json(raw)
        except ValidationError:
            return None

    async def register(self, node: NodeRecord) -> None:
        await self._write(node.model_copy(update={"last_heartbeat": time.time()}))

    async def heartbeat(self, node_id: str, load: NodeLoad) -> None:
        await self._call(
            self._heartbeat(
                keys=[PREFIX + "node:" + node_id, PREFIX + "nodes"],
                args=[load.model_dump_json(), repr(time.time()), self._ttl_ms],
            )
        )

    async def set_state(self, node_id: str, state: NodeState) -> None:
        await self._call(self._set_state(keys=[PREFIX + "node:" + node_id], args=[state.value]))

    async def deregister(self, node_id: str) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(PREFIX + "node:" + node_id)
        pipe.srem(PREFIX + "nodes", node_id)
        await self._call(pipe.execute())

    async def live_nodes(self) -> list[NodeRecord]:
        ids = sorted(await self._call(self._redis.smembers(PREFIX + "nodes")))
        if not ids:
            return []
        raws = await self._call(self._redis.mget([PREFIX + "node:" + i for i in ids]))
        now = time.time()
        nodes = []
        gone = []
        for node_id, raw in zip(ids, raws, strict=True):
            if raw is None:
                gone.append(node_id)  # expired: its TTL passed without a heartbeat
                continue
            try:
                node = NodeRecord.model_validate_json(raw)
            except ValidationError:
                continue
            if node.alive(now, self.node_ttl):
                nodes.append(node)
        if gone:
            await self._call(self._redis.srem(PREFIX + "nodes", *gone))
        return nodes

    async def add_room_host(self, room: str, node_id: str) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.sadd(PREFIX + "hosts:" + room, node_id)
        pipe.expire(PREFIX + "hosts:" + room, self._directory_ttl_s)
        await self._call(pipe.execute())

    async def room_hosts(self, room: str) -> list[str]:
        hosts = await self._call(
            self._live_hosts(keys=[PREFIX + "hosts:" + room], args=[PREFIX + "node:"])
        )
        return sorted(str(h) for h in hosts)

    async def remove_room_host(self, room: str, node_id: str) -> None:
        await self._call(self._redis.srem(PREFIX + "hosts:" + room, node_id))

    async def _change_member(self, event: RoomEvent) -> None:
        # One transaction: a node that subscribed and then read the hash sees either the
        # record or the event carrying it.
        key = PREFIX + "members:" + event.room
        pipe = self._redis.pipeline(transaction=True)
        if event.left:
            pipe.hdel(key, event.member.sid)
        else:
            pipe.hset(key, event.member.sid, event.member.model_dump_json())
            pipe.expire(key, self._directory_ttl_s)
            # the rooms a node has had members in: what it clears when it starts again
            pipe.sadd(PREFIX + "node-rooms:" + event.member.node, event.room)
            pipe.expire(PREFIX + "node-rooms:" + event.member.node, self._directory_ttl_s)
        pipe.publish(_channel(event.room), event.model_dump_json())
        await self._call(pipe.execute())

    async def epoch(self) -> str:
        # SET NX: the first reader after the data was lost creates the next epoch
        await self._call(self._redis.set(PREFIX + "epoch", secrets.token_hex(8), nx=True))
        return str(await self._call(self._redis.get(PREFIX + "epoch")))

    async def touch_rooms(self, node_id: str, rooms: list[str]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for room in rooms:
            pipe.expire(PREFIX + "members:" + room, self._directory_ttl_s)
            pipe.expire(PREFIX + "hosts:" + room, self._directory_ttl_s)
        pipe.expire(PREFIX + "node-rooms:" + node_id, self._directory_ttl_s)
        await self._call(pipe.execute())

    async def clear_node(self, node_id: str, reason: str) -> list[tuple[str, RoomMember]]:
        rooms = sorted(await self._call(self._redis.smembers(PREFIX + "node-rooms:" + node_id)))
        cleared = []
        for room in rooms:
            for member in await self.room_members(room):
                if member.node == node_id:
                    await self.remove_member(room, member, reason)
                    cleared.append((room, member))
            await self._call(self._redis.srem(PREFIX + "hosts:" + room, node_id))
        await self._call(self._redis.delete(PREFIX + "node-rooms:" + node_id))
        return cleared

    async def put_member(self, room: str, member: RoomMember) -> None:
        await self._change_member(RoomEvent(room=room, node=member.node, member=member))

    async def remove_member(self, room: str, member: RoomMember, reason: str) -> None:
        await self._change_member(
            RoomEvent(room=room, node=member.node, member=member, left=True, reason=reason)
        )

    async def room_members(self, room: str) -> list[RoomMember]:
        raws = await self._call(self._redis.hvals(PREFIX + "members:" + room))
        return _members(raws)

    async def drop_node_members(self, room: str, node_id: str) -> list[RoomMember]:
        raws = await self._call(
            self._drop_node_members(keys=[PREFIX + "members:" + room], args=[node_id])
        )
        return _members(raws)

    def event_feed(
        self, on_event: Callable[[RoomEvent], None], on_resubscribed: Callable[[], None]
    ) -> RedisEventFeed:
        feed = RedisEventFeed(self._feed_redis, on_event, on_resubscribed)
        self._feeds.add(feed)
        return feed

    async def set_room_policy(self, room: str, policy: RoomPolicy) -> None:
        # Unset settings stay out of the record: a node of an older version, which refuses
        # keys it does not know (and then applies no policy at all), still reads it.
        record = policy.model_dump_json(exclude_none=True)
        await self._call(self._redis.set(PREFIX + "policy:" + room, record))

    async def room_policy(self, room: str) -> RoomPolicy:
        raw = await self._call(self._redis.get(PREFIX + "policy:" + room))
        if raw is None:
            return RoomPolicy()
        try:
            return RoomPolicy.model_validate_json(raw)
        except ValidationError:
            return RoomPolicy()

    async def record_rtt(self, prefix: str, region: str, rtt_ms: float) -> None:
        key = PREFIX + "rtt:" + prefix
        old = await self._call(self._redis.hget(key, region))
        value = rtt_ms if old is None else float(old) + RTT_WEIGHT * (rtt_ms - float(old))
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(key, region, f"{value:.2f}")
        pipe.expire(key, RTT_TTL_SECONDS)
        await self._call(pipe.execute())

    async def learned_rtts(self, prefix: str) -> dict[str, float]:
        raw = await self._call(self._redis.hgetall(PREFIX + "rtt:" + prefix))
        return {region: float(value) for region, value in raw.items()}

    async def close(self) -> None:
        for feed in self._feeds:
            await feed.close()
        self._feeds.clear()
        await self._feed_redis.aclose()
        await self._redis.aclose()
