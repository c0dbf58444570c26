"""One relay worker: a UDP socket and the units that share it (a bridge leg it initiates has
a socket of its own, which ``Transports`` opens and closes).

The units, each in its module: ``Rooms`` (who is where), ``Transports`` (legs, DTLS),
``Repair`` (NACKs and keyframe requests), ``Subscriptions``, ``Publishing`` and ``Viewing``
(negotiation per leg kind), and the ``Ticker`` (periodic RTCP and consent). The worker
builds them, runs the participant lifecycle across them, and tells the control plane what
happened through a ``RoomObserver``. Rooms and tracks stay plain state.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import dataclass, field
from typing import Protocol

from .active_speakers import ActiveSpeakers, Speakers
from .background import stop_tasks
from .bridging import Bridging
from .data_message import Relayed, relay_data_message
from .down_leg import DownLeg
from .leg import Leg
from .negotiation import NegotiationController
from .publisher_leg import PublisherLeg
from .publishing import Publishing
from .rate_limiter import TokenBucket
from .repair import Repair
from .room import Participant, ParticipantKind, Permissions, Room, RoomConfig, default_source
from .rooms import Rooms
from .stats import RelayStats
from .subscriber_leg import SubscriberLeg
from .subscriptions import Subscriptions
from .ticker import Ticker
from .track import UpTrack
from .transport import Transports
from .udp_mux import UdpMux, bind_socket
from .viewing import Viewing

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class WorkerConfig:
    bind: str = "127.0.0.1"
    port: int = 7882
    announce: list[str] = field(default_factory=lambda: ["127.0.0.1"])
    consent_timeout: float = 10.0
    max_participants_per_room: int = 100
    max_viewers_per_room: int = 0
    audio_top_n: int = 0  # a room's default: forward each listener the N loudest audio; 0: all
    max_participants: int = 1000
    data_max_bytes: int = 16384
    data_rate: float = 50.0
    data_burst: float = 100.0
    keyframe_interval: float = 0.5
    keyframe_replay_age: float = 0.5  # seconds; 0: joiners always wait for a new keyframe
    udp_buffer_bytes: int = 0  # 0: the kernel's default
    stun_per_ip: int = 1000  # STUN requests per second from one IP address; 0: no limit
    moves_per_ip: int = 200  # SRTP from unlatched addresses of one IP checked per second
    nack_repair: bool = True  # answer subscribers' NACKs from the cache (off: to measure it)
    audio_red: bool = True  # negotiate audio RED (RFC 2198) with publishers and viewers
    bridge_grace: float = 2.0  # seconds a bridge with no viewer here stays open
    tick_interval: float = 0.1
    report_interval: float = 1.0


class RoomObserver(Protocol):
    """Events the control plane forwards to clients."""

    def participant_joined(self, room: Room, participant: Participant) -> None: ...
    def participant_left(self, room: Room, participant: Participant, reason: str) -> None: ...
    def track_published(self, room: Room, participant: Participant, track: UpTrack) -> None: ...
    def track_unpublished(self, room: Room, participant: Participant, track: UpTrack) -> None: ...
    def track_muted(self, room: Room, participant: Participant, track: UpTrack) -> None: ...
    def permissions_changed(self, room: Room, participant: Participant) -> None: ...
    def active_speakers(self, room: Room, speakers: Speakers) -> None: ...
    def data_rejected(self, participant: Participant, code: str, message: str) -> None: ...
    def data_relayed(self, participant: Participant, lossy: bool, relayed: Relayed) -> None: ...


class RelayWorker:
    def __init__(self, config: WorkerConfig, observer: RoomObserver) -> None:
        self.config = config
        self.observer = observer
        self.stats = RelayStats()
        self.mux = UdpMux(self.stats, config.stun_per_ip, config.moves_per_ip)
        self.membership = Rooms(
            config.max_participants_per_room,
            config.max_participants,
            config.max_viewers_per_room,
            config.audio_top_n,
        )
        self.rooms: dict[str, Room] = self.membership.by_name  # the same dict
        self.repair = Repair(
            self.mux,
            self.membership.publisher_leg,
            config.nack_repair,
            config.keyframe_replay_age,
        )
        self.transports = Transports(
            self.mux,
            self.repair,
            config.announce,
            config.port,
            self._leg_connected,
            self.leg_failed,
            # initiating legs' own sockets: at the worker's address, any free port
            lambda: bind_socket(config.bind, 0, config.udp_buffer_bytes),
        )
        self.subscriptions = Subscriptions(self.membership, self.transports, self.repair)
        self.viewing = Viewing(
            self.membership, self.transports, self.subscriptions, config.audio_red
        )
        self.publishing = Publishing(
            self.membership,
            self.transports,
            self.repair,
            self.subscriptions,
            self.viewing,
            observer,
            config.keyframe_interval,
            config.audio_red,
        )
        self.bridging = Bridging(
            self.membership,
            self.transports,
            self.publishing,
            self.subscriptions,
            lambda room, participant: self.observer.participant_joined(room, participant),
        )
        self.speakers = ActiveSpeakers(
            self.membership, lambda room, speakers: self.observer.active_speakers(room, speakers)
        )
        self.ticker = Ticker(
            self.transports.publisher_legs,
            self.membership,
            self.repair,
            self.speakers,
            lambda p: self.transports.spawn(self.leave(p, "consent_timeout")),
            config.tick_interval,
            config.report_interval,
            config.consent_timeout,
        )
        self._transport: asyncio.DatagramTransport | None = None
        self._tick_task: asyncio.Task[None] | None = None
        self.port = config.port

    # lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self.mux, sock=self._bind_socket()
        )
        self._transport = transport
        self.port = self.transports.port = transport.get_extra_info("sockname")[1]
        self._tick_task = asyncio.create_task(self.ticker.run())
        logger.info("relay worker on udp %s:%s", self.config.bind, self.port)

    def _bind_socket(self) -> socket.socket:
        size = self.config.udp_buffer_bytes
        sock = bind_socket(self.config.bind, self.config.port, size)
        # Linux reports twice what it grants (bookkeeping overhead included)
        granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
        if size and granted < size:
            logger.warning(
                "UDP receive buffer is %d bytes, not %d: raise net.core.rmem_max", granted, size
            )
        return sock

    async def stop(self) -> None:
        for room in list(self.rooms.values()):
            await self.delete_room(room.name, reason="server_shutdown")
        if self._tick_task is not None:
            await stop_tasks([self._tick_task])
        self.transports.stop()
        if self._transport is not None:
            self._transport.close()

    # rooms and participants ------------------------------------------------------------

    async def delete_room(self, name: str, reason: str = "room_deleted") -> None:
        room = self.membership.get(name)
        for participant in list(room.participants.values()):
            await self.leave(participant, reason)
        if self.rooms.get(name) is room:  # a join during the leaves made a new one: keep it
            del self.rooms[name]

    async def join(
        self,
        room_name: str,
        identity: str,
        permissions: Permissions,
        kind: ParticipantKind = ParticipantKind.SIGNALLED,
        controller: NegotiationController | None = None,
        auto_subscribe: bool = True,
        name: str = "",
        metadata: str = "",
        room_config: RoomConfig | None = None,
    ) -> Participant:
        """Admit a participant. A signalled one gets its subscriber leg (data channels and
        relay-offered tracks) at once; WHIP and WHEP legs come with their offers."""
        room = self.rooms.get(room_name)
        # An identity takes part once: its new session replaces the old (a reconnect). WHEP
        # viewers neither replace nor are replaced (one viewer token, many players).
        previous = None
        if room is not None and kind is not ParticipantKind.VIEWER:
            previous = room.by_identity(identity)
        if previous is not None:
            await self.leave(previous, "duplicate_identity")
        signalled = kind is ParticipantKind.SIGNALLED
        participant = Participant(
            room=room_name,
            identity=identity,
            permissions=permissions,
            data_limiter=TokenBucket(self.config.data_rate, self.config.data_burst),
            auto_subscribe=auto_subscribe and signalled,
            name=name,
            metadata=metadata,
            kind=kind,
            controller=controller,
            joined_at=time.time(),
        )
        room = self.membership.admit(participant, room_config)
        if signalled:
            # The relay offers this leg; the subscriber's answer decides the DTLS role.
            leg = self.transports.new_leg(SubscriberLeg, participant, "server")
            participant.subscriber_leg = leg
            if permissions.can_subscribe and auto_subscribe:
                for track in room.tracks():
                    self.subscriptions.add(participant, track)
        self.observer.participant_joined(room, participant)
        return participant

    def set_permissions(self, participant: Participant, permissions: Permissions) -> None:
        """New grants for a participant in the room, without a rejoin (a viewer going on
        stage and back): tracks it may no longer publish are unpublished at once; losing
        subscribe drops what it receives, regaining it subscribes it to the room again."""
        room = self.membership.get(participant.room)
        before = participant.permissions
        participant.permissions = permissions
        for track in list(participant.published.values()):
            if not permissions.may_publish(track.source or default_source(track.kind)):
                self.publishing.unpublish(room, participant, track)
        if before.can_subscribe and not permissions.can_subscribe:
            for down in list(participant.subscriptions.values()):
                self.subscriptions.drop(participant, down)
        elif permissions.can_subscribe and not before.can_subscribe and participant.auto_subscribe:
            for track in room.tracks():
                if track.publisher_sid != participant.sid:
                    self.subscriptions.add(participant, track)
        self.observer.permissions_changed(room, participant)

    async def leave(self, participant: Participant, reason: str = "left") -> None:
        room = self.membership.remove(participant)
        if room is None:
            return
        for track in list(participant.published.values()):
            self.publishing.unpublish(room, participant, track)
        for down in list(participant.subscriptions.values()):
            down.detach()
        participant.subscriptions.clear()
        for leg in participant.legs():
            if leg.participant is participant:  # a remote publisher's bridge is shared
                await self.transports.close(leg)
        logger.info("participant %s left room %s (%s)", participant.sid, room.name, reason)
        self.observer.participant_left(room, participant, reason)
        await self._close_idle_bridges(room)

    async def _close_idle_bridges(self, room: Room) -> None:
        """Bridges of a room nobody here takes part in any more: those toward other workers
        when the room is gone here, at once; those from other workers when only their
        stand-in publishers are left, after ``bridge_grace`` (a viewer coming back soon
        finds the stream here), by making the stand-ins leave (they share the bridge)."""
        kinds = {p.kind for p in room.participants.values()}
        if not kinds <= {ParticipantKind.REMOTE}:
            return
        if room.participants and self.config.bridge_grace > 0:
            loop = asyncio.get_running_loop()
            loop.call_later(
                self.config.bridge_grace,
                lambda: self.transports.spawn(self._close_if_still_idle(room)),
            )
            return
        await self._close_bridges(room)

    async def _close_if_still_idle(self, room: Room) -> None:
        if self.rooms.get(room.name) is not room:
            return  # closed meanwhile (its bridges with it)
        if {p.kind for p in room.participants.values()} <= {ParticipantKind.REMOTE}:
            await self._close_bridges(room)

    async def _close_bridges(self, room: Room) -> None:
        for remote in list(room.participants.values()):
            await self.leave(remote, "bridge_closed")
        for leg in self.bridging.legs_of(room.name):
            await self.transports.close(leg)

    # transport events ------------------------------------------------------------------

    def _leg_connected(self, leg: Leg) -> None:
        if isinstance(leg, SubscriberLeg):
            self.transports.open_data(leg, self.data_received)
            self.subscriptions.connected(leg)
        elif isinstance(leg, PublisherLeg):
            # Subscribers that activated before the publisher connected still wait for a
            # keyframe; a publisher with nobody waiting sends its first keyframe anyway.
            for track in leg.tracks.values():
                if any(d.active and d.waiting_keyframe for d in track.all_downs()):
                    self.repair.request_keyframe(track)
        elif isinstance(leg, DownLeg):  # a WHEP viewer, a bridge toward another worker
            self.subscriptions.activate(leg)

    def leg_failed(self, leg: Leg) -> None:
        if leg.closed:
            return
        reason = "transport_closed" if leg.tx_srtp is not None else "transport_failed"
        if leg.participant.kind is ParticipantKind.BRIDGE:
            self.transports.spawn(self._bridge_failed(leg, reason))
        else:
            self.transports.spawn(self.leave(leg.participant, reason))

    async def bridge_drop(self, room_name: str, origin: str, track_sid: str) -> None:
        """A bridged track was unpublished at its origin: unpublish its stand-in's copy; a
        stand-in left with nothing leaves, and a bridge left with no stand-in closes."""
        leg = self.bridging.incoming.get((room_name, origin))
        room = self.rooms.get(room_name)
        if leg is None or room is None:
            return
        for remote in [p for p in room.participants.values() if p.publisher_leg is leg]:
            track = remote.published.get(track_sid)
            if track is not None:
                self.publishing.unpublish(room, remote, track)
            if not remote.published:
                await self.leave(remote, "unpublished")
        if self.rooms.get(room_name) is room and not any(
            p.publisher_leg is leg for p in room.participants.values()
        ):
            await self.bridge_close(room_name, origin, "bridge_idle")

    async def bridge_close(self, room_name: str, peer: str, reason: str) -> None:
        """Close the room's bridges with ``peer`` (it died, or carries nothing): the one from
        it (its stand-ins leave) and the one toward it (nothing is sent to it any more)."""
        leg = self.bridging.incoming.pop((room_name, peer), None)
        if leg is not None:
            await self._bridge_failed(leg, reason)
        out = self.bridging.close_out(room_name, peer)
        if out is not None and not out.closed:
            await self.transports.close(out)

    async def _bridge_failed(self, leg: Leg, reason: str) -> None:
        """A bridge went down: close it; the stand-in publishers it fed leave with it."""
        await self.transports.close(leg)
        room = self.rooms.get(leg.participant.room)
        fed = [p for p in room.participants.values() if p.publisher_leg is leg] if room else []
        for remote in fed:
            await self.leave(remote, reason)

    def data_received(self, participant: Participant, lossy: bool, message: bytes | str) -> None:
        outcome = relay_data_message(
            self.rooms.get(participant.room),
            participant,
            lossy,
            message,
            self.config.data_max_bytes,
            time.monotonic(),
            self.stats,
        )
        if isinstance(outcome, Relayed):
            self.observer.data_relayed(participant, lossy, outcome)
        elif outcome is not None:
            self.observer.data_rejected(participant, *outcome)
