"""In-memory registry: the single-process default. Same contract as the Redis backend.

Stores node records, room policies, learned RTTs and the room directory (each room's hosts
and members); a feed gets the events of the rooms it watches from this same instance.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable

from .models import NodeLoad, NodeRecord, NodeState, RoomEvent, RoomMember, RoomPolicy

RTT_WEIGHT = 0.3  # exponential moving average weight of a new RTT sample


class MemoryEventFeed:
    """Events of the watched rooms, delivered with ``loop.call_soon`` in publish order (as
    Redis does, the publisher never runs a subscriber's code inline). Never resubscribes:
    there is no connection to lose."""

    def __init__(self, registry: MemoryRegistry, on_event: Callable[[RoomEvent], None]) -> None:
        self._registry = registry
        self._on_event = on_event
        self.rooms: set[str] = set()
        self.dropped = 0  # events are model objects here: none is ever invalid

    def deliver(self, event: RoomEvent) -> None:
        # Watched again at delivery: an event queued before unwatch or close is not delivered.
        if event.room in self.rooms:
            self._on_event(event)

    async def watch(self, room: str) -> None:
        self.rooms.add(room)

    async def unwatch(self, room: str) -> None:
        self.rooms.discard(room)

    async def close(self) -> None:
        self.rooms.clear()
        self._registry.feeds.discard(self)


class MemoryRegistry:
    def __init__(self, node_ttl: float, directory_ttl: float = 600.0) -> None:
        self.node_ttl = node_ttl
        self.directory_ttl = directory_ttl
        self._touched: dict[str, float] = {}  # room -> last write or touch (monotonic)
        self._nodes: dict[str, NodeRecord] = {}
        self._hosts: dict[str, set[str]] = {}
        self._epoch = secrets.token_hex(8)
        self._members: dict[str, dict[str, RoomMember]] = {}
        self._policies: dict[str, RoomPolicy] = {}
        self._rtts: dict[str, dict[str, float]] = {}
        self.feeds: set[MemoryEventFeed] = set()

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

    def _expire(self, room: str) -> None:
        """A room's directory entries nobody touched for ``directory_ttl`` go, as in Redis."""
        touched = self._touched.get(room)
        if touched is not None and time.monotonic() - touched > self.directory_ttl:
            self._members.pop(room, None)
            self._hosts.pop(room, None)
            del self._touched[room]

    async def touch_rooms(self, node_id: str, rooms: list[str]) -> None:
        now = time.monotonic()
        for room in rooms:
            self._expire(room)
            if room in self._members or room in self._hosts:
                self._touched[room] = now

    async def add_room_host(self, room: str, node_id: str) -> None:
        self._expire(room)
        self._hosts.setdefault(room, set()).add(node_id)
        self._touched[room] = time.monotonic()

    async def room_hosts(self, room: str) -> list[str]:
        # An expired host stays in the set, hidden, as in Redis: it shows again if it registers.
        self._expire(room)
        return sorted(h for h in self._hosts.get(room, ()) if self._alive(h))

    async def remove_room_host(self, room: str, node_id: str) -> None:
        hosts = self._hosts.get(room)
        if hosts is not None:
            hosts.discard(node_id)
            if not hosts:
                del self._hosts[room]

    def _publish(self, event: RoomEvent) -> None:
        loop = asyncio.get_running_loop()
        for feed in self.feeds:
            if event.room in feed.rooms:
                loop.call_soon(feed.deliver, event)

    async def put_member(self, room: str, member: RoomMember) -> None:
        self._expire(room)
        self._members.setdefault(room, {})[member.sid] = member
        self._touched[room] = time.monotonic()
        self._publish(RoomEvent(room=room, node=member.node, member=member))

    async def remove_member(self, room: str, member: RoomMember, reason: str) -> None:
        members = self._members.get(room)
        if members is not None:
            members.pop(member.sid, None)
            if not members:
                del self._members[room]
        self._publish(
            RoomEvent(room=room, node=member.node, member=member, left=True, reason=reason)
        )

    async def epoch(self) -> str:
        return self._epoch

    async def clear_node(self, node_id: str, reason: str) -> list[tuple[str, RoomMember]]:
        cleared = []
        for room in sorted(self._members):
            for member in await self.room_members(room):
                if member.node == node_id:
                    await self.remove_member(room, member, reason)
                    cleared.append((room, member))
        for room in list(self._hosts):
            await self.remove_room_host(room, node_id)
        return cleared

    async def room_members(self, room: str) -> list[RoomMember]:
        self._expire(room)
        return sorted(self._members.get(room, {}).values(), key=lambda m: m.sid)

    async def drop_node_members(self, room: str, node_id: str) -> list[RoomMember]:
        members = self._members.get(room, {})
        dropped = [m for m in members.values() if m.node == node_id]
        for member in dropped:
            del members[member.sid]
        if room in self._members and not members:
            del self._members[room]
        return sorted(dropped, key=lambda m: m.sid)

    def event_feed(
        self, on_event: Callable[[RoomEvent], None], on_resubscribed: Callable[[], None]
    ) -> MemoryEventFeed:
        feed = MemoryEventFeed(self, on_event)
        self.feeds.add(feed)
        return feed

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
        for feed in list(self.feeds):
            await feed.close()
