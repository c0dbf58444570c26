"""One room on several nodes: the room directory, member events, bridges and data across nodes.

Every node writes its own participants (``RoomMember``: identity, node, tracks) to the
registry's directory, which publishes each change as a ``RoomEvent``; every node hosting the
room subscribes to them. What this node's clients hear about participants elsewhere comes
from there (the relay's stand-in publishers are media plumbing and stay silent).

Media: a node with participants of a room bridges every track published on another node,
one bridge per (room, origin node), each track once, however many local viewers it has; its
viewers take the stand-in's tracks like local ones. The viewing node asks the origin for
the bridge (``/v1/cluster/bridges``) and initiates the connection.

Data messages go node to node (``/v1/cluster/data``), straight to the nodes hosting the
room, in order per sender node, and never through Redis: message content stays on the
nodes the room's residency policy admitted (which the directory's metadata, on Redis, does
not carry). Events are metadata, the same as the directory, so they use its pub/sub.

Faults: a node whose registry record expired has left; its members leave here within a
check interval, and the bridges from it close. After the event feed reconnects, the
directory is read again. A bridge that could not be opened is retried each interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from regions.models import MemberTrack, NodeRecord, RoomEvent, RoomMember, RoomPolicy
from regions.registry import EventFeed, RegistryError
from relay.background import TaskSet, stop_tasks
from relay.control import ParticipantInfo, ParticipantKind, RelayControl, Relayed
from relay.errors import RelayError

from . import protocol as p
from .cluster import Cluster
from .peer_client import PeerClient, PeerError, PeerQueue
from .peer_wire import BridgeOpen, BridgeTrackAsk, DataPush, endpoint_adapter, track_adapter
from .roster import Change, Roster

logger = logging.getLogger(__name__)

LOCAL_KINDS = (ParticipantKind.SIGNALLED, ParticipantKind.INGEST, ParticipantKind.VIEWER)
ANNOUNCED_KINDS = frozenset(k.value for k in ParticipantKind if k.announced)
Broadcast = Callable[[str, p._Message], None]
POLICY_REFRESH = 5.0  # seconds between reads of the hosted rooms' residency policies


def member_of(info: ParticipantInfo, node: str) -> RoomMember:
    return RoomMember(
        sid=info.sid,
        identity=info.identity,
        name=info.name,
        node=node,
        kind=info.kind.value,
        joined_at=info.joined_at,
        version=time.monotonic_ns(),
        tracks=[
            MemberTrack(
                sid=t.sid,
                kind="audio" if t.kind == "audio" else "video",
                name=t.name,
                mime=t.mime,
                muted=t.muted,
                layers=list(t.layers),
                source=t.source,
            )
            for t in info.tracks
        ],
    )


def describe_member(member: RoomMember) -> p.ParticipantDescription:
    return p.ParticipantDescription(
        sid=member.sid,
        identity=member.identity,
        name=member.name,
        tracks=[describe_member_track(t) for t in member.tracks],
    )


def describe_member_track(track: MemberTrack) -> p.TrackDescription:
    return p.TrackDescription(
        sid=track.sid,
        kind=track.kind,
        name=track.name,
        mime=track.mime,
        muted=track.muted,
        layers=list(track.layers),
        source=track.source,
    )


class Cascade:
    def __init__(self, cluster: Cluster, relay: RelayControl, broadcast: Broadcast) -> None:
        self.cluster = cluster
        self.relay = relay
        self.broadcast = broadcast  # to this node's WebSocket sessions of a room
        settings = cluster.settings
        self.node_id = settings.node_id
        self.interval = min(0.5, settings.heartbeat_interval)
        self.peers = PeerClient(settings.cluster.secret, settings.cluster.bridge_timeout)
        self.rosters: dict[str, Roster] = {}  # rooms hosted here -> members elsewhere
        self.local: dict[str, dict[str, RoomMember]] = {}  # room -> sid -> our members
        self.bridges_refused = 0  # residency kept a bridge closed
        self.bridge_failures = 0
        self.data_dropped = 0  # data messages for other nodes lost (queue full, peer failed)
        self._feed: EventFeed | None = None
        self._writes: asyncio.Queue[tuple[str, RoomMember, str]] = asyncio.Queue()
        self._bridging: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._again: set[tuple[str, str]] = set()
        self._data: dict[str, PeerQueue] = {}
        self._unread: set[str] = set()  # rooms whose directory could not be read yet
        self._cleared = False  # what an earlier process of this node left in the directory
        self._epoch: str | None = None  # the registry's data epoch last seen
        self._amnesty_until = 0.0  # after the registry lost its data: nobody declared gone
        self._policies_due = 0.0  # when the hosted rooms' policies are read again
        self._touch_due = 0.0  # when our rooms' directory entries are touched again
        self._tasks = TaskSet()
        self._loops: list[asyncio.Task[None]] = []

    # lifetime ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._feed = self.cluster.registry.event_feed(self._on_event, self._on_resubscribed)
        self._loops = [asyncio.create_task(self._write_loop()), asyncio.create_task(self._watch())]

    async def stop(self) -> None:
        await stop_tasks([*self._loops, *self._tasks, *self._bridging.values()])
        for queue in self._data.values():
            await queue.close()
        if self._feed is not None:
            with contextlib.suppress(RegistryError):
                await self._feed.close()
        await self.peers.close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks.spawn(coro)

    # our own members -> the directory ---------------------------------------------------------

    def local_changed(self, room: str, info: ParticipantInfo) -> None:
        """A participant connected here joined or changed its tracks."""
        if info.kind not in LOCAL_KINDS:
            return
        member = member_of(info, self.node_id)
        self.local.setdefault(room, {})[member.sid] = member
        if room not in self.rosters:
            self.rosters[room] = Roster(self.node_id)
            self._spawn(self._open_room(room))
        elif info.subscribes:  # the first to take media here: bring the room's tracks
            for origin in self.rosters[room].origins():
                self._bridge(room, origin)
        self._writes.put_nowait(("put", member, room))

    def local_left(self, room: str, info: ParticipantInfo, reason: str) -> None:
        if info.kind not in LOCAL_KINDS:
            return
        members = self.local.get(room, {})
        member = members.pop(info.sid, None) or member_of(info, self.node_id)
        if not members:
            self.local.pop(room, None)
        self._writes.put_nowait(("left:" + reason, member, room))

    async def _write_loop(self) -> None:
        """Directory writes in the order things happened here: events are per-publisher
        ordered for everyone else. A write the registry refuses is tried again (backing off)
        before the next one: a leave lost while Redis was down would leave a participant in
        the directory for good; a put lost is put back by ``reassert`` too."""
        registry = self.cluster.registry
        while True:
            op, member, room = await self._writes.get()
            backoff = 0.2
            while True:
                try:
                    if op == "put":
                        await registry.put_member(room, member)
                    elif op.startswith("left:"):
                        await registry.remove_member(room, member, op[5:])
                    break
                except Exception as exc:  # RegistryError, or a bug: never stop writing
                    if backoff == 0.2:
                        logger.warning("room directory write failed (%s); retrying", exc)
                    await asyncio.sleep(backoff)
                    backoff = min(2.0, backoff * 2)

    async def reassert(self) -> None:
        """After (re-)registering: the directory may have lost everything (Redis restarted
        or flushed); put back what lives here. The first time, clear what an earlier
        process under this node id left (it may have died with nobody else in its rooms
        to see it go)."""
        registry = self.cluster.registry
        if not self._cleared:
            cleared = await registry.clear_node(self.node_id, "node_restarted")
            if cleared:
                logger.warning("cleared %d participants a previous run left", len(cleared))
            self._cleared = True
        for room, members in list(self.local.items()):
            await registry.add_room_host(room, self.node_id)
            for member in list(members.values()):
                await registry.put_member(room, member)

    # the room's other members -> our clients and bridges ---------------------------------------

    async def _open_room(self, room: str) -> None:
        """Subscribe, then read the directory: an event between the two arrives twice, which
        the roster ignores; none is lost."""
        if self._feed is None:
            return
        try:
            await self._feed.watch(room)
            roster = self.rosters.get(room)
            mark = roster.mark() if roster is not None else None
            members = await self.cluster.registry.room_members(room)
        except RegistryError as exc:
            logger.warning("room %s: directory unavailable (%s); retrying", room, exc)
            self._unread.add(room)  # the watch loop tries again
            return
        self._unread.discard(room)
        self._catch_up(room, members, mark)

    def room_closed(self, room: str) -> None:
        """Nobody of the room is connected here any more."""
        if self.relay.hosts(room):
            return
        self.rosters.pop(room, None)
        self.local.pop(room, None)
        self._unread.discard(room)
        if self._feed is not None:
            feed = self._feed
            self._spawn(self._unwatch(feed, room))

    async def _unwatch(self, feed: EventFeed, room: str) -> None:
        with contextlib.suppress(RegistryError):
            await feed.unwatch(room)

    def _catch_up(self, room: str, members: list[RoomMember], mark: int | None) -> None:
        roster = self.rosters.get(room)
        if roster is None:
            return
        if self._forgetful():
            # The directory is being rebuilt: who is missing from it may just not be back
            # yet. Take what is there; who really left goes at the reread after.
            changes = [c for c in (roster.upsert(m) for m in members) if not c.empty]
        else:
            changes = roster.replace(members, mark)
        for change in changes:
            self._apply(room, change)

    def _forgetful(self) -> bool:
        return time.monotonic() < self._amnesty_until

    def _on_event(self, event: RoomEvent) -> None:
        roster = self.rosters.get(event.room)
        if roster is None or event.node == self.node_id:
            return
        if event.left:
            change = roster.remove(event.member, event.reason or "left")
        else:
            change = roster.upsert(event.member)
        if not change.empty:
            self._apply(event.room, change)

    def _on_resubscribed(self) -> None:
        self._spawn(self._reread_all())

    async def _reread_all(self) -> None:
        with contextlib.suppress(RegistryError):
            await self._check_epoch()
        for room in list(self.rosters):
            await self._reread(room)

    async def _check_epoch(self) -> None:
        """Redis lost its data (restarted empty, flushed): every node vanished from the node
        list and the directory at once, and each puts itself back within a heartbeat. Until
        they have had the time, nobody is declared gone."""
        epoch = await self.cluster.registry.epoch()
        if self._epoch is not None and epoch != self._epoch:
            settings = self.cluster.settings
            grace = settings.node_ttl + 2 * settings.heartbeat_interval
            self._amnesty_until = time.monotonic() + grace
            logger.warning("the registry lost its data; nodes have %.1f s to come back", grace)
        self._epoch = epoch

    async def _reread(self, room: str) -> None:
        roster = self.rosters.get(room)
        mark = roster.mark() if roster is not None else None
        try:
            members = await self.cluster.registry.room_members(room)
        except RegistryError:
            return
        self._catch_up(room, members, mark)

    def _apply(self, room: str, change: Change) -> None:
        """Tell this node's clients, then fix the bridges."""
        member = change.member
        if member.kind not in ANNOUNCED_KINDS:
            return  # a WHEP viewer elsewhere: it publishes nothing and is not announced
        if change.joined:
            self._one_identity(room, member)
            self.broadcast(room, p.ParticipantJoined(participant=describe_member(member)))
        else:
            for track in change.published:
                description = describe_member_track(track)
                self.broadcast(
                    room, p.TrackPublished(participant_sid=member.sid, track=description)
                )
        for track in change.unpublished:
            self.broadcast(
                room, p.TrackUnpublished(participant_sid=member.sid, track_sid=track.sid)
            )
        for track in change.muted:
            message = p.TrackMuted(
                participant_sid=member.sid, track_sid=track.sid, muted=track.muted
            )
            self.broadcast(room, message)
        if change.left:
            message_left = p.ParticipantLeft(
                sid=member.sid, identity=member.identity, reason=change.reason
            )
            self.broadcast(room, message_left)
        if change.unpublished:
            sids = [t.sid for t in change.unpublished]
            self._spawn(self._drop(room, member.node, sids))
        if change.published:
            self._bridge(room, member.node)

    def _one_identity(self, room: str, member: RoomMember) -> None:
        """An identity is in a room once, across nodes as on one: the later session stays
        (a client that reconnected through another node), the earlier leaves. WHEP viewers
        are exempt, as on one node."""
        for local in list(self.local.get(room, {}).values()):
            if local.kind not in ANNOUNCED_KINDS:
                continue
            if local.identity == member.identity and local.joined_at < member.joined_at:
                self._spawn(self._remove(room, local.identity, "duplicate_identity"))

    async def _remove(self, room: str, identity: str, reason: str) -> None:
        with contextlib.suppress(RelayError):  # gone meanwhile
            await self.relay.remove(room, identity, reason)

    async def _drop(self, room: str, origin: str, track_sids: list[str]) -> None:
        for sid in track_sids:
            await self.relay.bridge_drop(room, origin, sid)

    # bridges ---------------------------------------------------------------------------------

    def _bridge(self, room: str, origin: str) -> None:
        """Carry what ``origin`` publishes in ``room`` here (one task per bridge at a time)."""
        key = (room, origin)
        running = self._bridging.get(key)
        if running is not None and not running.done():
            self._again.add(key)  # what changed meanwhile is carried once this one ends
            return
        task = asyncio.ensure_future(self._carry(room, origin))
        self._bridging[key] = task
        task.add_done_callback(lambda done: self._forget_bridging(key, done))

    def _forget_bridging(self, key: tuple[str, str], done: asyncio.Task[None]) -> None:
        if self._bridging.get(key) is done:
            del self._bridging[key]
        if key in self._again and key[0] in self.rosters:
            self._again.discard(key)
            self._bridge(*key)

    def _needed(self, room: str, origin: str) -> list[MemberTrack]:
        roster = self.rosters.get(room)
        if roster is None or not self.relay.subscribers_here(room):
            return []
        carried = self.relay.bridged(room, origin)
        return [
            t for m in roster.origins().get(origin, []) for t in m.tracks if t.sid not in carried
        ]

    async def _carry(self, room: str, origin: str) -> None:
        needed = self._needed(room, origin)
        if not needed:
            return
        node = self._live(origin)
        if node is None:
            return  # gone, or not heard of yet: the watch loop decides
        policy = await self.cluster.policy(room)
        allowed, why = policy.allows(node)
        if not allowed:
            self.bridges_refused += 1
            logger.warning("room %s: no bridge from %s (%s)", room, origin, why)
            return
        try:
            if not self.relay.bridged(room, origin):
                ask = BridgeOpen(
                    room=room, node=self.node_id, fingerprints=list(self.relay.fingerprints())
                )
                answer = await self.peers.post(node, "/v1/cluster/bridges", ask)
                self.relay.bridge_in(room, origin, endpoint_adapter.validate_python(answer))
            for track in needed:
                want = BridgeTrackAsk(room=room, node=self.node_id, track_sid=track.sid)
                answer = await self.peers.post(node, "/v1/cluster/bridges/tracks", want)
                if room in self.rosters:
                    self.relay.bridge_receive(room, origin, track_adapter.validate_python(answer))
        except (PeerError, RelayError, ValueError) as exc:
            self.bridge_failures += 1
            logger.warning("room %s: bridge from %s failed: %s; retrying", room, origin, exc)

    def _live(self, node_id: str) -> NodeRecord | None:
        return next((n for n in self.cluster.snapshot if n.id == node_id), None)

    async def check_peer(self, room: str, node_id: str) -> tuple[str, str] | None:
        """A node asking for a bridge or pushing data must be a live node the room may use:
        the refusal (code, text) otherwise."""
        node = self._live(node_id)
        if node is None:
            return "unknown_node", f"{node_id} is not a live node of this cluster"
        allowed, why = (await self.cluster.policy(room)).allows(node)
        if not allowed:
            self.bridges_refused += 1
            return "residency", f"room {room} may not use {node_id}: {why}"
        return None

    # data ------------------------------------------------------------------------------------

    def forward_data(self, room: str, sender_sid: str, lossy: bool, relayed: Relayed) -> None:
        roster = self.rosters.get(room)
        if roster is None:
            return
        push = DataPush(
            room=room,
            node=self.node_id,
            sender_sid=sender_sid,
            lossy=lossy,
            delivered=relayed.delivered,
            destinations=list(relayed.destinations),
        )
        # The room's residency as last read (placement reads it on every join): content goes
        # only to nodes it allows, also when it was tightened after they took members.
        policy = self.cluster.policies.get(room, RoomPolicy())
        for node_id in roster.nodes():
            node = self._live(node_id)
            if node is None or not policy.allows(node)[0]:
                continue
            queue = self._data.get(node_id)
            if queue is None:
                queue = self._data[node_id] = PeerQueue(self.peers, node, self._data_lost)
            queue.push("/v1/cluster/data", push)

    def _data_lost(self) -> None:
        self.data_dropped += 1

    @property
    def events_dropped(self) -> int:
        return self._feed.dropped if self._feed is not None else 0

    # members elsewhere, as this node's clients see them ------------------------------------

    def remote_members(self, room: str) -> list[RoomMember]:
        roster = self.rosters.get(room)
        return list(roster.members.values()) if roster is not None else []

    # the periodic check ----------------------------------------------------------------------

    async def _watch(self) -> None:
        """Nodes that died leave; bridges that failed are tried again; rooms whose directory
        could not be read are read again."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self._check_once()
            except Exception:  # one bad round must not end the checks for good
                logger.exception("cascade check failed")

    async def _check_once(self) -> None:
        try:
            forgetful = self._forgetful()
            await self._check_epoch()
            live = {n.id for n in await self.cluster.registry.live_nodes()}
        except RegistryError:
            return  # running bridges keep forwarding; nothing is decided blind
        if self._forgetful():
            return  # the directory is being rebuilt: nobody is declared gone yet
        if forgetful:  # rebuilt: who did not come back has left
            await self._reread_all()
        for room in [r for r in self._unread if r in self.rosters]:
            await self._open_room(room)
        for room, roster in list(self.rosters.items()):
            for node_id in roster.nodes() - live - {self.node_id}:
                await self._node_lost(room, roster, node_id)
            for origin in roster.origins():
                if self._needed(room, origin):
                    self._bridge(room, origin)
        for node_id in list(self._data):
            if node_id not in live:
                await self._data.pop(node_id).close()
        if time.monotonic() >= self._touch_due and self.local:
            # our rooms' directory entries expire unless touched (a room whose nodes all
            # died leaves no identities behind)
            registry = self.cluster.registry
            with contextlib.suppress(RegistryError):  # tried again at the next round
                await registry.touch_rooms(self.node_id, sorted(self.local))
                self._touch_due = time.monotonic() + registry.directory_ttl / 10
        if time.monotonic() >= self._policies_due:
            self._policies_due = time.monotonic() + POLICY_REFRESH
            await self._enforce_policies()

    async def _enforce_policies(self) -> None:
        """Read each hosted room's residency again (an admin may have tightened it through
        another node) and close the bridges to nodes it no longer allows; data messages
        follow the cached policy at once (``forward_data``)."""
        for room, roster in list(self.rosters.items()):
            policy = await self.cluster.policy(room)
            for node_id in roster.nodes() - {self.node_id}:
                node = self._live(node_id)
                allowed, why = policy.allows(node) if node is not None else (True, "")
                if not allowed:
                    logger.warning("room %s: closing bridges with %s (%s)", room, node_id, why)
                    self.bridges_refused += 1
                    await self.relay.bridge_close(room, node_id, "residency")

    async def _node_lost(self, room: str, roster: Roster, node_id: str) -> None:
        logger.warning("room %s: node %s is gone; its participants leave", room, node_id)
        for change in roster.drop_node(node_id, "node_lost"):
            self._apply(room, change)
        await self.relay.bridge_close(room, node_id, "node_lost")
        with contextlib.suppress(RegistryError):
            await self.cluster.registry.drop_node_members(room, node_id)
