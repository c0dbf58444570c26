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
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from regions.models import NodeLoad, NodeRecord, NodeState, RoomPolicy
from regions.placement import Decision, PlacementInput, client_prefix, map_region, place
from regions.registry import Registry, RegistryError, create_registry
from relay.background import stop_tasks
from relay.control import RelayControl, RoomConfig

from .settings import Settings

T = TypeVar("T")

logger = logging.getLogger(__name__)
RESERVED_FOR = 0.5  # seconds a session redirected to a node counts before its heartbeat does


class PlacementUnavailable(Exception):
    """No placement can be made now (registry down past the grace, or no eligible node)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(slots=True)
class Placement:
    decision: Decision
    local: bool  # the session belongs here
    policy: RoomPolicy = field(default_factory=RoomPolicy)  # the room's, as decide read it

    @property
    def room_config(self) -> RoomConfig:
        """The room's settings, for a join that creates it here."""
        policy = self.policy
        return RoomConfig(
            max_participants=policy.max_participants,
            max_viewers=policy.max_viewers,
            audio_top_n=policy.audio_top_n,
            public_viewing=policy.public_viewing,
        )


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
        self.on_registered: list[Callable[[], Awaitable[None]]] = []
        self._reserved: dict[str, list[float]] = {}  # node -> when sessions were sent there

    @property
    def node_id(self) -> str:
        return self.settings.node_id

    def record(self) -> NodeRecord:
        return NodeRecord(
            id=self.node_id,
            region=self.settings.region,
            jurisdiction=self.settings.jurisdiction,
            signaling_url=self.public_url,
            internal_url=self.settings.cluster.internal_url,
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
            await stop_tasks([self._task])
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
        """Register, and claim again the rooms hosted here (and their members, through
        ``on_registered``): after a Redis restart or flush the room directory is rebuilt
        within a heartbeat, instead of a room's next session being placed elsewhere."""
        await self.registry.register(self.record())
        for room in self.relay.rooms():
            if self.relay.hosts(room.name):
                await self.registry.add_room_host(room.name, self.node_id)
        for callback in self.on_registered:
            await callback()

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

    def _nodes(self) -> list[NodeRecord]:
        """The node list, with this node's own record as it is now (its load in particular:
        a burst of joins fills it before the next heartbeat says so), and the sessions
        sent to other nodes that their last heartbeat cannot have counted yet."""
        nodes = [self.record()]
        for node in self.snapshot:
            if node.id == self.node_id:
                continue
            # A redirected client arrives within moments; a heartbeat half a second after the
            # redirect counts it, so the reservation ends there.
            pending = [
                t for t in self._reserved.get(node.id, []) if node.last_heartbeat < t + RESERVED_FOR
            ]
            self._reserved[node.id] = pending
            if pending:
                sessions = node.load.sessions + len(pending)
                node = node.model_copy(
                    update={"load": node.load.model_copy(update={"sessions": sessions})}
                )
            nodes.append(node)
        return nodes

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
            hosts = await self._ask(self.registry.room_hosts(room))
            learned = await self._ask(self.registry.learned_rtts(client_prefix(client_ip or "")))
        except RegistryError:
            hosts = [self.node_id] if self.relay.hosts(room) else []
            learned = {}
        routing = self.settings.routing
        return place(
            PlacementInput(
                nodes=self._nodes(),
                policy=policy,
                room_hosts=hosts,
                probes=probes or {},
                learned=learned,
                mapped_region=map_region(client_ip or "", routing.prefix_map),
                default_region=routing.default_region or self.settings.region,
                now=time.time(),
                node_ttl=self.settings.node_ttl,
                local_node=self.node_id,
            )
        )

    async def explain(
        self, room: str, client_ip: str | None, probes: dict[str, float] | None = None
    ) -> Decision:
        """``decide``, plus the nodes the room's media would be bridged from."""
        decision = await self.decide(room, client_ip, probes)
        if decision.node is not None:
            try:
                members = await self._ask(self.registry.room_members(room))
            except RegistryError:
                members = []
            origins = {m.node for m in members if m.tracks} - {decision.node.id}
            decision.bridged_from = sorted(origins)
        return decision

    async def place(
        self,
        room: str,
        client_ip: str | None,
        probes: dict[str, float] | None = None,
        redirected: bool = False,
    ) -> Placement:
        """Decide for this participant, and claim the room for the node chosen (it becomes
        one of the room's hosts) before redirecting there: the node a client is sent to
        finds itself a host and takes the session without deciding again, so two nodes
        whose node lists disagree cannot send a client back and forth. A redirected
        request is never redirected again."""
        decision = await self.decide(room, client_ip, probes)
        # Only a node the room's policy allows (and not full) takes a session it was not
        # chosen for here: a client cannot use the redirect marker to get around residency.
        eligible = any(c.node == self.node_id and c.eligible for c in decision.candidates)
        chosen_here = decision.node is not None and decision.node.id == self.node_id
        if self.state == NodeState.ACTIVE and eligible and (redirected or chosen_here):
            with contextlib.suppress(RegistryError):
                await self._ask(self.registry.add_room_host(room, self.node_id))
            return Placement(decision, True, self.policies.get(room, RoomPolicy()))
        if redirected:
            # Sent here by a node whose list was stale (this node filled up or started
            # draining since): refuse rather than redirect a second time; the client starts
            # over at its signaling URL.
            why = next((c.why for c in decision.candidates if c.node == self.node_id), "")
            code = "node_full" if why.startswith("full") else "no_eligible_node"
            if self.state == NodeState.DRAINING:
                code, why = "node_draining", "this node takes no new sessions"
            raise PlacementUnavailable(code, f"redirected here, but {why or 'not eligible'}")
        if decision.node is None:
            if self.state == NodeState.DRAINING:
                raise PlacementUnavailable("node_draining", "this node takes no new sessions")
            if decision.candidates and all(c.why.startswith("full") for c in decision.candidates):
                raise PlacementUnavailable("node_full", "every node is at capacity")
            raise PlacementUnavailable("no_eligible_node", decision.reason)
        with contextlib.suppress(RegistryError):  # within the grace: serve from the snapshot
            await self._ask(self.registry.add_room_host(room, decision.node.id))
        self._reserve(decision.node.id)
        return Placement(decision, False, self.policies.get(room, RoomPolicy()))

    def _reserve(self, node_id: str) -> None:
        """Count a session sent to ``node_id`` until that node's own heartbeat can include
        it: a burst of joins entering here spreads over a region's nodes instead of all
        following one stale load reading past a node's capacity."""
        self._reserved.setdefault(node_id, []).append(time.time())

    async def room_closed(self, room: str) -> None:
        """Stop hosting the room, unless a session of it came back meanwhile (a reconnect
        with the same identity empties the room for a moment)."""
        if self.relay.hosts(room):
            return
        with contextlib.suppress(RegistryError):
            await self.registry.remove_room_host(room, self.node_id)
