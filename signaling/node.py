"""The node: one relay worker behind its command surface, plus the WebSocket sessions of its
participants.

It receives the relay's events (``relay.control.RelayEvents``, plain data) and turns them
into protocol messages for the sessions concerned. It is the composition root, so it may
import relay (and regions).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Literal

from relay.background import TaskSet
from relay.control import (
    ParticipantInfo,
    ParticipantKind,
    Permissions,
    RelayControl,
    Relayed,
    SpeakerInfo,
    TrackInfo,
    WorkerConfig,
)
from relay.rate_limiter import PerKeyWindow

from . import protocol as p
from .cascade import Cascade
from .cluster import Cluster
from .settings import Settings

if TYPE_CHECKING:
    from .rtc_session import RtcSession

logger = logging.getLogger(__name__)


def describe_track(track: TrackInfo) -> p.TrackDescription:
    kind: Literal["audio", "video"] = "audio" if track.kind == "audio" else "video"
    return p.TrackDescription(
        sid=track.sid,
        kind=kind,
        name=track.name,
        mime=track.mime,
        muted=track.muted,
        layers=list(track.layers),
        source=track.source,
    )


def describe_grants(permissions: Permissions) -> p.PermissionGrants:
    sources = sorted(permissions.sources) if permissions.sources is not None else None
    return p.PermissionGrants(
        can_publish=permissions.can_publish,
        can_subscribe=permissions.can_subscribe,
        can_publish_data=permissions.can_publish_data,
        sources=sources,  # type: ignore[arg-type]
    )


def describe_participant(participant: ParticipantInfo) -> p.ParticipantDescription:
    return p.ParticipantDescription(
        sid=participant.sid,
        identity=participant.identity,
        name=participant.name,
        tracks=[describe_track(t) for t in participant.tracks],
    )


def worker_config(settings: Settings) -> WorkerConfig:
    return WorkerConfig(
        bind=settings.rtc.bind,
        port=settings.rtc.udp_port,
        announce=list(settings.rtc.announce),
        consent_timeout=settings.rtc.consent_timeout,
        max_participants_per_room=settings.rooms.max_participants,
        max_viewers_per_room=settings.rooms.max_viewers,
        audio_top_n=settings.rooms.audio_top_n,
        max_participants=settings.capacity.max_participants,
        data_max_bytes=settings.rooms.data_max_bytes,
        data_rate=settings.rooms.data_rate,
        data_burst=settings.rooms.data_burst,
        keyframe_interval=settings.rtc.keyframe_interval,
        keyframe_replay_age=settings.rtc.keyframe_replay_age,
        udp_buffer_bytes=settings.rtc.udp_buffer_bytes,
        stun_per_ip=settings.rtc.stun_per_ip,
        moves_per_ip=settings.rtc.moves_per_ip,
        nack_repair=settings.rtc.nack_repair,
        audio_red=settings.rtc.audio_red,
        bridge_grace=settings.cluster.bridge_grace,
    )


class Node:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.relay = RelayControl(worker_config(settings), self)
        self.cluster = Cluster(settings, self.relay)
        self.cascade = Cascade(self.cluster, self.relay, self.broadcast)
        self.cluster.on_registered.append(self.cascade.reassert)
        self.sessions: dict[str, RtcSession] = {}  # by participant sid
        self.speakers: dict[str, p.ActiveSpeakers] = {}  # by room: the last sent, for joiners
        self._by_room: dict[str, dict[str, RtcSession]] = {}  # room -> sid -> session
        self.draining = False
        self.slow_consumers = 0  # sessions cut off for not reading their events
        self.trusted_proxies = [
            ipaddress.ip_network(n, strict=False) for n in settings.http.trusted_proxies
        ]
        self.join_limit = PerKeyWindow(settings.signaling.joins_per_ip)
        self.joins_rate_limited = 0
        self.resumed = 0  # sessions taken over by a new WebSocket after theirs dropped
        self.resumes_refused = 0  # resume asked for a session not here (ended, elsewhere)
        self._tasks = TaskSet()

    def counters(self) -> dict[str, int]:
        """The control plane's counters, for /metrics."""
        return {
            "slow_consumers": self.slow_consumers,
            "joins_rate_limited": self.joins_rate_limited,
            "sessions_resumed": self.resumed,
            "resumes_refused": self.resumes_refused,
            "bridges_refused": self.cascade.bridges_refused,
            "bridge_failures": self.cascade.bridge_failures,
            "registry_timeouts": self.cluster.registry_timeouts,
            "data_dropped": self.cascade.data_dropped,
            "events_dropped": self.cascade.events_dropped,
        }

    async def start(self) -> None:
        await self.relay.start()

    async def announce(self, public_url: str) -> None:
        """Register in the cluster once the HTTP listener's address is known."""
        await self.cascade.start()
        await self.cluster.start(public_url)

    async def drain(self, grace: float) -> None:
        """Stop taking sessions; let the current ones finish, for at most ``grace`` seconds."""
        self.draining = True
        await self.cluster.drain()
        deadline = asyncio.get_running_loop().time() + grace
        while self.relay.participant_count and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        for session in list(self.sessions.values()):
            session.close("server_shutdown")
        await self.relay.stop()
        # room releases the stop itself caused go out before deregistering
        await self._tasks.wait(timeout=2.0)
        await self.cascade.stop()
        await self.cluster.stop()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` in the background; ``stop`` waits for it (briefly)."""
        self._tasks.spawn(coro)

    # WebSocket sessions by participant ---------------------------------------------------

    def add_session(self, room: str, sid: str, session: RtcSession) -> None:
        self.sessions[sid] = session
        self._by_room.setdefault(room, {})[sid] = session

    def drop_session(self, room: str, sid: str) -> RtcSession | None:
        in_room = self._by_room.get(room)
        if in_room is not None:
            in_room.pop(sid, None)
            if not in_room:
                del self._by_room[room]
        return self.sessions.pop(sid, None)

    def broadcast(self, room: str, message: p._Message, exclude: str = "") -> None:
        # serialized once: a join in a room of N is N messages, so N joins are N squared
        text = message.model_dump_json()
        for sid, session in list(self._by_room.get(room, {}).items()):
            if sid != exclude:
                session.send(text)

    # RelayEvents -------------------------------------------------------------------------

    # A remote publisher's stand-in is media plumbing: clients hear of participants on other
    # nodes from the room directory (``Cascade``), so the relay's events about stand-ins
    # are not passed on. WHEP viewers go into the directory but are not announced.

    def participant_joined(self, room: str, participant: ParticipantInfo) -> None:
        if participant.kind is ParticipantKind.REMOTE:
            return
        if participant.kind.announced:
            message = p.ParticipantJoined(participant=describe_participant(participant))
            self.broadcast(room, message, participant.sid)
        self.cascade.local_changed(room, participant)

    def participant_left(
        self, room: str, participant: ParticipantInfo, reason: str, room_closed: bool
    ) -> None:
        if room_closed:
            self.spawn(self._room_closed(room))
        if participant.kind is ParticipantKind.REMOTE:
            return
        own = self.drop_session(room, participant.sid)
        if participant.kind.announced:
            message = p.ParticipantLeft(
                sid=participant.sid, identity=participant.identity, reason=reason
            )
            self.broadcast(room, message, participant.sid)
        if own is not None:
            own.close(reason)
        self.cascade.local_left(room, participant, reason)

    async def _room_closed(self, room: str) -> None:
        self.speakers.pop(room, None)
        self.cascade.room_closed(room)
        await self.cluster.room_closed(room)

    def _tracks_changed(self, room: str, participant_sid: str) -> None:
        participant = self.relay.participant(room, participant_sid)
        if participant is not None:
            self.cascade.local_changed(room, participant)

    def track_published(self, room: str, participant_sid: str, track: TrackInfo) -> None:
        message = p.TrackPublished(participant_sid=participant_sid, track=describe_track(track))
        self.broadcast(room, message, participant_sid)
        self._tracks_changed(room, participant_sid)

    def track_unpublished(self, room: str, participant_sid: str, track_sid: str) -> None:
        message = p.TrackUnpublished(participant_sid=participant_sid, track_sid=track_sid)
        self.broadcast(room, message, participant_sid)
        self._tracks_changed(room, participant_sid)

    def track_muted(self, room: str, participant_sid: str, track: TrackInfo) -> None:
        message = p.TrackMuted(
            participant_sid=participant_sid, track_sid=track.sid, muted=track.muted
        )
        self.broadcast(room, message, participant_sid)
        self._tracks_changed(room, participant_sid)

    def permissions_changed(self, room: str, participant: ParticipantInfo) -> None:
        session = self.sessions.get(participant.sid)
        if session is not None:
            session.send(p.PermissionsChanged(permissions=describe_grants(participant.permissions)))
        self.cascade.local_changed(room, participant)  # what it publishes may have changed

    def active_speakers(self, room: str, speakers: tuple[SpeakerInfo, ...]) -> None:
        message = p.ActiveSpeakers(
            speakers=[p.Speaker(sid=s.sid, identity=s.identity, level=s.level) for s in speakers]
        )
        if speakers:
            self.speakers[room] = message
        else:
            self.speakers.pop(room, None)
        self.broadcast(room, message)

    def data_relayed(self, room: str, participant_sid: str, lossy: bool, relayed: Relayed) -> None:
        self.cascade.forward_data(room, participant_sid, lossy, relayed)

    def data_rejected(self, participant_sid: str, code: str, message: str) -> None:
        session = self.sessions.get(participant_sid)
        if session is not None:
            session.send(p.Error(code=code, message=message))
