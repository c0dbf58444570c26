"""Data messages on the data channels: what a participant sends, what the others receive,
and the checks in between (grant, size, rate, shape)."""

from __future__ import annotations

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


def relay_data_message(
    room: Room | None,
    sender: Participant,
    lossy: bool,
    message: bytes | str,
    max_bytes: int,
    now: float,
    stats: RelayStats,
) -> tuple[str, str] | None:
    """Deliver one message to the room (or its named identities), never back to the
    sender, on the same kind of channel. Returns (error code, text) when refused."""
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
    targets = set(data.destination_identities)
    for other in room.others(sender):
        if targets and other.identity not in targets:
            continue
        if other.subscriber_leg is not None and other.subscriber_leg.send_data(lossy, delivered):
            stats.data_messages_out += 1
    return None
