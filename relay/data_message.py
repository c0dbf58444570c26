"""Data messages on the data channels: what a participant sends, what the others receive,
and the checks in between (grant, size, rate, shape)."""

from __future__ import annotations

from dataclasses import dataclass

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from .room import Participant, Room
from .stats import RelayStats


class OutgoingData(BaseModel):
    """Sent by a participant on ``_reliable`` or ``_lossy``."""

    model_config = ConfigDict(extra="forbid")

    payload: str
    topic: str | None = Field(default=None, max_length=128)
    destination_identities: list[str] = Field(default_factory=list, max_length=256)


class DeliveredData(BaseModel):
    """Delivered to each recipient, stamped with the sender's identity by the relay."""

    from_identity: str
    from_sid: str
    payload: str
    topic: str | None = None


@dataclass(frozen=True, slots=True)
class Relayed:
    """A message delivered here, as other nodes of the room deliver it too."""

    delivered: str  # DeliveredData JSON
    destinations: tuple[str, ...]  # identities; empty: everyone


def relay_data_message(
    room: Room | None,
    sender: Participant,
    lossy: bool,
    message: bytes | str,
    max_bytes: int,
    now: float,
    stats: RelayStats,
) -> tuple[str, str] | Relayed | None:
    """Deliver one message to the room (or its named identities), never back to the
    sender, on the same kind of channel. Returns (error code, text) when refused, what was
    delivered otherwise (None when the room is gone)."""
    stats.data_messages_in += 1
    raw = message.encode() if isinstance(message, str) else message
    refusal: tuple[str, str] | None = None
    data: OutgoingData | None = None
    if not sender.permissions.can_publish_data:
        refusal = ("permission_denied", "this token does not allow sending data")
    elif len(raw) > max_bytes:
        refusal = ("data_too_large", f"data message of {len(raw)} bytes exceeds {max_bytes}")
    elif not sender.data_limiter.allow(now):
        refusal = ("data_rate_limited", "too many data messages")
    else:
        try:
            data = OutgoingData.model_validate_json(raw)
        except pydantic.ValidationError as exc:
            refusal = ("invalid_data_message", str(exc.errors()[0]["msg"]))
    if refusal is not None or data is None or room is None:
        if refusal is not None:
            stats.data_messages_rejected += 1
        return refusal
    delivered = DeliveredData(
        from_identity=sender.identity, from_sid=sender.sid, payload=data.payload, topic=data.topic
    ).model_dump_json()
    relayed = Relayed(delivered, tuple(data.destination_identities))
    deliver_data(room, sender.sid, lossy, relayed, stats)
    return relayed


def deliver_data(
    room: Room, sender_sid: str, lossy: bool, relayed: Relayed, stats: RelayStats
) -> None:
    """Hand a checked message to the room's participants here (the sender's node checked
    it, wherever the sender is)."""
    targets = set(relayed.destinations)
    for other in room.participants.values():
        if other.sid == sender_sid or (targets and other.identity not in targets):
            continue
        leg = other.subscriber_leg
        if leg is not None and leg.send_data(lossy, relayed.delivered):
            stats.data_messages_out += 1
