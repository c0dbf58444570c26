"""Leg transports: creating legs and their sockets, DTLS once a leg's address is latched,
data channels, and closing. Which leg kinds exist and what they carry is the legs' business;
this unit only knows when a transport is up or gone, and says so through ``on_connected``
and ``on_failed``.

Most legs answer, on the worker's main socket: the peer's binding requests latch them and
the peer chose the DTLS role. A leg that initiates (relay to relay, toward an address the
other relay announced) gets a socket of its own and a task here that sends its connectivity
checks from it; it becomes the DTLS client once one is answered. What it receives still
reaches the worker's subscribers through the main socket (``LegEnv.fanout``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from .background import TaskSet
from .down_leg import DownLeg
from .dtls_adapter import DtlsRole, generate_certificate, local_fingerprint
from .ice_initiator import CheckSchedule, IceInitiator
from .ice_lite import IceCredentials
from .leg import Address, Leg, LegEnv
from .publisher_leg import PublisherLeg
from .repair import Repair
from .room import Participant
from .sdp_negotiation import MAX_MESSAGE_SIZE, LocalTransport, RemoteDescription, answer_role
from .subscriber_leg import DataHandler, SubscriberLeg
from .udp_mux import LegSocket, UdpMux

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
        open_socket: Callable[[], socket.socket],
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
        self._tasks = TaskSet()
        # Initiating legs' own sockets (``open_socket`` binds one at the worker's address)
        # and the tasks that send their checks.
        self._open_socket = open_socket
        self.sockets: dict[Leg, LegSocket] = {}
        self._checks: dict[Leg, asyncio.Task[None]] = {}
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
        """A leg that connects to ``remote`` from a socket of its own: checks toward its
        address, then the DTLS client.

        The socket is bound here (raises OSError at once if it cannot be). Its own socket
        tells the leg apart from every other, so any number of legs may connect to one
        address, and to a worker whose legs connect back to this one's main socket. Only an
        authenticated answer from ``remote.addr`` latches it. Down legs cannot initiate: the
        fast path sends to them from the main socket, which their peer would not know.
        """
        if issubclass(kind, DownLeg):
            raise TypeError(f"{kind.__name__} is sent media from the main socket: it answers")
        own = LegSocket(self._open_socket(), self.mux.stats)
        env = replace(self.env, wire=own.mux)
        leg = self._create(kind, participant, "client", env)
        leg.remote_fingerprints = list(remote.fingerprints)
        initiator = IceInitiator(
            leg.credentials, remote.credentials, remote.addr, time.perf_counter(), schedule
        )
        leg.initiator = initiator
        own.mux.initiating = leg
        own.mux.on_latch = self.maybe_start
        self.sockets[leg] = own
        self._checks[leg] = self._start(self._run_checks(leg, initiator, own))
        return leg

    def _create(
        self,
        kind: type[AnyLeg],
        participant: Participant,
        role: DtlsRole,
        env: LegEnv | None = None,
    ) -> AnyLeg:
        leg = kind(env or self.env, participant, role, time.perf_counter())
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
        leg.remote_credentials = IceCredentials(offer.ice_ufrag, offer.ice_pwd)
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

    async def _run_checks(self, leg: Leg, initiator: IceInitiator, own: LegSocket) -> None:
        """Send checks when due until the initiator gives up; the mux feeds it the answers."""
        try:
            await own.attach()
        except OSError:
            logger.exception("no socket for %s leg of %s", leg.direction, leg.participant.sid)
            self._on_failed(leg)
            return
        while True:
            now = time.perf_counter()  # the mux's clock, which stamps the answers
            request = initiator.poll(now)
            if initiator.failed:
                break
            if request is not None:
                own.mux.sendto(request, initiator.remote_addr)
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
        # Which address a participant's media uses (the log handler truncates it: GDPR).
        address = f"{leg.addr[0]}:{leg.addr[1]}" if leg.addr is not None else "?"
        logger.info("%s leg of %s connected from %s", leg.direction, leg.participant.sid, address)
        self._on_connected(leg)

    def open_data(self, leg: SubscriberLeg, on_data: DataHandler) -> None:
        remote_port = leg.negotiation.remote_sctp_port
        reliable, lossy, task = leg.dtls.open_data_channels(remote_port, MAX_MESSAGE_SIZE)
        leg.open_data(reliable, lossy, on_data)
        self._tasks.keep(task)

    async def close(self, leg: Leg) -> None:
        leg.closed = True
        if isinstance(leg, PublisherLeg):
            self.publisher_legs.pop(leg, None)
        self.mux.forget(leg)
        checks = self._checks.pop(leg, None)
        if checks is not None:
            # It waits in a sleep between checks (or for its socket to be on the loop):
            # cancelled there, it sends nothing more.
            checks.cancel()
        try:
            await leg.dtls.close()  # its close_notify still leaves through the leg's socket
        finally:
            own = self.sockets.pop(leg, None)
            if own is not None:
                own.close()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks.spawn(coro)

    def _start(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        return self._tasks.spawn(coro)

    def stop(self) -> None:
        """The worker stops: cancel what runs, close the sockets legs still have."""
        self._tasks.cancel()
        for own in self.sockets.values():
            own.close()
        self.sockets.clear()
