"""ICE connectivity checks sent from one leg toward one known remote address (RFC 8445, as
the controlling agent facing an ICE-lite peer), then consent freshness (RFC 7675).

Two ICE-lite relays cannot meet, so a relay-to-relay leg has one side that initiates. The
remote address, ufrag and password are known up front (the peer announced them), so there is
one candidate pair and nothing to gather or pair: this class builds the binding requests,
remembers their transaction ids, authenticates the answers and keeps the schedule. It does no
I/O and reads no clock; the caller sends what ``poll`` returns and passes ``now`` in.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from typing import Literal

from aioice import stun

from .ice_lite import IceCredentials, parse_stun

Address = tuple[str, int]
CheckState = Literal["checking", "connected", "failed"]

# RFC 8445 section 5.1.2.1 with type preference 110 (peer-reflexive), local preference 65535,
# component 1: the priority the answering side would give a candidate it learns from us.
PEER_REFLEXIVE_PRIORITY = (110 << 24) | (65535 << 8) | (256 - 1)
# Late answers to older checks still count, so some ids are kept; a bound keeps a dead peer
# from growing the set.
MAX_OUTSTANDING = 32


@dataclass(slots=True, frozen=True)
class CheckSchedule:
    """When to send checks and when to give up, in seconds."""

    # Until answered: a first retransmit after 50 ms (RFC 8445's pacing Ta), doubling up to
    # 500 ms, the RTO RFC 8445 section 14.3 gives a lone pair. Faster than that RTO at first
    # on purpose: there is one pair, and a lost first check should not cost a sibling worker
    # on loopback half a second; the cap keeps a lossy public path from being flooded.
    first_retransmit: float = 0.05
    max_retransmit: float = 0.5
    # No answer within this bound: the leg fails and the control plane may try elsewhere.
    connect_timeout: float = 10.0
    # Once answered: a consent check every ~5 s, randomised by +-20% (RFC 7675 section 5.1);
    # consent is lost after 30 s without an authenticated answer.
    consent_interval: float = 5.0
    consent_timeout: float = 30.0


class IceInitiator:
    """Checks toward ``remote_addr`` with the remote credentials; see the module docstring."""

    def __init__(
        self,
        local: IceCredentials,
        remote: IceCredentials,
        remote_addr: Address,
        now: float,
        schedule: CheckSchedule | None = None,
    ) -> None:
        self.local = local
        self.remote = remote
        self.remote_addr = remote_addr
        self.schedule = schedule or CheckSchedule()
        self.state: CheckState = "checking"
        self.next_check = now  # the first check goes out at once
        self.last_error: int | None = None  # ERROR-CODE of the last error answer, for the logs
        # RFC 8445 section 7.1.1: the controlling agent's tie-breaker, fixed for its lifetime.
        self._tie_breaker = secrets.randbits(64)
        self._pwd = remote.pwd.encode()
        self._username = f"{remote.ufrag}:{local.ufrag}"
        # Moved on by every authenticated answer: from the connect bound to consent freshness.
        self._give_up_at = now + self.schedule.connect_timeout
        self._retransmit = self.schedule.first_retransmit
        self._outstanding: dict[bytes, None] = {}  # transaction ids, oldest first

    @property
    def failed(self) -> bool:
        return self.state == "failed"

    def poll(self, now: float) -> bytes | None:
        """The binding request to send now, if one is due; moves to ``failed`` past the bound.

        Each check is a new transaction (RFC 7675 asks it of consent checks; for the first
        ones it lets an answer to any earlier check count) rather than a STUN retransmission.
        """
        if now >= self._give_up_at:
            self.state = "failed"
        if self.state == "failed" or now < self.next_check:
            return None
        if self.state == "checking":
            self.next_check = now + self._retransmit
            self._retransmit = min(self._retransmit * 2, self.schedule.max_retransmit)
        else:
            self.next_check = now + self._consent_delay()
        return self._request()

    def handle(self, data: bytes, addr: Address, now: float) -> bool:
        """True if ``data`` is an authenticated success answer to one of our checks.

        Anything else is ignored and changes nothing but ``last_error``: error answers are
        not authenticated (a 401 cannot be signed), so one could be spoofed to kill the leg;
        the checks go on until the bound. Raises ValueError for datagrams that are not STUN.
        """
        message = parse_stun(data)
        if (
            addr != self.remote_addr
            or self.state == "failed"
            or message.message_method != stun.Method.BINDING
            or message.transaction_id not in self._outstanding
        ):
            return False
        if message.message_class == stun.Class.ERROR:
            self.last_error = message.error_code
            return False
        if message.message_class != stun.Class.RESPONSE or not message.check_message_integrity(
            self._pwd
        ):
            return False
        del self._outstanding[message.transaction_id]
        self._give_up_at = now + self.schedule.consent_timeout
        if self.state == "checking":
            self.state = "connected"
            self.next_check = now + self._consent_delay()
        return True

    def _consent_delay(self) -> float:
        # Not a secret: the jitter only keeps many legs from checking in lockstep.
        return self.schedule.consent_interval * random.uniform(0.8, 1.2)

    def _request(self) -> bytes:
        message = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
        message.attributes["USERNAME"] = self._username
        message.attributes["PRIORITY"] = PEER_REFLEXIVE_PRIORITY
        message.attributes["ICE-CONTROLLING"] = self._tie_breaker
        if self.state == "checking":
            # Nominate at once: a lite peer never checks back, so the only pair is the
            # selected one (RFC 8445 section 8.1.1). Consent checks do not nominate again.
            message.attributes["USE-CANDIDATE"] = None
        message.add_message_integrity(self._pwd)  # adds FINGERPRINT after it
        self._outstanding[message.transaction_id] = None
        if len(self._outstanding) > MAX_OUTSTANDING:
            del self._outstanding[next(iter(self._outstanding))]
        return bytes(message)
