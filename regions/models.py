"""What the registry stores: node records, their live load, and rooms' residency policies."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class NodeState(StrEnum):
    ACTIVE = "active"
    DRAINING = "draining"


class NodeLoad(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cpu: float = Field(default=0.0, ge=0.0, description="Fraction of one core, 0..N")
    sessions: int = Field(default=0, ge=0)
    tracks: int = Field(default=0, ge=0)
    bitrate_bps: int = Field(default=0, ge=0)


class NodeRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=128)
    region: str = Field(min_length=1, max_length=64)
    jurisdiction: str = Field(default="eu", max_length=32)
    signaling_url: str  # this node's public base URL (http(s)://host:port)
    internal_url: str = ""  # where other nodes call it (bridges, data); empty: signaling_url
    media_address: str = ""  # announced UDP address:port
    capacity: int = Field(default=1000, ge=0, description="max participants; 0: unlimited")
    load: NodeLoad = Field(default_factory=NodeLoad)
    state: NodeState = NodeState.ACTIVE
    last_heartbeat: float = 0.0  # unix seconds

    def alive(self, now: float, ttl: float) -> bool:
        return now - self.last_heartbeat <= ttl


class RoomPolicy(BaseModel):
    """A room's settings from the admin API, shared by every node: residency (where its
    sessions may be placed; empty lists mean no restriction), and what each node applies
    when a session creates the room there (public viewing, limits; None: node defaults)."""

    model_config = ConfigDict(extra="forbid")

    allowed_jurisdictions: list[str] = Field(default_factory=list, max_length=32)
    allowed_regions: list[str] = Field(default_factory=list, max_length=64)
    public_viewing: bool = False
    max_participants: int | None = Field(default=None, ge=0)
    max_viewers: int | None = Field(default=None, ge=0)
    audio_top_n: int | None = Field(default=None, ge=0)  # the N loudest audio only; 0: all

    def allows(self, node: NodeRecord) -> tuple[bool, str]:
        if self.allowed_jurisdictions and node.jurisdiction not in self.allowed_jurisdictions:
            return False, f"jurisdiction {node.jurisdiction} not in {self.allowed_jurisdictions}"
        if self.allowed_regions and node.region not in self.allowed_regions:
            return False, f"region {node.region} not in {self.allowed_regions}"
        return True, ""


class MemberTrack(BaseModel):
    """A track as the room directory knows it: enough for another node to announce it."""

    model_config = ConfigDict(extra="forbid")

    sid: str = Field(min_length=1, max_length=64)
    kind: Literal["audio", "video"]
    name: str = Field(default="", max_length=256)
    mime: str = Field(default="", max_length=64)
    muted: bool = False
    layers: list[str] = Field(default_factory=list, max_length=8)  # simulcast rids
    source: str = Field(default="", max_length=16)  # camera, microphone, screen, screen_audio


class RoomMember(BaseModel):
    """A participant of a room as every node sees it: who, on which node, with what tracks."""

    model_config = ConfigDict(extra="forbid")

    sid: str = Field(min_length=1, max_length=64)
    identity: str = Field(max_length=256)
    name: str = Field(default="", max_length=256)
    node: str = Field(min_length=1, max_length=128)  # where it is connected
    kind: str = Field(default="rtc", max_length=16)  # relay.room.ParticipantKind value
    joined_at: float = 0.0  # unix seconds: the later of two with one identity stays
    # Orders the records of one member (its node's monotonic clock at the write): a
    # directory read can return an older record than an event already applied.
    version: int = 0
    tracks: list[MemberTrack] = Field(default_factory=list, max_length=64)


class RoomEvent(BaseModel):
    """A change of one member, as the node it is on published it. The full record travels,
    so a receiver compares it with what it knew (idempotent; a missed event is repaired by
    the next one or by reading the directory)."""

    model_config = ConfigDict(extra="forbid")

    room: str = Field(min_length=1, max_length=256)
    node: str = Field(min_length=1, max_length=128)  # the publishing node
    member: RoomMember
    left: bool = False
    reason: str = Field(default="", max_length=64)
