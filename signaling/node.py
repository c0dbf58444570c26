"""The node: one relay worker plus the WebSocket sessions of its participants.

It is the ``RoomObserver`` of the worker and turns room events into protocol messages for
the sessions concerned. It is the composition root, so it may import relay (and regions).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Literal

from relay.room import Participant, Room
from relay.track import UpTrack
from relay.worker import RelayWorker, WorkerConfig

from . import protocol as p
from .cluster import Cluster
from .settings import Settings

if TYPE_CHECKING:
    from .rtc_session import RtcSession

logger = logging.getLogger(__name__)


def describe_track(track: UpTrack) -> p.TrackDescription:
    kind: Literal["audio", "video"] = "audio" if track.kind == "audio" else "video"
    return p.TrackDescription(
        sid=track.sid,
        kind=kind,
        name=track.name,
        mime=track.codec.mime,
        muted=track.muted,
        layers=[layer.rid for layer in track.layers],
    )


def describe_participant(participant: Participant) -> p.ParticipantDescription:
    return p.ParticipantDescription(
        sid=participant.sid,
        identity=participant.identity,
        name=participant.name,
        tracks=[describe_track(t) for t in participant.published.values()],
    )


def worker_config(settings: Settings) -> WorkerConfig:
    return WorkerConfig(
        bind=settings.rtc.bind,
        port=settings.rtc.udp_port,
        announce=list(settings.rtc.announce),
        consent_timeout=settings.rtc.consent_timeout,
        max_participants_per_room=settings.rooms.max_participants,
        max_participants=settings.capacity.max_participants,
        data_max_bytes=settings.rooms.data_max_bytes,
        data_rate=settings.rooms.data_rate,
        data_burst=settings.rooms.data_burst,
        keyframe_interval=settings.rtc.keyframe_interval,
        udp_buffer_bytes=settings.rtc.udp_buffer_bytes,
        nack_repair=settings.rtc.nack_repair,
    )


class Node:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.worker = RelayWorker(worker_config(settings), self)
        self.cluster = Cluster(settings, self.worker)
        self.sessions: dict[str, RtcSession] = {}  # by participant sid
        self.draining = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.worker.start()

    async def announce(self, public_url: str) -> None:
        """Register in the cluster once the HTTP listener's address is known."""
        await self.cluster.start(public_url)

    async def drain(self, grace: float) -> None:
        """Stop taking sessions; let the current ones finish, for at most ``grace`` seconds."""
        self.draining = True
        await self.cluster.drain()
        deadline = asyncio.get_running_loop().time() + grace
        while self.worker.participant_count and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        for session in list(self.sessions.values()):
            session.close("server_shutdown")
        await self.worker.stop()
        await self.cluster.stop()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _room_sessions(self, room: Room, exclude: Participant | None = None) -> list[RtcSession]:
        sessions = (self.sessions.get(sid) for sid in room.participants)
        return [s for s in sessions if s is not None and s.participant is not exclude]

    def _broadcast(self, room: Room, message: p._Message, exclude: Participant | None) -> None:
        # serialized once: a join in a room of N is N messages, so N joins are N squared
        text = message.model_dump_json()
        for session in self._room_sessions(room, exclude):
            session.send(text)

    # RoomObserver ------------------------------------------------------------------------

    def participant_joined(self, room: Room, participant: Participant) -> None:
        message = p.ParticipantJoined(participant=describe_participant(participant))
        self._broadcast(room, message, participant)

    def participant_left(self, room: Room, participant: Participant, reason: str) -> None:
        message = p.ParticipantLeft(
            sid=participant.sid, identity=participant.identity, reason=reason
        )
        self._broadcast(room, message, participant)  # it has already left room.participants
        own = self.sessions.pop(participant.sid, None)
        if own is not None:
            own.close(reason)
        if room.name not in self.worker.rooms:  # that was the last one
            self._spawn(self.cluster.room_closed(room.name))

    def track_published(self, room: Room, participant: Participant, track: UpTrack) -> None:
        message = p.TrackPublished(participant_sid=participant.sid, track=describe_track(track))
        self._broadcast(room, message, participant)

    def track_unpublished(self, room: Room, participant: Participant, track: UpTrack) -> None:
        message = p.TrackUnpublished(participant_sid=participant.sid, track_sid=track.sid)
        self._broadcast(room, message, participant)

    def track_muted(self, room: Room, participant: Participant, track: UpTrack) -> None:
        message = p.TrackMuted(
            participant_sid=participant.sid, track_sid=track.sid, muted=track.muted
        )
        self._broadcast(room, message, participant)

    def data_rejected(self, participant: Participant, code: str, message: str) -> None:
        session = self.sessions.get(participant.sid)
        if session is not None:
            session.send(p.Error(code=code, message=message))
