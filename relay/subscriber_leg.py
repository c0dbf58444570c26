"""The subscriber leg of a signalled participant: the relay offers the tracks it receives
and the two data channels, and renegotiates as tracks come and go."""

from __future__ import annotations

from collections.abc import Callable

from aiortc import RTCDataChannel

from .down_leg import DownLeg
from .dtls_adapter import DtlsRole
from .leg import LegEnv
from .negotiation import SubscriberNegotiation
from .room import Participant

DataHandler = Callable[[Participant, bool, bytes | str], None]  # (sender, lossy, message)


class SubscriberLeg(DownLeg):
    direction = "subscriber"

    def __init__(self, env: LegEnv, participant: Participant, role: DtlsRole, now: float) -> None:
        super().__init__(env, participant, role, now)
        self.negotiation = SubscriberNegotiation()
        self.reliable: RTCDataChannel | None = None
        self.lossy: RTCDataChannel | None = None

    def accepted_ssrcs(self) -> set[int]:
        return self.negotiation.accepted_ssrcs

    def open_data(self, reliable: RTCDataChannel, lossy: RTCDataChannel, on: DataHandler) -> None:
        self.reliable, self.lossy = reliable, lossy
        participant = self.participant
        reliable.on("message", lambda m: on(participant, False, m))
        lossy.on("message", lambda m: on(participant, True, m))

    def send_data(self, lossy: bool, message: str) -> bool:
        channel = self.lossy if lossy else self.reliable
        if channel is None or channel.readyState != "open":
            return False
        channel.send(message)
        return True
