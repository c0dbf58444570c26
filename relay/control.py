"""The relay as the control plane sees it: commands in, plain events out.

Signaling names rooms, participants and tracks by id and gets DTOs back; it never holds
or assigns a relay object. ``RelayControl`` is the in-process implementation over one
``RelayWorker``; the surface is narrow so that a worker in another process can sit behind
the same methods later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from .active_speakers import Speakers
from .bridging import BridgedTrack, BridgeEndpoint, BridgeReport
from .data_message import Relayed, deliver_data
from .errors import NotFoundError
from .negotiation import NegotiationController
from .publishing import PublishedTrackInfo
from .room import (
    SOURCES,
    Participant,
    ParticipantKind,
    Permissions,
    Room,
    RoomConfig,
    default_source,
)
from .stats import RelayStats
from .track import UpTrack
from .worker import RelayWorker, WorkerConfig

__all__ = [
    "SOURCES",
    "BridgeEndpoint",
    "BridgeReport",
    "BridgedTrack",
    "NegotiationController",
    "ParticipantInfo",
    "ParticipantKind",
    "Permissions",
    "PublishedTrackInfo",
    "RelayControl",
    "RelayEvents",
    "Relayed",
    "RoomConfig",
    "RoomInfo",
    "RttSample",
    "SpeakerInfo",
    "TrackInfo",
    "WorkerConfig",
]


@dataclass(frozen=True, slots=True)
class TrackInfo:
    sid: str
    kind: str
    name: str
    mime: str
    muted: bool
    layers: tuple[str, ...]  # simulcast rids, lowest first
    source: str = ""  # camera, microphone, screen, screen_audio


@dataclass(frozen=True, slots=True)
class Receiving:
    """How the media a participant receives here fared: repair summed over its copies."""

    packets_sent: int = 0
    nacks_received: int = 0  # NACK packets it sent
    resends: int = 0  # packets resent for its NACKs
    resends_again: int = 0  # copies of those sent a round trip later without a new NACK
    keyframe_requests: int = 0  # PLI/FIR it sent


@dataclass(frozen=True, slots=True)
class ParticipantInfo:
    sid: str
    identity: str
    name: str
    room: str
    kind: ParticipantKind
    tracks: tuple[TrackInfo, ...]
    joined_at: float = 0.0  # unix seconds
    subscribes: bool = False  # takes the room's media here (a subscriber or a viewer)
    permissions: Permissions = field(default_factory=Permissions)
    receiving: Receiving = field(default_factory=Receiving)


@dataclass(frozen=True, slots=True)
class RoomInfo:
    name: str
    sid: str
    num_participants: int
    num_tracks: int
    max_participants: int
    max_viewers: int
    num_viewers: int
    public_viewing: bool
    audio_top_n: int = 0


@dataclass(frozen=True, slots=True)
class SpeakerInfo:
    """A participant speaking now (a stand-in's sid is its publisher's on its own node)."""

    sid: str
    identity: str
    level: float  # smoothed linear amplitude, 0-1 (10^(-dBov/20))


@dataclass(frozen=True, slots=True)
class RttSample:
    """A round trip measured on a live down leg (RTCP), with the client's address."""

    client_ip: str
    rtt_ms: float


class RelayEvents(Protocol):
    """What the relay tells the control plane."""

    def participant_joined(self, room: str, participant: ParticipantInfo) -> None: ...
    def participant_left(
        self, room: str, participant: ParticipantInfo, reason: str, room_closed: bool
    ) -> None: ...
    def track_published(self, room: str, participant_sid: str, track: TrackInfo) -> None: ...
    def track_unpublished(self, room: str, participant_sid: str, track_sid: str) -> None: ...
    def track_muted(self, room: str, participant_sid: str, track: TrackInfo) -> None: ...
    def permissions_changed(self, room: str, participant: ParticipantInfo) -> None: ...
    def active_speakers(self, room: str, speakers: tuple[SpeakerInfo, ...]) -> None: ...
    def data_rejected(self, participant_sid: str, code: str, message: str) -> None: ...
    def data_relayed(
        self, room: str, participant_sid: str, lossy: bool, relayed: Relayed
    ) -> None: ...


def track_info(track: UpTrack) -> TrackInfo:
    return TrackInfo(
        sid=track.sid,
        kind=track.kind,
        name=track.name,
        mime=track.codec.mime,
        muted=track.muted,
        layers=tuple(layer.rid for layer in track.layers),
        source=track.source or default_source(track.kind),
    )


