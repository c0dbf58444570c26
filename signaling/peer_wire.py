"""What nodes send each other (``signaling/peer_api.py``): pydantic models at the boundary."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from relay.control import BridgedTrack, BridgeEndpoint

MAX_BODY = 64 * 1024

endpoint_adapter: TypeAdapter[BridgeEndpoint] = TypeAdapter(BridgeEndpoint)
track_adapter: TypeAdapter[BridgedTrack] = TypeAdapter(BridgedTrack)


class PeerBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    room: str = Field(min_length=1, max_length=256)
    node: str = Field(min_length=1, max_length=128)  # the asking node


class BridgeOpen(PeerBody):
    fingerprints: list[tuple[str, str]] = Field(min_length=1, max_length=4)


class BridgeTrackAsk(PeerBody):
    track_sid: str = Field(min_length=1, max_length=64)
    rids: list[str] = Field(default_factory=list, max_length=8)  # all layers when empty


class DataPush(PeerBody):
    sender_sid: str = Field(min_length=1, max_length=64)
    lossy: bool
    delivered: str = Field(max_length=MAX_BODY)
    destinations: list[str] = Field(default_factory=list, max_length=256)
