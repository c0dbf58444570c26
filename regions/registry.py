"""The ``Registry`` protocol every backend implements, and the factory that picks one.

Liveness is judged by the registry: a node whose last heartbeat is older than ``node_ttl``
is down and is never returned by ``live_nodes``. A room may live on several nodes: the
registry keeps which nodes host it, its members (participants with their node and tracks),
and carries each change of a member to the other nodes hosting the room as an event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .models import NodeLoad, NodeRecord, NodeState, RoomEvent, RoomMember, RoomPolicy


class RegistryError(Exception):
    """The backend cannot be reached or answered nonsense."""


class EventFeed(Protocol):
    """One node's subscription to room events (``Registry.event_feed``)."""

    dropped: int  # messages on a room's channel that were not a valid event

    async def watch(self, room: str) -> None:
        """Returns once the room's events will arrive, so a directory read after it misses
        nothing; or at once if the backend is unreachable, and ``on_resubscribed`` follows."""
        ...

    async def unwatch(self, room: str) -> None: ...

    async def close(self) -> None: ...


class Registry(Protocol):
    node_ttl: float
    directory_ttl: float  # seconds a room's directory entries outlive the last touch

    async def register(self, node: NodeRecord) -> None: ...

    async def heartbeat(self, node_id: str, load: NodeLoad) -> None: ...

    async def set_state(self, node_id: str, state: NodeState) -> None: ...

    async def deregister(self, node_id: str) -> None: ...

    async def live_nodes(self) -> list[NodeRecord]: ...

    # Room directory: a room may live on several nodes (cascading). ---------------------

    async def add_room_host(self, room: str, node_id: str) -> None:
        """``node_id`` hosts ``room`` (or was chosen to: placement claims before it redirects)."""
        ...

    async def room_hosts(self, room: str) -> list[str]:
        """The live nodes hosting ``room``, sorted (a host whose record expired is left out)."""
        ...

    async def remove_room_host(self, room: str, node_id: str) -> None: ...

    async def put_member(self, room: str, member: RoomMember) -> None:
        """Store the member (keyed by sid) and publish it as a ``RoomEvent``, atomically, so
        a node that reads the directory after subscribing misses nothing."""
        ...

    async def remove_member(self, room: str, member: RoomMember, reason: str) -> None:
        """Delete the member and publish a ``left`` event."""
        ...

    async def room_members(self, room: str) -> list[RoomMember]: ...

    async def drop_node_members(self, room: str, node_id: str) -> list[RoomMember]:
        """Delete the members on ``node_id`` (a dead node's), returning them; no events."""
        ...

    async def epoch(self) -> str:
        """An id the backend's data was created under: it changes when the data is lost
        (Redis restarted empty, or flushed), so nodes can tell "everyone vanished from the
        directory" from "everyone died"."""
        ...

    async def touch_rooms(self, node_id: str, rooms: list[str]) -> None:
        """``node_id`` still hosts ``rooms``: their directory entries (members, hosts, and
        the node's own list of rooms) live another ``directory_ttl``. Entries nobody
        touches expire, so a room whose nodes all died leaves no identities behind."""
        ...

    async def clear_node(self, node_id: str, reason: str) -> list[tuple[str, RoomMember]]:
        """Remove what a node left in the directory (members, with ``left`` events; host
        entries) when it starts again under the same id: a previous process of it may have
        died with nobody else in its rooms to notice. Returns the (room, member) removed."""
        ...

    def event_feed(
        self, on_event: Callable[[RoomEvent], None], on_resubscribed: Callable[[], None]
    ) -> EventFeed:
        """Events of the rooms watched, in the order each node published them.

        ``on_resubscribed`` runs after the feed lost its connection and subscribed again:
        events in between are lost, so the caller reads the directory again."""
        ...

    async def set_room_policy(self, room: str, policy: RoomPolicy) -> None: ...

    async def room_policy(self, room: str) -> RoomPolicy: ...

    async def record_rtt(self, prefix: str, region: str, rtt_ms: float) -> None: ...

    async def learned_rtts(self, prefix: str) -> dict[str, float]: ...

    async def close(self) -> None: ...


DIRECTORY_TTL = 600.0  # seconds a room's directory entries outlive the last touch


def create_registry(url: str, node_ttl: float, directory_ttl: float = DIRECTORY_TTL) -> Registry:
    """``memory://`` (single process, the default) or ``redis://host:port/db``."""
    if url.startswith("memory://"):
        from .memory_registry import MemoryRegistry

        return MemoryRegistry(node_ttl, directory_ttl)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from .redis_registry import RedisRegistry

        return RedisRegistry(url, node_ttl, directory_ttl)
    raise ValueError(f"registry.url: unsupported scheme in {url!r} (memory:// or redis://)")