def participant_info(participant: Participant) -> ParticipantInfo:
    return ParticipantInfo(
        sid=participant.sid,
        identity=participant.identity,
        name=participant.name,
        room=participant.room,
        kind=participant.kind,
        tracks=tuple(track_info(t) for t in participant.published.values()),
        joined_at=participant.joined_at,
        subscribes=subscribes(participant),
        permissions=participant.permissions,
        receiving=receiving(participant),
    )


def receiving(participant: Participant) -> Receiving:
    downs = [
        down
        for leg in (participant.subscriber_leg, participant.viewer_leg)
        if leg is not None
        for down in leg.by_ssrc.values()
    ]
    return Receiving(
        packets_sent=sum(d.packets_sent for d in downs),
        nacks_received=sum(d.nacks_received for d in downs),
        resends=sum(d.resends for d in downs),
        resends_again=sum(d.resends_again for d in downs),
        keyframe_requests=sum(d.keyframe_requests for d in downs),
    )


def subscribes(participant: Participant) -> bool:
    """Takes the room's media on this worker: a subscriber, or a WHEP viewer."""
    kind = participant.kind
    return kind is ParticipantKind.VIEWER or (
        kind is ParticipantKind.SIGNALLED and participant.permissions.can_subscribe
    )


def room_info(room: Room) -> RoomInfo:
    return RoomInfo(
        name=room.name,
        sid=room.sid,
        num_participants=len(room.participants),
        num_tracks=len(room.tracks()),
        max_participants=room.max_participants,
        max_viewers=room.max_viewers,
        num_viewers=sum(1 for p in room.participants.values() if p.kind is ParticipantKind.VIEWER),
        public_viewing=room.public_viewing,
        audio_top_n=room.audio_top_n,
    )


class _Translator:
    """The worker's observer: its objects become DTOs for the control plane."""

    def __init__(self, events: RelayEvents) -> None:
        self.events = events
        self.worker: RelayWorker | None = None

    def participant_joined(self, room: Room, participant: Participant) -> None:
        self.events.participant_joined(room.name, participant_info(participant))

    def participant_left(self, room: Room, participant: Participant, reason: str) -> None:
        closed = self.worker is not None and room.name not in self.worker.rooms
        self.events.participant_left(room.name, participant_info(participant), reason, closed)

    # A stand-in's tracks are announced by the node they come from (the room directory).

    def track_published(self, room: Room, participant: Participant, track: UpTrack) -> None:
        if participant.kind is not ParticipantKind.REMOTE:
            self.events.track_published(room.name, participant.sid, track_info(track))

    def track_unpublished(self, room: Room, participant: Participant, track: UpTrack) -> None:
        if participant.kind is not ParticipantKind.REMOTE:
            self.events.track_unpublished(room.name, participant.sid, track.sid)

    def track_muted(self, room: Room, participant: Participant, track: UpTrack) -> None:
        if participant.kind is not ParticipantKind.REMOTE:
            self.events.track_muted(room.name, participant.sid, track_info(track))

    def permissions_changed(self, room: Room, participant: Participant) -> None:
        self.events.permissions_changed(room.name, participant_info(participant))

    def active_speakers(self, room: Room, speakers: Speakers) -> None:
        self.events.active_speakers(
            room.name,
            tuple(SpeakerInfo(p.sid, p.identity, round(level, 4)) for p, level in speakers),
        )

    def data_rejected(self, participant: Participant, code: str, message: str) -> None:
        self.events.data_rejected(participant.sid, code, message)

    def data_relayed(self, participant: Participant, lossy: bool, relayed: Relayed) -> None:
        self.events.data_relayed(participant.room, participant.sid, lossy, relayed)


