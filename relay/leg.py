"""A peer leg: one ICE + DTLS-SRTP transport on a UDP socket: the worker's, or for a leg
that initiates (relay to relay) a socket of its own.

Legs are named for the direction media flows (``PublisherLeg`` up from a peer,
``SubscriberLeg`` and ``ViewerLeg`` down to one). A leg reaches the rest of the relay only
through what it is given: the ``Wire`` to its own peer, the ``Wire`` it forwards media to
the worker's subscribers on, and the ``RepairRequests`` it reports loss and keyframe needs
to. It never holds the worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import pylibsrtp

from . import rtcp
from .dtls_adapter import DtlsRole, DtlsSession, RelayCertificate
from .ice_initiator import IceInitiator
from .ice_lite import IceCredentials
from .room import Participant
from .srtp_fast import FastSrtp
from .stats import RelayStats
from .track import DownTrack, UpTrack, random_ssrc

logger = logging.getLogger(__name__)

Address = tuple[str, int]


class Wire(Protocol):
    """A socket as a leg sees it (its UDP mux)."""

    stats: RelayStats
    fast_sendto: Callable[[bytes, Address], None]  # the transport's own sendto

    def sendto(self, data: bytes, addr: Address) -> None: ...


class RepairRequests(Protocol):
    """Where legs report what needs repair (``relay.repair.Repair``)."""

    def request_keyframe(self, up: UpTrack) -> None: ...

    def retransmit(self, down: DownTrack, lost: list[int]) -> None: ...

    def upstream_gave_up(self, up: UpTrack) -> None: ...


@dataclass(frozen=True, slots=True)
class LegEnv:
    """What a leg is given: where its own peer is reached, where the media it forwards
    leaves, where repair goes, the certificate."""

    wire: Wire  # to the leg's own peer: checks, DTLS, RTCP
    # To the worker's subscribers and viewers: the main socket, which their ICE latched to
    # (a packet from another port would be dropped). ``wire`` too, except on a leg that
    # initiates, whose ``wire`` is its own socket.
    fanout: Wire
    repair: RepairRequests
    certificate: RelayCertificate


class Leg:
    direction = "none"

    def __init__(self, env: LegEnv, participant: Participant, role: DtlsRole, now: float) -> None:
        self.wire = env.wire
        self.fanout = env.fanout
        self.repair = env.repair
        self.participant = participant
        self.credentials = IceCredentials.generate()
        # The peer's, from its SDP: what a move's consent check is keyed with
        # (``relay.consent``); None (a bridge's peer) and the leg never moves once connected.
        self.remote_credentials: IceCredentials | None = None
        self.dtls = DtlsSession(env.certificate, self._send_dtls, role)
        self.addr: Address | None = None
        # Set on a leg that initiates (relay to relay): it checks toward a known address
        # instead of waiting for the peer's binding requests.
        self.initiator: IceInitiator | None = None
        self.last_seen = now
        self.remote_fingerprints: list[tuple[str, str]] = []
        self.dtls_started = False
        self.closed = False
        self.tx_srtp: FastSrtp | None = None
        self.rx_srtp: FastSrtp | None = None
        self.rtcp_ssrc = random_ssrc()
        self.rtt_ms: float | None = None  # measured from RTCP (subscriber legs)

    def _send_dtls(self, data: bytes) -> None:
        if self.addr is not None:
            self.wire.sendto(data, self.addr)

    @property
    def ready_to_start(self) -> bool:
        return (
            self.addr is not None
            and bool(self.remote_fingerprints)
            and not self.dtls_started
            and not self.closed
        )

    def connected(self) -> None:
        """DTLS finished: the fast path may now use the SRTP sessions."""
        self.tx_srtp = FastSrtp(self.dtls.tx_srtp)
        self.rx_srtp = FastSrtp(self.dtls.rx_srtp)

    def send_rtcp(self, data: bytes) -> None:
        if not data or self.tx_srtp is None or self.addr is None:
            return
        try:
            self.wire.sendto(self.tx_srtp.protect_rtcp(data), self.addr)
        except pylibsrtp.Error:
            self.wire.stats.dropped["send_error"] += 1
            return
        self.wire.stats.rtcp_packets_out += 1

    def unprotect_rtcp(self, data: bytes) -> list[object] | None:
        if self.rx_srtp is None:
            return None
        try:
            plain = self.rx_srtp.unprotect_rtcp(data)
            packets = rtcp.parse(plain)
        except (pylibsrtp.Error, ValueError):
            self.wire.stats.dropped["srtp_error"] += 1
            return None
        except Exception:  # aiortc's parser can raise more than ValueError on garbage
            self.wire.stats.dropped["malformed"] += 1
            return None
        self.wire.stats.rtcp_packets_in += 1
        return packets

    def on_srtp(self, data: bytes, arrival: float) -> None:
        raise NotImplementedError

    def peer_ssrcs(self) -> Iterable[int]:
        """SSRCs in the clear header of what the peer sends, by which a packet from an
        address the leg is not latched to may be recognised as its (``relay.handover``);
        none: the leg is never moved that way."""
        return ()
