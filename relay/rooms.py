"""The worker's rooms and who is in them: creation, admission within the room's and the
node's capacity, and removal. Plain state, no I/O."""

from __future__ import annotations

from .errors import NodeFullError, NotFoundError
from .publisher_leg import PublisherLeg
from .room import Participant, ParticipantKind, Room, RoomConfig
from .track import UpTrack


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


class Rooms:
    def __init__(
        self, max_per_room: int, max_participants: int, max_viewers: int = 0, audio_top_n: int = 0
    ) -> None:
        self.by_name: dict[str, Room] = {}
        self.max_per_room = max_per_room
        self.max_viewers = max_viewers  # WHEP viewers per room; 0: no limit
        self.max_participants = max_participants  # on this worker; 0: no limit
        self.audio_top_n = audio_top_n  # a room's default

    def create(
        self,
        name: str,
        max_participants: int | None = None,
        by_api: bool = False,
        max_viewers: int | None = None,
        audio_top_n: int | None = None,
    ) -> Room:
        room = self.by_name.get(name)
        if room is None:
            room = Room(
                name=name,
                max_participants=_or(max_participants, self.max_per_room),
                max_viewers=_or(max_viewers, self.max_viewers),
                created_by_api=by_api,
                audio_top_n=_or(audio_top_n, self.audio_top_n),
            )
            self.by_name[name] = room
        return room

    def get(self, name: str) -> Room:
        room = self.by_name.get(name)
        if room is None:
            raise NotFoundError(f"room {name} does not exist")
        return room

    @property
    def participant_count(self) -> int:
        """Sessions connected here: a remote publisher's stand-in is not one (its node
        counts it), so it neither fills this node nor skews placement's load."""
        return sum(
            1
            for r in self.by_name.values()
            for p in r.participants.values()
            if p.kind is not ParticipantKind.REMOTE
        )

    @property
    def track_count(self) -> int:
        return sum(len(r.tracks()) for r in self.by_name.values())

    def admit(self, participant: Participant, config: RoomConfig | None = None) -> Room:
        local = participant.kind is not ParticipantKind.REMOTE
        if local and self.max_participants and self.participant_count >= self.max_participants:
            raise NodeFullError("this node has reached its participant capacity")
        room = self.by_name.get(participant.room)
        if room is None:
            config = config or RoomConfig()
            room = self.create(
                participant.room,
                config.max_participants,
                max_viewers=config.max_viewers,
                audio_top_n=config.audio_top_n,
            )
            room.public_viewing = config.public_viewing
        try:
            room.admit(participant)
        except Exception:
            if not room.participants and not room.created_by_api:
                self.by_name.pop(room.name, None)
            raise
        return room

    def remove(self, participant: Participant) -> Room | None:
        """Take a participant out; its room goes with the last one. None if not here."""
        room = self.by_name.get(participant.room)
        if room is None or room.participants.get(participant.sid) is not participant:
            return None
        del room.participants[participant.sid]
        if not room.participants:
            self.by_name.pop(room.name, None)
        return room

    def publisher_leg(self, up: UpTrack) -> PublisherLeg | None:
        """The leg a track's media comes up on (where its keyframe requests go)."""
        room = self.by_name.get(up.room)
        publisher = room.participants.get(up.publisher_sid) if room else None
        return publisher.publisher_leg if publisher else None
