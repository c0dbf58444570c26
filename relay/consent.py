"""Consent to a move (RFC 7675, applied to a new address): before a connected leg's media
follows its peer to an address it has not sent to, that address must answer the relay's own
binding request with the peer's ICE credentials.

A packet from a new address proves only that whoever sent it holds the leg's keys (SRTP) or
ICE credentials (STUN), not that the address wants the media: its source may be spoofed. A
binding request sent there, with USERNAME ``remote-ufrag:local-ufrag`` and MESSAGE-INTEGRITY
keyed by the peer's password from its SDP, can only be answered by the peer at that address
(RFC 7675 section 5.1: a success response from the address checked, to the transaction sent,
authenticated with that password). aioice and Chromium answer such requests from an address
they know. This class is one such check: it builds the request, keeps its schedule and
authenticates answers; it does no I/O and reads no clock (the mux sends and passes ``now``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from aioice import stun

from .ice_initiator import PEER_REFLEXIVE_PRIORITY
from .ice_lite import IceCredentials

Address = tuple[str, int]

# Sent at 0, then after 50, 100 and 200 ms (RFC 8445's pacing Ta, doubling): a lost check
# costs a handover 50 ms, not a consent interval. Past the last, 400 ms more for its answer,
# then the move is dropped quietly; the peer's next packet from there starts another check.
RETRANSMITS = (0.05, 0.1, 0.2)
LAST_WAIT = 0.4
_WAITS = (*RETRANSMITS, LAST_WAIT)  # after each send

# Only the tie-breaker's presence matters: the relay is ICE-lite, always controlled, and a
# controlling peer never finds a conflict in ICE-CONTROLLED (RFC 8445 section 7.3.1.1).
_TIE_BREAKER = secrets.randbits(64)


@dataclass(slots=True)
class MoveCheck:
    """One binding request toward ``addr`` and its retransmits, until answered or given up."""

    addr: Address
    via: str  # what asked for the move ("srtp", "stun"), for the log line
    request: bytes
    transaction_id: bytes
    pwd: bytes  # the peer's ICE password: what its answer is keyed with
    next_at: float  # when the next retransmit is due, or the check gives up
    sent: int = 1

    @classmethod
    def start(
        cls, local: IceCredentials, remote: IceCredentials, addr: Address, via: str, now: float
    ) -> MoveCheck:
        message = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
        message.attributes["USERNAME"] = f"{remote.ufrag}:{local.ufrag}"
        # aioice reads PRIORITY from any request from an address it has not paired yet
        message.attributes["PRIORITY"] = PEER_REFLEXIVE_PRIORITY
        message.attributes["ICE-CONTROLLED"] = _TIE_BREAKER
        pwd = remote.pwd.encode()
        message.add_message_integrity(pwd)  # adds FINGERPRINT after it
        return cls(
            addr=addr,
            via=via,
            request=bytes(message),
            transaction_id=message.transaction_id,
            pwd=pwd,
            next_at=now + _WAITS[0],
        )

    def poll(self, now: float) -> tuple[bytes | None, bool]:
        """(the request to send again now, or None; True once the check has given up)."""
        if now < self.next_at:
            return None, False
        if self.sent > len(RETRANSMITS):
            return None, True
        # the same request again: an answer to any of its copies counts
        self.sent += 1
        self.next_at = now + _WAITS[self.sent - 1]
        return self.request, False

    def answered_by(self, message: stun.Message, addr: Address) -> bool:
        """True for a success answer from ``addr`` to this very request, keyed by the peer's
        password. An error answer is never authenticated, so it proves nothing either way."""
        return (
            addr == self.addr
            and message.message_method == stun.Method.BINDING
            and message.message_class == stun.Class.RESPONSE
            and message.transaction_id == self.transaction_id
            and message.check_message_integrity(self.pwd)
        )
