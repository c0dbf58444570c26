"""Leg transports: creating legs on the worker's socket, DTLS once a leg's address is
latched, data channels, and closing. Which leg kinds exist and what they carry is the
legs' business; this unit only knows when a transport is up or gone, and says so through
``on_connected`` and ``on_failed``.

Most legs answer: the peer's binding requests latch them and the peer chose the DTLS role.
A leg that initiates (relay to relay, toward an address the other relay announced) owns a
task here that sends its connectivity checks; it becomes the DTLS client once one is answered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from .dtls_adapter import DtlsRole, generate_certificate, local_fingerprint
from .errors import StateError
from .ice_initiator import CheckSchedule, IceInitiator
from .ice_lite import IceCredentials
from .leg import Address, Leg, LegEnv
from .publisher_leg import PublisherLeg
from .repair import Repair
from .room import Participant
from .sdp_negotiation import MAX_MESSAGE_SIZE, LocalTransport, RemoteDescription, answer_role
from .subscriber_leg import DataHandler, SubscriberLeg
from .udp_mux import UdpMux

logger = logging.getLogger(__name__)
AnyLeg = TypeVar("AnyLeg", bound=Leg)


@dataclass(slots=True, frozen=True)
class RemoteTransport:
    """The answering leg an initiating leg connects to, as its relay announced it."""

    addr: Address
    credentials: IceCredentials
    fingerprints: list[tuple[str, str]]


class Transports:
    def __init__(
        self,
        mux: UdpMux,
        repair: Repair,
        announce: list[str],
        port: int,
        on_connected: Callable[[Leg], None],
        on_failed: Callable[[Leg], None],
    ) -> None:
        self.mux = mux
        self.repair = repair
        self.announce = announce
        self.port = port  # the configured one; the bound one once the socket is up
        self.certificate = generate_certificate()
        self.fingerprint = local_fingerprint(self.certificate)
        self.env = LegEnv(mux, mux, repair, self.certificate)
        # Publisher legs in join order: the periodic work walks these, not every room, so
        # rooms where nobody publishes cost the ticks nothing.
        self.publisher_legs: dict[PublisherLeg, None] = {}
        self._on_connected = on_connected
        self._on_failed = on_failed
        self._tasks: set[asyncio.Task[None]] = set()
        self._checks: dict[Leg, asyncio.Task[None]] = {}  # initiating legs' check senders
        mux.on_latch = self.maybe_start

    def new_leg(self, kind: type[AnyLeg], participant: Participant, role: DtlsRole) -> AnyLeg:
        """A leg that answers: the peer's binding requests latch its address."""
        leg = self._create(kind, participant, role)
        self.mux.responder.add(leg.credentials, leg)
        return leg

    def initiating_leg(
        self,
        kind: type[AnyLeg],
        participant: Participant,
        remote: RemoteTransport,
        schedule: CheckSchedule | None = None,
    ) -> AnyLeg:
        """A leg that connects to ``remote``: checks toward its address, then the DTLS client.

        Its credentials stay out of the responder, so only an answer from ``remote.addr``
        latches it. Raises StateError if a leg already talks to that address: the mux tells
        legs apart by remote address alone.
        """
        if remote.addr in self.mux.by_addr or remote.addr in self.mux.checking:
            raise StateError("a leg on this socket already talks to that address")
        leg = self._create(kind, participant, "client")
        leg.remote_fingerprints = list(remote.fingerprints)
        initiator = IceInitiator(
            leg.credentials, remote.credentials, remote.addr, time.perf_counter(), schedule
        )
        leg.initiator = initiator
        self.mux.checking[remote.addr] = leg
        self._checks[leg] = self._start(self._run_checks(leg, initiator))
        return leg

    def _create(self, kind: type[AnyLeg], participant: Participant, role: DtlsRole) -> AnyLeg:
        leg = kind(self.env, participant, role, time.perf_counter())
        leg.dtls.on_closed(lambda: self._on_failed(leg))
        if isinstance(leg, PublisherLeg):
            self.publisher_legs[leg] = None
        return leg

    def answering_leg(
        self, kind: type[AnyLeg], participant: Participant, offer: RemoteDescription
    ) -> AnyLeg:
        """A leg for which the peer offered: DTLS role and fingerprints come from its offer."""
        _, role = answer_role(offer.setup)
        leg = self.new_leg(kind, participant, role)
        leg.remote_fingerprints = offer.fingerprints
        return leg

    def local(self, leg: Leg) -> LocalTransport:
        return LocalTransport(
            credentials=leg.credentials,
            fingerprint=self.fingerprint,
            candidates=[(address, self.port) for address in self.announce],
        )

    def maybe_start(self, leg: Leg) -> None:
        """Start DTLS once the address is latched and the peer's fingerprints are known."""
        if leg.ready_to_start:
            leg.dtls_started = True
            self.spawn(self._run_dtls(leg))

    async def _run_checks(self, leg: Leg, initiator: IceInitiator) -> None:
        """Send checks when due until the initiator gives up; the mux feeds it the answers."""
        while True:
            now = time.perf_counter()  # the mux's clock, which stamps the answers
            request = initiator.poll(now)
            if initiator.failed:
                break
            if request is not None:
                self.mux.sendto(request, initiator.remote_addr)
            await asyncio.sleep(initiator.next_check - now)
        if leg.closed:
            return
        if leg.addr is None:
            logger.info(
                "no answer to ICE checks of %s leg of %s within %.1f s (last error %s)",
                leg.direction,
                leg.participant.sid,
                initiator.schedule.connect_timeout,
                initiator.last_error,
            )
        else:
            logger.info("consent lost for %s leg of %s", leg.direction, leg.participant.sid)
        self._on_failed(leg)

    async def _run_dtls(self, leg: Leg) -> None:
        try:
            ok = await leg.dtls.start(leg.remote_fingerprints)
        except Exception:  # a peer must never leave a leg half-open
            logger.exception("DTLS start crashed for %s", leg.participant.sid)
            ok = False
        if leg.closed:
            return
        if not ok:
            logger.info(
                "DTLS handshake failed for %s leg of %s", leg.direction, leg.participant.sid
            )
            self._on_failed(leg)
            return
        if leg.dtls.handshake_seconds is not None:
            self.mux.stats.dtls_handshake_seconds.observe(leg.dtls.handshake_seconds)
        leg.connected()
        self._on_connected(leg)

    def open_data(self, leg: SubscriberLeg, on_data: DataHandler) -> None:
        remote_port = leg.negotiation.remote_sctp_port
        reliable, lossy, task = leg.dtls.open_data_channels(remote_port, MAX_MESSAGE_SIZE)
        leg.open_data(reliable, lossy, on_data)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self, leg: Leg) -> None:
        leg.closed = True
        if isinstance(leg, PublisherLeg):
            self.publisher_legs.pop(leg, None)
        self.mux.forget(leg)
        checks = self._checks.pop(leg, None)
        if checks is not None:
            # It waits in a sleep between checks: cancelled there, it sends nothing more.
            checks.cancel()
        await leg.dtls.close()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._start(coro)

    def _start(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def cancel_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()
