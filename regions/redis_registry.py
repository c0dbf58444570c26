"""Redis registry (redis-py asyncio): shared by every node and signaling instance.

Keys (prefix ``eurelay:``): ``node:{id}`` JSON node record with a TTL of ``node_ttl`` that
each heartbeat renews, so a dead node's record expires by itself; ``nodes`` set of ids;
``room:{name}`` owning node id; ``policy:{name}`` JSON residency policy; ``rtt:{prefix}``
hash region -> learned RTT (ms). Heartbeats and state changes are Lua scripts that edit
only their own fields of ``node:{id}`` inside Redis, so one never writes back a stale copy
of the other (a heartbeat cannot undo DRAINING), and neither recreates an expired record.
Room assignment is one Lua script too, so concurrent placements of the same room agree.
"""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as redis
from pydantic import ValidationError
from redis.exceptions import RedisError

from .memory_registry import RTT_WEIGHT
from .models import NodeLoad, NodeRecord, NodeState, RoomPolicy
from .registry import RegistryError

PREFIX = "eurelay:"
RTT_TTL_SECONDS = 7 * 24 * 3600

# KEYS[1] room key; ARGV[1] candidate node id; ARGV[2] node key prefix.
# Keep a live owner, else take the room: atomic, so racing placements agree.
ASSIGN = """
local owner = redis.call('GET', KEYS[1])
if owner and redis.call('EXISTS', ARGV[2] .. owner) == 1 then
  return owner
end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
"""

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

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisRegistry:
    def __init__(self, url: str, node_ttl: float) -> None:
        self.node_ttl = node_ttl
        self._redis: Any = redis.from_url(
            url, decode_responses=True, socket_timeout=2.0, socket_connect_timeout=2.0
        )
        self._assign = self._redis.register_script(ASSIGN)
        self._release = self._redis.register_script(RELEASE)
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

    async def assign_room(self, room: str, node_id: str) -> str:
        owner = await self._call(
            self._assign(keys=[PREFIX + "room:" + room], args=[node_id, PREFIX + "node:"])
        )
        return str(owner)

    async def room_node(self, room: str) -> str | None:
        owner = await self._call(self._redis.get(PREFIX + "room:" + room))
        if owner is None or await self._read(owner) is None:
            return None
        return str(owner)

    async def release_room(self, room: str, node_id: str) -> None:
        await self._call(self._release(keys=[PREFIX + "room:" + room], args=[node_id]))

    async def set_room_policy(self, room: str, policy: RoomPolicy) -> None:
        await self._call(self._redis.set(PREFIX + "policy:" + room, policy.model_dump_json()))

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
        await self._redis.aclose()
