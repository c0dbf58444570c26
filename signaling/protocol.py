"""The client protocol on ``/v1/rtc``: JSON over WebSocket, one model per message type.

Every frame is one JSON object whose ``type`` selects its model. ``PROTOCOL_VERSION`` is
bumped on any incompatible change; docs/PROTOCOL.md documents each message and
``python -m signaling.protocol`` prints the JSON schema.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

PROTOCOL_VERSION = 1

Sdp = Annotated[str, Field(min_length=1, max_length=65536)]
Sid = Annotated[str, Field(min_length=1, max_length=64)]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


# client -> server --------------------------------------------------------------------------


class Join(_Message):
    """First message. The token may come here or as ``?access_token=`` on the URL."""

    type: Literal["join"]
    version: int = PROTOCOL_VERSION
    token: str | None = None
    room: str | None = Field(default=None, max_length=256)
    auto_subscribe: bool = True
    rtts: dict[str, float] = Field(
        default_factory=dict, max_length=32, description="Probe RTT (ms) per region offered."
    )


class Resume(_Message):
    """First message on a new WebSocket after one dropped without ``leave``: take the session
    over where it stands (peer connections untouched, nobody told). ``resume_token`` is the
    one the last ``joined`` or ``resumed`` gave; the access token is checked as for join."""

    type: Literal["resume"]
    version: int = PROTOCOL_VERSION
    sid: Sid
    resume_token: str = Field(min_length=1, max_length=128)
    token: str | None = None


Source = Literal["camera", "microphone", "screen", "screen_audio"]


class TrackInfo(_Message):
    mid: str = Field(max_length=32)
    name: str = Field(default="", max_length=256)
    source: Source | None = None  # None: microphone for audio, camera for video


class PublishOffer(_Message):
    """An offer for the publisher peer connection (first or renegotiation)."""

    type: Literal["publish_offer"]
    sdp: Sdp
    tracks: list[TrackInfo] = Field(default_factory=list, max_length=64)


class SubscriberAnswer(_Message):
    type: Literal["subscriber_answer"]
    sdp: Sdp


class Trickle(_Message):
    """Client ICE candidates. The relay is ICE-lite and learns addresses from checks: ignored."""

    type: Literal["trickle"]
    target: Literal["publisher", "subscriber"]
    candidate: str = Field(default="", max_length=1024)


class Subscribe(_Message):
    type: Literal["subscribe"]
    track_sid: Sid


class Unsubscribe(_Message):
    type: Literal["unsubscribe"]
    track_sid: Sid


Quality = Literal["low", "medium", "high"]


class SetQuality(_Message):
    """The highest simulcast layer to receive of a track; the relay may send a lower one
    when the subscriber's link cannot carry it."""

    type: Literal["set_quality"]
    track_sid: Sid
    quality: Quality


class Mute(_Message):
    type: Literal["mute"]
    track_sid: Sid
    muted: bool


class Leave(_Message):
    type: Literal["leave"]


class Ping(_Message):
    type: Literal["ping"]
    timestamp: float = 0


ClientMessage = Annotated[
    Join
    | Resume
    | PublishOffer
    | SubscriberAnswer
    | Trickle
    | Subscribe
    | Unsubscribe
    | SetQuality
    | Mute
    | Leave
    | Ping,
    Field(discriminator="type"),
]
client_message = TypeAdapter(ClientMessage)


# server -> client --------------------------------------------------------------------------


class TrackDescription(_Message):
    sid: str
    kind: Literal["audio", "video"]
    name: str
    mime: str
    muted: bool
    layers: list[str] = []  # simulcast rids, lowest first; empty for a single stream
    source: str = ""  # camera, microphone, screen, screen_audio


class ParticipantDescription(_Message):
    sid: str
    identity: str
    name: str
    tracks: list[TrackDescription]


class Joined(_Message):
    type: Literal["joined"] = "joined"
    version: int = PROTOCOL_VERSION
    room: str
    room_sid: str
    participant: ParticipantDescription
    others: list[ParticipantDescription]
    ice_servers: list[dict[str, object]]
    node_id: str
    region: str
    # Resumes this session on a new WebSocket if this one drops (``resume``); secret.
    resume_token: str = ""


class PublishAnswer(_Message):
    type: Literal["publish_answer"] = "publish_answer"
    sdp: str
    tracks: dict[str, str]  # mid -> track sid


class SubscriberOffer(_Message):
    type: Literal["subscriber_offer"] = "subscriber_offer"
    sdp: str
    tracks: dict[str, str]  # mid -> track sid of the m-lines that carry a track


class ParticipantJoined(_Message):
    type: Literal["participant_joined"] = "participant_joined"
    participant: ParticipantDescription


class ParticipantLeft(_Message):
    type: Literal["participant_left"] = "participant_left"
    sid: str
    identity: str
    reason: str


