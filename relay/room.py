"""Rooms and participants: who is here, what they publish and what they receive. No I/O.

The worker calls into these objects; they never touch sockets, tasks or clocks.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import NotFoundError, RoomFullError
from .negotiation import NegotiationController
from .rate_limiter import TokenBucket
from .track import DownTrack, UpTrack

if TYPE_CHECKING:
    from .publisher_leg import PublisherLeg
    from .subscriber_leg import SubscriberLeg
    from .viewer_leg import ViewerLeg


def new_sid(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(6)}"


@dataclass(slots=True, frozen=True)
class RoomConfig:
    """A room's settings from the admin API, which every node applies when a session
    creates the room there (None: the node's defaults)."""

    max_participants: int | None = None
    max_viewers: int | None = None
    public_viewing: bool = False
    audio_top_n: int | None = None  # forward only the N loudest audio tracks; 0: all


SOURCES = ("camera", "microphone", "screen", "screen_audio")


def default_source(kind: str) -> str:
    """A track's source when its publisher does not say: what a kind usually comes from."""
    return "microphone" if kind == "audio" else "camera"


@dataclass(slots=True, frozen=True)
class Permissions:
    can_publish: bool = True
    can_subscribe: bool = True
    can_publish_data: bool = True
    sources: frozenset[str] | None = None  # what may be published (SOURCES); None: any

    def may_publish(self, source: str) -> bool:
        return self.can_publish and (self.sources is None or source in self.sources)


class ParticipantKind(enum.Enum):
    """How a participant reached the relay, which decides the legs it has."""

    SIGNALLED = "rtc"  # /v1/rtc: a subscriber leg (data channels) and, to publish, a publisher leg
    INGEST = "whip"  # WHIP: a publisher leg only
    VIEWER = "whep"  # WHEP: a viewer leg only, following the room's publisher
    REMOTE = "remote"  # a publisher on another worker: its tracks arrive over a bridge leg
    BRIDGE = "bridge"  # owns a bridge leg; never in a room's participants

    @property
    def announced(self) -> bool:
        """Whether the room's clients hear of such a participant. WHEP viewers are an
        audience (a livestream's thousands would flood every client with joins and leaves);
        stand-ins and bridges are plumbing."""
        return self is ParticipantKind.SIGNALLED or self is ParticipantKind.INGEST


@dataclass(slots=True, eq=False)
class Participant:
    room: str
    identity: str
    permissions: Permissions
    data_limiter: TokenBucket
    auto_subscribe: bool = True
    name: str = ""
    metadata: str = ""
    sid: str = field(default_factory=lambda: new_sid("PA"))
    published: dict[str, UpTrack] = field(default_factory=dict)  # by track sid
    subscriptions: dict[str, DownTrack] = field(default_factory=dict)  # by up track sid
    kind: ParticipantKind = ParticipantKind.SIGNALLED
    # Asked for a subscriber offer whenever one is needed (a WebSocket session, a bridge).
    controller: NegotiationController | None = None
    publisher_leg: PublisherLeg | None = None
    subscriber_leg: SubscriberLeg | None = None
    viewer_leg: ViewerLeg | None = None
    joined_at: float = 0.0

    def legs(self) -> list[PublisherLeg | SubscriberLeg | ViewerLeg]:
        legs: list[PublisherLeg | SubscriberLeg | ViewerLeg] = []
        for leg in (self.publisher_leg, self.subscriber_leg, self.viewer_leg):
            if leg is not None:
                legs.append(leg)
        return legs


@dataclass(slots=True, eq=False)
class Room:
    name: str
    max_participants: int  # sessions that take part (WHEP viewers not counted); 0: no limit
    max_viewers: int = 0  # WHEP viewers; 0: no limit (the node's capacity still holds)
    created_by_api: bool = False
    public_viewing: bool = False  # WHEP viewers need no token
    audio_top_n: int = 0  # each listener gets the N loudest audio tracks (audio_top_n.py); 0: all
    sid: str = field(default_factory=lambda: new_sid("RM"))
    participants: dict[str, Participant] = field(default_factory=dict)  # by sid
    speakers: tuple[str, ...] = ()  # sids of the active speakers last announced, loudest first
    speakers_sent_at: float = float("-inf")  # when (monotonic)

    def by_identity(self, identity: str) -> Participant | None:
        """The participant holding ``identity``. WHEP viewers hold none: many players of one
        public stream page may share a viewer token, and none of them replaces another."""
        for p in self.participants.values():
            if p.identity == identity and p.kind is not ParticipantKind.VIEWER:
                return p
        return None

    def get(self, sid: str) -> Participant:
        try:
            return self.participants[sid]
        except KeyError:
            raise NotFoundError(f"participant {sid} is not in room {self.name}") from None

    def admit(self, participant: Participant) -> None:
        viewer = participant.kind is ParticipantKind.VIEWER
        limit = self.max_viewers if viewer else self.max_participants
        if limit:
            kinds = (p.kind is ParticipantKind.VIEWER for p in self.participants.values())
            same = sum(1 for k in kinds if k == viewer)
            if same >= limit:
                what = "viewers" if viewer else "participants"
                raise RoomFullError(f"room {self.name} is full ({limit} {what})")
        self.participants[participant.sid] = participant

    def others(self, participant: Participant) -> list[Participant]:
        return [p for p in self.participants.values() if p is not participant]

    def tracks(self) -> list[UpTrack]:
        return [t for p in self.participants.values() for t in p.published.values()]

    def find_track(self, track_sid: str) -> UpTrack:
        for p in self.participants.values():
            track = p.published.get(track_sid)
            if track is not None:
                return track
        raise NotFoundError(f"track {track_sid} is not in room {self.name}")