class RelayControl:
    """Commands on one in-process worker. Errors are ``relay.errors.RelayError``s."""

    def __init__(self, config: WorkerConfig, events: RelayEvents) -> None:
        translator = _Translator(events)
        # In process, tests and benchmarks may look inside; the control plane never does.
        self.worker = RelayWorker(config, translator)
        translator.worker = self.worker

    # lifecycle and load ----------------------------------------------------------------

    async def start(self) -> None:
        await self.worker.start()

    async def stop(self) -> None:
        await self.worker.stop()

    @property
    def port(self) -> int:
        return self.worker.port

    @property
    def stats(self) -> RelayStats:
        """The worker's counters (read them; the relay owns them)."""
        return self.worker.stats

    @property
    def participant_count(self) -> int:
        return self.worker.membership.participant_count

    @property
    def track_count(self) -> int:
        return self.worker.membership.track_count

    def track_kinds(self) -> dict[str, int]:
        counts = {"audio": 0, "video": 0}
        for room in self.worker.rooms.values():
            for track in room.tracks():
                counts[track.kind] = counts.get(track.kind, 0) + 1
        return counts

    def rtt_samples(self) -> list[RttSample]:
        """Round trips of the down legs that have measured one."""
        samples = []
        for room in list(self.worker.rooms.values()):
            for participant in list(room.participants.values()):
                for leg in (participant.subscriber_leg, participant.viewer_leg):
                    if leg is not None and leg.addr is not None and leg.rtt_ms is not None:
                        samples.append(RttSample(leg.addr[0], leg.rtt_ms))
        return samples

    # rooms -----------------------------------------------------------------------------

    def rooms(self) -> list[RoomInfo]:
        return [room_info(r) for r in self.worker.rooms.values()]

    def room(self, name: str) -> RoomInfo | None:
        room = self.worker.rooms.get(name)
        return room_info(room) if room is not None else None

    def subscribers_here(self, name: str) -> bool:
        """Whether someone on this worker takes room ``name``'s media: only then is it worth
        bridging the room's tracks from other workers."""
        room = self.worker.rooms.get(name)
        return room is not None and any(subscribes(p) for p in room.participants.values())

    def hosts(self, name: str) -> bool:
        """Whether a session of room ``name`` is on this worker (a stand-in is not one)."""
        room = self.worker.rooms.get(name)
        return room is not None and any(
            p.kind is not ParticipantKind.REMOTE for p in room.participants.values()
        )

    def create_room(
        self,
        name: str,
        max_participants: int | None = None,
        public_viewing: bool = False,
        max_viewers: int | None = None,
        audio_top_n: int | None = None,
    ) -> RoomInfo:
        room = self.worker.membership.create(name, max_participants, True, max_viewers)
        room.public_viewing = public_viewing
        if audio_top_n is not None:  # set on a room that exists here already, too
            room.audio_top_n = audio_top_n
        return room_info(room)

    def set_permissions(
        self, room: str, identity: str, permissions: Permissions
    ) -> ParticipantInfo:
        """Change a participant's grants in place (WHEP viewers only watch: not theirs)."""
        participant = self.worker.membership.get(room).by_identity(identity)
        if participant is None or participant.kind is ParticipantKind.REMOTE:
            raise NotFoundError(f"{identity} is not connected to room {room} here")
        self.worker.set_permissions(participant, permissions)
        return participant_info(participant)

    async def delete_room(self, name: str) -> None:
        await self.worker.delete_room(name)

    def participants(self, room: str) -> list[ParticipantInfo]:
        return [participant_info(p) for p in self.worker.membership.get(room).participants.values()]

    def participant(self, room: str, sid: str) -> ParticipantInfo | None:
        participant = self._find(room, sid)
        return participant_info(participant) if participant is not None else None

    # participants ----------------------------------------------------------------------

    async def join(
        self,
        room: str,
        identity: str,
        permissions: Permissions,
        kind: ParticipantKind = ParticipantKind.SIGNALLED,
        controller: NegotiationController | None = None,
        auto_subscribe: bool = True,
        name: str = "",
        room_config: RoomConfig | None = None,
    ) -> ParticipantInfo:
        participant = await self.worker.join(
            room,
            identity,
            permissions,
            kind=kind,
            controller=controller,
            auto_subscribe=auto_subscribe,
            name=name,
            room_config=room_config,
        )
        return participant_info(participant)

    async def leave(self, room: str, sid: str, reason: str) -> None:
        """Remove a participant; nothing happens when it has already gone."""
        participant = self._find(room, sid)
        if participant is not None:
            await self.worker.leave(participant, reason)

    async def remove(self, room: str, identity: str, reason: str) -> None:
        participant = self.worker.membership.get(room).by_identity(identity)
        if participant is None:
            raise NotFoundError(f"{identity} is not in room {room}")
        await self.worker.leave(participant, reason)

    def _get(self, room: str, sid: str) -> Participant:
        return self.worker.membership.get(room).get(sid)

    def _find(self, room: str, sid: str) -> Participant | None:
        found = self.worker.rooms.get(room)
        return found.participants.get(sid) if found is not None else None

    async def publish(
        self,
        room: str,
        sid: str,
        offer_sdp: str,
        info: dict[str, PublishedTrackInfo] | None = None,
    ) -> tuple[str, dict[str, str]]:
        """Answer a publisher offer: the SDP answer and the track sid of each m-line."""
        participant = self._get(room, sid)
        answer = await self.worker.publishing.publish(participant, offer_sdp, info)
        return answer, {t.mid: t.sid for t in participant.published.values()}

    async def view(self, room: str, sid: str, offer_sdp: str, follow: str = "") -> str:
        return await self.worker.viewing.view(self._get(room, sid), offer_sdp, follow)

    def subscriber_offer(self, room: str, sid: str) -> tuple[str, dict[str, str]] | None:
        participant = self._find(room, sid)
        return self.worker.subscriptions.offer(participant) if participant is not None else None

    def subscriber_offer_lost(self, room: str, sid: str) -> None:
        """The participant's signaling channel was replaced: an offer sent on the old one
        may be lost, so ``subscriber_offer`` makes a new one."""
        participant = self._find(room, sid)
        leg = participant.subscriber_leg if participant is not None else None
        if leg is not None:
            leg.negotiation.offer_lost()

    async def subscriber_answer(self, room: str, sid: str, answer_sdp: str) -> None:
        await self.worker.subscriptions.answer(self._get(room, sid), answer_sdp)

    def subscribe(self, room: str, sid: str, track_sid: str) -> None:
        self.worker.subscriptions.subscribe(self._get(room, sid), track_sid)

    def unsubscribe(self, room: str, sid: str, track_sid: str) -> None:
        self.worker.subscriptions.unsubscribe(self._get(room, sid), track_sid)

    def set_quality(self, room: str, sid: str, track_sid: str, quality: str) -> None:
        self.worker.subscriptions.set_quality(self._get(room, sid), track_sid, quality)

    def set_muted(self, room: str, sid: str, track_sid: str, muted: bool) -> None:
        self.worker.publishing.set_muted(self._get(room, sid), track_sid, muted)

    # bridges to other workers -----------------------------------------------------------

    def fingerprints(self) -> tuple[tuple[str, str], ...]:
        """This worker's DTLS certificate, as a peer's bridge must expect it."""
        return (self.worker.transports.fingerprint,)

    def bridge_reports(self) -> list[BridgeReport]:
        """Each open bridge: peer, streams, packets and octets carried, hop RTT and loss."""
        return self.worker.bridging.reports()

    def bridge_load(self) -> dict[str, tuple[int, int]]:
        """Open bridges and the streams they carry, by direction ("out", "in")."""
        return self.worker.bridging.load()

    def bridge_out(
        self, room: str, peer: str, peer_fingerprints: tuple[tuple[str, str], ...]
    ) -> BridgeEndpoint:
        """Origin side: the bridge toward worker ``peer`` for ``room``, and how to reach it."""
        return self.worker.bridging.open_out(room, peer, peer_fingerprints)

    def bridge_send(
        self, room: str, peer: str, track_sid: str, rids: tuple[str, ...] = ()
    ) -> BridgedTrack:
        """Origin side: carry a track (the simulcast layers in ``rids``, all when empty)."""
        return self.worker.bridging.send(room, peer, track_sid, rids)

    def bridge_in(self, room: str, origin: str, endpoint: BridgeEndpoint) -> None:
        """Viewing side: connect to the origin's bridge for ``room``."""
        self.worker.bridging.open_in(room, origin, endpoint)

    def bridge_receive(self, room: str, origin: str, track: BridgedTrack) -> None:
        """Viewing side: publish a bridged track here under a stand-in of its publisher."""
        self.worker.bridging.receive(room, origin, track)

    def bridged(self, room: str, origin: str) -> set[str]:
        """Viewing side: the sids of the tracks the bridge from ``origin`` carries."""
        return self.worker.bridging.carried(room, origin)

    async def bridge_drop(self, room: str, origin: str, track_sid: str) -> None:
        """Viewing side: a bridged track is gone at its origin."""
        await self.worker.bridge_drop(room, origin, track_sid)

    async def bridge_close(self, room: str, peer: str, reason: str) -> None:
        """Close the room's bridges with ``peer``, both ways: its stand-ins here leave, and
        nothing more is sent toward it."""
        await self.worker.bridge_close(room, peer, reason)

    def deliver_data(self, room: str, sender_sid: str, lossy: bool, relayed: Relayed) -> None:
        """A data message a participant on another node sent, checked there."""
        hosted = self.worker.rooms.get(room)
        if hosted is not None:
            deliver_data(hosted, sender_sid, lossy, relayed, self.worker.stats)
