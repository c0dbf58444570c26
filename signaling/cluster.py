"""This node in the cluster: registration, heartbeats, the node snapshot, and placement.

Placement runs where a session arrives. When the registry is unreachable the node keeps
forwarding what it has, places from its last snapshot for ``routing.snapshot_grace``
seconds, then refuses new sessions with a clear error until the registry is back; it
re-registers by itself when that happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from regions.models import NodeLoad, NodeRecord, NodeState, RoomPolicy
from regions.placement import Decision, PlacementInput, client_prefix, map_region, place
from regions.registry import Registry, RegistryError, create_registry
from relay.control import RelayControl

from .settings import Settings

T = TypeVar("T")

logger = logging.getLogger(__name__)


class PlacementUnavailable(Exception):
    """No placement can be made now (registry down past the grace, or no eligible node)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(slots=True)
class Placement:
    decision: Decision
    local: bool  # the session belongs here


class Cluster:
    def __init__(self, settings: Settings, relay: RelayControl) -> None:
        self.settings = settings
        self.relay = relay
        self.registry: Registry = create_registry(settings.registry.url, settings.node_ttl)
        self.public_url = settings.public_url
        self.state = NodeState.ACTIVE
        self.snapshot: list[NodeRecord] = []
        self.snapshot_at = 0.0  # when the registry last answered
        self.policies: dict[str, RoomPolicy] = {}
        self._task: asyncio.Task[None] | None = None
        self._registered = False
        self._registry_quiet = False  # a join-path call timed out; no heartbeat got through since
        self.registry_timeouts = 0
        self._last_cpu = (time.process_time(), time.monotonic(), 0)

    @property
    def node_id(self) -> str:
        return self.settings.node_id

    def record(self) -> NodeRecord:
        return NodeRecord(
            id=self.node_id,
            region=self.settings.region,
            jurisdiction=self.settings.jurisdiction,
            signaling_url=self.public_url,
            media_address=",".join(f"{a}:{self.relay.port}" for a in self.settings.rtc.announce),
            capacity=self.settings.capacity.max_participants,
            load=self.load(),
            state=self.state,
            last_heartbeat=time.time(),
        )

    def load(self) -> NodeLoad:
        """Load since the previous call: CPU share of one core, media bitrate in and out."""
        stats = self.relay.stats
        cpu, wall, octets = (
            time.process_time(),
            time.monotonic(),
            stats.rtp_bytes_in + stats.rtp_bytes_out,
        )
        last_cpu, last_wall, last_octets = self._last_cpu
        self._last_cpu = (cpu, wall, octets)
        elapsed = max(1e-3, wall - last_wall)
        return NodeLoad(
            cpu=round((cpu - last_cpu) / elapsed, 3),
            bitrate_bps=int((octets - last_octets) * 8 / elapsed),
            sessions=self.relay.participant_count,
            tracks=self.relay.track_count,
        )

    @property
    def registry_healthy(self) -> bool:
        return time.monotonic() - self.snapshot_at <= self.settings.routing.snapshot_grace

    async def start(self, public_url: str) -> None:
        if not self.public_url:
            self.public_url = public_url
        await self._beat()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(RegistryError):
            await self.registry.deregister(self.node_id)
        await self.registry.close()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval)
            try:
                await self._beat()
            except Exception:  # the heartbeat must outlive any one bad beat
                logger.exception("heartbeat failed")

    async def _beat(self) -> None:
        """Heartbeat and refresh the snapshot; re-register when the record was lost."""
        try:
            if not self._registered or not any(n.id == self.node_id for n in self.snapshot):
                await self._register()
                self._registered = True
            else:
                await self.registry.heartbeat(self.node_id, self.load())
            await self._learn_rtts()
            self.snapshot = await self.registry.live_nodes()
            if all(n.id != self.node_id for n in self.snapshot):
                await self._register()  # expired meanwhile, or Redis lost its data
                self.snapshot = await self.registry.live_nodes()
            self.snapshot_at = time.monotonic()
            self._registry_quiet = False  # it answers again: joins may ask it
        except RegistryError as exc:
            self._registered = False
            logger.warning("registry unreachable: %s", exc)

    async def _ask(self, call: Coroutine[Any, Any, T]) -> T:
        """A registry call on the join path: short, and skipped while the registry is known
        not to answer, so a hung Redis costs a join no more than a refused one. The
        heartbeat (long timeouts, in the background) finds out when it answers again."""
        if self._registry_quiet:
            call.close()
            raise RegistryError("the registry did not answer lately; placing from the snapshot")
        try:
            return await asyncio.wait_for(call, self.settings.routing.registry_timeout)
        except TimeoutError:
            self._registry_quiet = True
            self.registry_timeouts += 1
            logger.warning(
                "registry slower than %ss on the join path", self.settings.routing.registry_timeout
            )
            raise RegistryError("the registry did not answer in time") from None

    async def _register(self) -> None:
        """Register, and claim again the rooms hosted here: after a Redis restart or flush
        the room directory is rebuilt within a heartbeat, instead of a room's next session
        being placed elsewhere and splitting it."""
        await self.registry.register(self.record())
        for room in self.relay.rooms():
            if room.num_participants:
                await self.registry.assign_room(room.name, self.node_id)

    async def _learn_rtts(self) -> None:
        """RTTs measured on live sessions (RTCP), filed under the client's truncated prefix:
        one registry write per prefix per heartbeat, however many sessions share it."""
        samples: dict[str, list[float]] = {}
        for sample in self.relay.rtt_samples():
            samples.setdefault(client_prefix(sample.client_ip), []).append(sample.rtt_ms)
        for prefix, rtts in samples.items():
            await self.registry.record_rtt(prefix, self.settings.region, sum(rtts) / len(rtts))

    async def drain(self) -> None:
        self.state = NodeState.DRAINING
        with contextlib.suppress(RegistryError):
            await self.registry.set_state(self.node_id, NodeState.DRAINING)
        self.snapshot = [
            n.model_copy(update={"state": self.state}) if n.id == self.node_id else n
            for n in self.snapshot
        ]

    async def policy(self, room: str) -> RoomPolicy:
        try:
            policy = await self._ask(self.registry.room_policy(room))
        except RegistryError:
            return self.policies.get(room, RoomPolicy())
        self.policies[room] = policy
        return policy

    async def set_policy(self, room: str, policy: RoomPolicy) -> None:
        await self.registry.set_room_policy(room, policy)
        self.policies[room] = policy

    async def decide(
        self, room: str, client_ip: str | None, probes: dict[str, float] | None = None
    ) -> Decision:
        """What a join would get, creating nothing (``/v1/route``)."""
        if not self.registry_healthy:
            raise PlacementUnavailable(
                "registry_unavailable",
                "the node registry has been unreachable too long; try again shortly",
            )
        policy = await self.policy(room)
        try:
            owner = await self._ask(self.registry.room_node(room))
            learned = await self._ask(self.registry.learned_rtts(client_prefix(client_ip or "")))
        except RegistryError:
            owner = self.node_id if self.relay.room(room) is not None else None
            learned = {}
        routing = self.settings.routing
        return place(
            PlacementInput(
                nodes=self.snapshot or [self.record()],
                policy=policy,
                room_owner=owner,
                probes=probes or {},
                learned=learned,
                mapped_region=map_region(client_ip or "", routing.prefix_map),
                default_region=routing.default_region or self.settings.region,
                now=time.time(),
                node_ttl=self.settings.node_ttl,
                local_node=self.node_id,
            )
        )

    async def place(
        self,
        room: str,
        client_ip: str | None,
        probes: dict[str, float] | None = None,
        redirected: bool = False,
    ) -> Placement:
        """Decide, and claim the room in the registry for the node chosen, before a redirect
        too: the node a client is sent to finds the room claimed for itself and takes the
        session without deciding again, so two nodes whose node lists disagree cannot send
        a client back and forth. A redirected request is never redirected again."""
        hosted = self.relay.hosts(room)
        decision = await self.decide(room, client_ip, probes)
        # Only a node the room's policy allows (and not full) takes a session it was not
        # chosen for here: a client cannot use the redirect marker to get around residency.
        eligible = any(c.node == self.node_id and c.eligible for c in decision.candidates)
        if self.state == NodeState.ACTIVE and (hosted or eligible):
            try:
                owner = await self._ask(self.registry.room_node(room))
            except RegistryError:
                owner = None
            if hosted or redirected or owner == self.node_id:
                # The room lives here, or was claimed for this node by whoever sent the
                # client: take it, and keep the claim (idempotent).
                with contextlib.suppress(RegistryError):
                    await self._ask(self.registry.assign_room(room, self.node_id))
                return Placement(decision, True)
        if decision.node is None:
            if self.state == NodeState.DRAINING:
                raise PlacementUnavailable("node_draining", "this node takes no new sessions")
            raise PlacementUnavailable("no_eligible_node", decision.reason)
        chosen = decision.node.id
        try:
            owner = await self._ask(self.registry.assign_room(room, chosen))
        except RegistryError:
            owner = chosen  # within the grace: keep serving from the snapshot
        if owner == self.node_id and self.state == NodeState.ACTIVE:
            return Placement(decision, True)
        if owner != chosen:
            # The room already lives on a live node: follow it unless it is draining (then
            # the chosen node takes new sessions).
            target = next(
                (n for n in self.snapshot if n.id == owner and n.state == NodeState.ACTIVE), None
            )
            if target is not None:
                decision.node = target
                decision.reason = f"room already assigned to {owner}"
        if decision.node.id == self.node_id:
            return Placement(decision, True)
        return Placement(decision, False)

    async def room_closed(self, room: str) -> None:
        """Give the room's claim up, unless a session of it came back meanwhile (a reconnect
        with the same identity empties the room for a moment)."""
        if self.relay.hosts(room):
            return
        with contextlib.suppress(RegistryError):
            await self.registry.release_room(room, self.node_id)