class TrackPublished(_Message):
    type: Literal["track_published"] = "track_published"
    participant_sid: str
    track: TrackDescription


class TrackUnpublished(_Message):
    type: Literal["track_unpublished"] = "track_unpublished"
    participant_sid: str
    track_sid: str


class TrackMuted(_Message):
    type: Literal["track_muted"] = "track_muted"
    participant_sid: str
    track_sid: str
    muted: bool


class PermissionGrants(_Message):
    can_publish: bool
    can_subscribe: bool
    can_publish_data: bool
    sources: list[Source] | None = None  # what may be published; None: any


class Resumed(_Message):
    """The session goes on on this WebSocket. Events sent while it was away are not replayed:
    this is where things stand now (the others and their tracks, your own grants). A
    ``subscriber_offer`` follows if one was due or may have been lost."""

    type: Literal["resumed"] = "resumed"
    participant: ParticipantDescription
    others: list[ParticipantDescription]
    permissions: PermissionGrants
    resume_token: str  # for the next resume: each one is used once


class PermissionsChanged(_Message):
    """An admin changed what this participant may do, in place (no rejoin): tracks it may no
    longer publish are already unpublished; losing subscribe ends what it receives."""

    type: Literal["permissions_changed"] = "permissions_changed"
    permissions: PermissionGrants


class Speaker(_Message):
    sid: str  # participant sid
    identity: str
    level: float  # smoothed linear amplitude, 0-1 (10^(-dBov/20)): -20 dBov is 0.1


class ActiveSpeakers(_Message):
    """Who is speaking in the room now, loudest first; sent when that changes, at most every
    0.3 s (and once after ``joined`` while someone speaks). An empty list: nobody."""

    type: Literal["active_speakers"] = "active_speakers"
    speakers: list[Speaker]


class Pong(_Message):
    type: Literal["pong"] = "pong"
    timestamp: float


class Closed(_Message):
    """The server ends the session (kicked, room deleted, duplicate identity, shutdown)."""

    type: Literal["closed"] = "closed"
    reason: str


class Redirect(_Message):
    """The session belongs on another node: reconnect there and join again."""

    type: Literal["redirect"] = "redirect"
    url: str  # the /v1/rtc WebSocket URL to use
    node_id: str
    region: str
    reason: str


class Error(_Message):
    type: Literal["error"] = "error"
    code: str
    message: str
    fatal: bool = False


ServerMessage = Annotated[
    Joined
    | Resumed
    | PublishAnswer
    | SubscriberOffer
    | ParticipantJoined
    | ParticipantLeft
    | TrackPublished
    | TrackUnpublished
    | TrackMuted
    | PermissionsChanged
    | ActiveSpeakers
    | Pong
    | Closed
    | Redirect
    | Error,
    Field(discriminator="type"),
]
server_message = TypeAdapter(ServerMessage)

# Stable error codes (docs/PROTOCOL.md lists when each is sent).
ERROR_CODES = {
    "token_missing": "no access token",
    "token_malformed": "not a valid HS256 JWT or claims",
    "token_unknown_key": "the iss API key is unknown",
    "token_bad_signature": "signature does not verify",
    "token_expired": "past exp",
    "token_not_yet_valid": "before nbf",
    "token_wrong_room": "the grant is for another room",
    "permission_denied": "the grant does not allow this",
    "invalid_json": "the frame is not JSON",
    "invalid_message": "the JSON does not match any message",
    "message_too_large": "the frame exceeds signaling.max_message_bytes",
    "rate_limited": "too many messages",
    "not_joined": "join first",
    "already_joined": "join sent twice",
    "resume_failed": "no session to resume here (ended, unknown, or another resume token)",
    "invalid_sdp": "SDP could not be parsed or lacks ICE/DTLS attributes",
    "invalid_state": "message not valid now (e.g. answer without offer)",
    "not_found": "unknown track or participant",
    "room_full": "the room is at max participants",
    "node_full": "this node is at capacity",
    "data_too_large": "data message over rooms.data_max_bytes",
    "data_rate_limited": "data messages over rooms.data_rate",
    "invalid_data_message": "data channel message is not the documented JSON",
    "join_timeout": "no join within signaling.join_timeout",
    "unsupported_version": "protocol version not supported",
    "internal_error": "unexpected server error",
    "node_draining": "this node takes no new sessions",
    "registry_unavailable": "the node registry is unreachable past routing.snapshot_grace",
    "no_eligible_node": "no node may take the session (capacity, draining, residency)",
}


def json_schema() -> dict[str, object]:
    return {
        "version": PROTOCOL_VERSION,
        "client_to_server": client_message.json_schema(),
        "server_to_client": server_message.json_schema(),
    }


if __name__ == "__main__":
    print(json.dumps(json_schema(), indent=2))
