"""The leg of a WHEP viewer: the m-lines it offered, each fed by the track of that kind of
the publisher it follows; no data channels, no renegotiation."""

from __future__ import annotations

from .down_leg import DownLeg
from .dtls_adapter import DtlsRole
from .leg import LegEnv
from .room import Participant
from .sdp_negotiation import ViewerSlot
from .track import DownTrack


class ViewerLeg(DownLeg):
    direction = "viewer"

    def __init__(self, env: LegEnv, participant: Participant, role: DtlsRole, now: float) -> None:
        super().__init__(env, participant, role, now)
        self.follow = ""  # the publisher's identity; "" follows the room's first publisher
        self.slots: list[ViewerSlot] = []  # the m-lines the viewer offered
        self.history: dict[int, DownTrack] = {}  # last source per m-line SSRC

    def accepted_ssrcs(self) -> set[int]:
        return {s.ssrc for s in self.slots}
