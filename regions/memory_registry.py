"""In-memory registry: the single-process default. Same contract as the Redis backend."""

from __future__ import annotations

import time

from .models import NodeLoad, NodeRecord, NodeState, RoomPolicy

RTT_WEIGHT = 0.3  # exponential moving average weight of a new RTT sample


class MemoryRegistry:
    def __init__(self, node_ttl: float) -> None:
        self.node_ttl = node_ttl
        self._nodes: dict[str, NodeRecord] = {}
        self._rooms: dict[str, str] = {}
        self._policies: dict[str, RoomPolicy] = {}
        self._rtts: dict[str, dict[str, float]] = {}

    def _alive(self, node_id: str) -> bool:
        node = self._nodes.get(node_id)
        return node is not None and node.alive(time.time(), self.node_ttl)

    async def register(self, node: NodeRecord) -> None:
        self._nodes[node.id] = node.model_copy(update={"last_heartbeat": time.time()})

    async def heartbeat(self, node_id: str, load: NodeLoad) -> None:
        # An expired record stays expired, as Redis's does: the node comes back by registering.
        node = self._nodes.get(node_id) if self._alive(node_id) else None
        if node is not None:
            self._nodes[node_id] = node.model_copy(
                update={"load": load, "last_heartbeat": time.time()}
            )

    async def set_state(self, node_id: str, state: NodeState) -> None:
        node = self._nodes.get(node_id) if self._alive(node_id) else None
        if node is not None:
            self._nodes[node_id] = node.model_copy(update={"state": state})

    async def deregister(self, node_id: str) -> None:
        self._nodes.pop(node_id, None)

    async def live_nodes(self) -> list[NodeRecord]:
        now = time.time()
        return [n for n in self._nodes.values() if n.alive(now, self.node_ttl)]

    async def assign_room(self, room: str, node_id: str) -> str:
        current = self._rooms.get(room)
        if current is not None and self._alive(current):
            return current
        self._rooms[room] = node_id
        return node_id

    async def room_node(self, room: str) -> str | None:
        current = self._rooms.get(room)
        return current if current is not None and self._alive(current) else None

    async def release_room(self, room: str, node_id: str) -> None:
        if self._rooms.get(room) == node_id:
            del self._rooms[room]

    async def set_room_policy(self, room: str, policy: RoomPolicy) -> None:
        self._policies[room] = policy

    async def room_policy(self, room: str) -> RoomPolicy:
        return self._policies.get(room, RoomPolicy())

    async def record_rtt(self, prefix: str, region: str, rtt_ms: float) -> None:
        regions = self._rtts.setdefault(prefix, {})
        old = regions.get(region)
        regions[region] = rtt_ms if old is None else old + RTT_WEIGHT * (rtt_ms - old)

    async def learned_rtts(self, prefix: str) -> dict[str, float]:
        return dict(self._rtts.get(prefix, {}))

    async def close(self) -> None:
        return None
