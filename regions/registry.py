"""The ``Registry`` protocol every backend implements, and the factory that picks one.

Liveness is judged by the registry: a node whose last heartbeat is older than ``node_ttl``
is down and is never returned by ``live_nodes``. Room assignments are atomic: when two
signaling instances place the same room at once, both get the same node back.
"""

from __future__ import annotations

from typing import Protocol

from .models import NodeLoad, NodeRecord, NodeState, RoomPolicy


class RegistryError(Exception):
    """The backend cannot be reached or answered nonsense."""


class Registry(Protocol):
    node_ttl: float

    async def register(self, node: NodeRecord) -> None: ...

    async def heartbeat(self, node_id: str, load: NodeLoad) -> None: ...

    async def set_state(self, node_id: str, state: NodeState) -> None: ...

    async def deregister(self, node_id: str) -> None: ...

    async def live_nodes(self) -> list[NodeRecord]: ...

    async def assign_room(self, room: str, node_id: str) -> str:
        """Assign ``room`` to ``node_id`` unless it already has a live node; return the owner."""
        ...

    async def room_node(self, room: str) -> str | None: ...

    async def release_room(self, room: str, node_id: str) -> None:
        """Forget the assignment if ``node_id`` still holds it."""
        ...

    async def set_room_policy(self, room: str, policy: RoomPolicy) -> None: ...

    async def room_policy(self, room: str) -> RoomPolicy: ...

    async def record_rtt(self, prefix: str, region: str, rtt_ms: float) -> None: ...

    async def learned_rtts(self, prefix: str) -> dict[str, float]: ...

    async def close(self) -> None: ...


def create_registry(url: str, node_ttl: float) -> Registry:
    """``memory://`` (single process, the default) or ``redis://host:port/db``."""
    if url.startswith("memory://"):
        from .memory_registry import MemoryRegistry

        return MemoryRegistry(node_ttl)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from .redis_registry import RedisRegistry

        return RedisRegistry(url, node_ttl)
    raise ValueError(f"registry.url: unsupported scheme in {url!r} (memory:// or redis://)")
