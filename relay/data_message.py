"""Data messages on the data channels: what a participant sends, what the others receive."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


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
