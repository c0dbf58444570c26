"""A UDP socket, demultiplexed by remote address, then by first byte (RFC 7983): STUN 0-3 as
below, DTLS 20-63 to the leg's DTLS session, SRTP/SRTCP 128-191 to the leg's fast path.

The worker's main socket carries every leg that answers. STUN requests go to its ICE-lite
responder, which latches the sender's address to the leg whose credentials they carry.

A leg that initiates (relay to relay) has a socket of its own, as mediasoup's pipe
transports do, so any number of them can talk to one peer address, and to a peer that also
talks to the main socket: its mux's ``initiating`` is that leg. STUN responses (success or
error) answer its checks: from the one address it checks toward they go to its
``IceInitiator``, which matches the transaction id and the remote password; its first
authenticated answer latches that address. Until then ``by_addr`` is empty, so no DTLS or
SRTP reaches the leg. On the main socket, where nobody initiates, every response is dropped.

SRTP and SRTCP from an address no leg is latched to may be a leg's peer that moved (a NAT
rebinding, a handover): ``relay.handover`` finds the leg whose keys authenticate it, limited
per source IP as STUN is. Anything else, or anything else from an unlatched address, is
dropped.

A leg whose DTLS finished moves only with the new address's consent (``relay.consent``):
an authenticated packet from there (SRTP, SRTCP or a binding request) starts one check per
leg, the relay's own binding request to that address, and only its authenticated answer from
there latches the leg. Until then media keeps going to the old address, which consented
already (a spoofed source must not pause it either), and what comes from the new one is
received without refreshing the leg's liveness. Before DTLS finished the first authenticated
request latches at once, as before: no media flows yet, and the handshake proves the path.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from bisect import bisect_left
from collections.abc import Callable
from time import perf_counter

from .consent import MoveCheck
from .handover import Handover, Unprotected
from .ice_lite import IceLiteResponder, parse_stun
from .leg import Address, Leg
from .rate_limiter import PerKeyWindow, address_key, is_loopback_key
from .stats import RelayStats

logger = logging.getLogger(__name__)


class UdpMux(asyncio.DatagramProtocol):
    def __init__(self, stats: RelayStats, stun_per_ip: int = 0, moves_per_ip: int = 0) -> None:
        self.stats = stats
        # STUN requests cost an HMAC check each, and anyone can send them; so do SRTP
        # packets from an unlatched address (up to ``handover.MAX_TRIES`` checks each).
        self.stun_limit = PerKeyWindow(stun_per_ip)
        self.move_limit = PerKeyWindow(moves_per_ip)
        self.responder: IceLiteResponder[Leg] = IceLiteResponder()
        self.handover = Handover(self.responder.owners)
        self.by_addr: dict[tuple[str, int], Leg] = {}
        # Moves awaiting the new address's consent: at most one per leg, and by address.
        self.moves: dict[Leg, MoveCheck] = {}
        self.moving_to: dict[Address, Leg] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        # The leg this socket was opened for, on an initiating leg's own socket: the only
        # one STUN responses are for.
        self.initiating: Leg | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.on_latch: Callable[[Leg], None] = lambda leg: None  # set by the transports
        self.fast_sendto: Callable[[bytes, tuple[str, int]], None] = self.sendto

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport does not subclass asyncio.DatagramTransport; same interface.
        self.transport = transport  # type: ignore[assignment]
        # The fast path calls the transport's own sendto: no Python frames in between.
        self.fast_sendto = transport.sendto  # type: ignore[attr-defined]
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:  # a test's fake transport: it drives ``poll_moves`` itself
            self._loop = None

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        """The slow paths' send (answers, RTCP, resends): nothing once the socket closed."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP unreachable from a peer that went away: consent expiry will remove it.
        logger.debug("UDP error: %s", exc)

    def forget(self, leg: Leg) -> None:
        self.responder.remove(leg.credentials)
        self._end_check(leg)
        if leg.addr is not None and self.by_addr.get(leg.addr) is leg:
            del self.by_addr[leg.addr]
        if self.initiating is leg:
            self.initiating = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        started = perf_counter()
        try:
            if not data:
                return
            b0 = data[0]
            leg = self.by_addr.get(addr)
            if 127 < b0 < 192:
                if leg is None:
                    self._on_moved_srtp(data, addr, started)
                    return
                leg.last_seen = started
                leg.on_srtp(data, started)
                # Histogram.observe written out: a method call per datagram costs more
                # than the bisect itself
                elapsed = perf_counter() - started
                hist = self.stats.forward_seconds
                hist.counts[bisect_left(hist.bounds, elapsed)] += 1
                hist.total += elapsed
            elif b0 < 4:
                self._on_stun(data, addr, started)
            elif 19 < b0 < 64:
                if leg is None:
                    self.stats.dropped["unknown_source"] += 1
                    return
                leg.last_seen = started
                leg.dtls.feed(data)
            else:
                self.stats.dropped["malformed"] += 1
        except Exception:
            # Bad input must never take the socket down for everyone else.
            self.stats.dropped["malformed"] += 1
            logger.debug("datagram from %s dropped", addr[0], exc_info=True)

    def _on_stun(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        if data[0] & 0x01:  # the class bit C1 (RFC 8489 section 5): a success or error response
            self._on_stun_response(data, addr, now)
            return
        # Loopback is exempt: it cannot be spoofed from outside, and tests and benchmarks
        # run hundreds of clients from 127.0.0.1.
        key = address_key(addr[0])  # an IPv6 source by its /64
        if not is_loopback_key(key) and not self.stun_limit.allow(key, now):
            self.stats.dropped["stun_rate_limited"] += 1
            return
        try:
            response, leg = self.responder.handle(data, addr)
        except ValueError:
            self.stats.dropped["malformed"] += 1
            return
        self.stats.stun_requests += 1
        if response is not None:
            self.sendto(response, addr)
        if leg is None:
            if response is not None:
                self.stats.dropped["unauthorized"] += 1
            return
        self._move(leg, addr, now, "stun")

    def _on_moved_srtp(self, data: bytes, addr: Address, now: float) -> None:
        """SRTP/SRTCP from an address no leg is latched to: a leg's peer that moved, if its
        keys authenticate the packet; then the leg moves there once the address consents,
        and the packet is its at once."""
        leg = self.moving_to.get(addr)
        if leg is not None:
            # Being checked: received (its own keys authenticate it in ``on_srtp``), but the
            # leg's liveness is its latched address's until the move is made.
            leg.on_srtp(data, now)
            return
        # Loopback is exempt, as for STUN: hundreds of test clients share 127.0.0.1.
        key = address_key(addr[0])
        if not is_loopback_key(key) and not self.move_limit.allow(key, now):
            self.stats.dropped["move_rate_limited"] += 1
            return
        found = self.handover.claim(data, now)
        if found is None:
            self.stats.dropped["unknown_source"] += 1
            return
        leg, plain = found
        self._move(leg, addr, now, "srtp")
        srtp = leg.rx_srtp
        leg.rx_srtp = Unprotected(plain)  # type: ignore[assignment]  # for this one call
        try:
            leg.on_srtp(data, now)
        finally:
            leg.rx_srtp = srtp

    def _on_stun_response(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        moving = self.moving_to.get(addr)
        if moving is not None:
            self._on_move_answer(moving, data, addr, now)
            return
        leg = self.initiating
        initiator = leg.initiator if leg is not None else None
        if leg is None or initiator is None or addr != initiator.remote_addr:
            self.stats.dropped["unknown_source"] += 1
            return
        try:
            answered = initiator.handle(data, addr, now)
        except ValueError:
            self.stats.dropped["malformed"] += 1
            return
        if not answered:  # unknown transaction, bad integrity, an error answer
            self.stats.dropped["unauthorized"] += 1
            return
        self._latch(leg, addr, now, "stun")

    def _move(self, leg: Leg, addr: Address, now: float, by: str) -> None:
        """``leg``'s peer is authenticated at ``addr``: latch it there, or, once the leg is
        connected and ``addr`` is new, ask ``addr`` for its consent first."""
        if leg.addr is None or leg.addr == addr or leg.tx_srtp is None:
            self._latch(leg, addr, now, by)
            return
        check = self.moves.get(leg)
        if check is not None:
            if check.addr != addr:  # one check at a time; this address may ask again later
                self.stats.moves_refused += 1
            return
        remote = leg.remote_credentials
        if remote is None or addr in self.moving_to:
            # Nothing to check with (a bridge's peer is another relay, which does not move),
            # or another leg is checking that address.
            self.stats.moves_refused += 1
            return
        if by == "stun":  # SRTP was counted against this limit before its keys were tried
            key = address_key(addr[0])
            if not is_loopback_key(key) and not self.move_limit.allow(key, now):
                self.stats.dropped["move_rate_limited"] += 1
                return
        check = MoveCheck.start(leg.credentials, remote, addr, by, now)
        self.moves[leg] = check
        self.moving_to[addr] = leg
        self.sendto(check.request, addr)
        self._arm(check.next_at)

    def _on_move_answer(self, leg: Leg, data: bytes, addr: Address, now: float) -> None:
        check = self.moves[leg]
        try:
            message = parse_stun(data)
        except ValueError:
            self.stats.dropped["malformed"] += 1
            return
        if not check.answered_by(message, addr):
            # A wrong or spoofed answer ends nothing: the peer's own may still come.
            self.stats.dropped["unauthorized"] += 1
            return
        self._end_check(leg)
        self._latch(leg, addr, now, check.via)

    def poll_moves(self, now: float) -> None:
        """Send the checks' retransmits that are due; drop those that gave up."""
        for leg, check in list(self.moves.items()):
            request, gave_up = check.poll(now)
            if request is not None:
                self.sendto(request, check.addr)
            elif gave_up:
                self._end_check(leg)
                self.stats.moves_refused += 1
                logger.debug(
                    "%s leg of %s not moved to %s: no consent",
                    leg.direction,
                    leg.participant.sid,
                    check.addr[0],
                )

    def _end_check(self, leg: Leg) -> None:
        check = self.moves.pop(leg, None)
        if check is not None and self.moving_to.get(check.addr) is leg:
            del self.moving_to[check.addr]

    def _arm(self, at: float) -> None:
        """Wake ``poll_moves`` at ``at`` (perf_counter time) at the latest."""
        if self._loop is None or at >= self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_later(max(at - perf_counter(), 0.0), self._on_timer)

    def _on_timer(self) -> None:
        self._timer, self._timer_at = None, float("inf")
        self.poll_moves(perf_counter())
        if self.moves:
            self._arm(min(check.next_at for check in self.moves.values()))

    def _latch(self, leg: Leg, addr: tuple[str, int], now: float, by: str) -> None:
        leg.last_seen = now
        if leg.addr != addr:
            if leg.addr is not None:
                self.stats.address_changes += 1
                # Once per move, never per packet; the log handler truncates the addresses.
                logger.info(
                    "%s leg of %s moved from %s:%d to %s:%d (%s)",
                    leg.direction,
                    leg.participant.sid,
                    leg.addr[0],
                    leg.addr[1],
                    addr[0],
                    addr[1],
                    by,
                )
                if self.by_addr.get(leg.addr) is leg:
                    del self.by_addr[leg.addr]
            leg.addr = addr
            self.by_addr[addr] = leg
            self.on_latch(leg)


def bind_socket(host: str, port: int, buffer_bytes: int = 0) -> socket.socket:
    """A non-blocking UDP socket bound to ``(host, port)`` (port 0: any free one), with
    receive and send buffers of ``buffer_bytes`` asked for (0: the kernel's default; the
    kernel may grant less, see ``net.core.rmem_max``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if buffer_bytes:
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                sock.setsockopt(socket.SOL_SOCKET, option, buffer_bytes)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


Attaching = asyncio.Future[tuple[asyncio.DatagramTransport, UdpMux]]


class LegSocket:
    """An initiating leg's own socket and mux: bound when the leg is made (so an error
    surfaces at once and the port is known), on the loop from the leg's check task on,
    closed with the leg. Until it is on the loop, sending on the mux does nothing."""

    def __init__(self, sock: socket.socket, stats: RelayStats) -> None:
        self.sock = sock
        self.addr: tuple[str, int] = sock.getsockname()[:2]
        self.mux = UdpMux(stats)
        self.endpoint: asyncio.BaseTransport | None = None
        self.closed = False
        self._attaching: Attaching | None = None

    async def attach(self) -> None:
        """Put the socket on the running loop. Cancelling the caller leaves this step to
        finish (a cancelled ``create_datagram_endpoint`` leaves uvloop holding the socket
        open); if the leg closed meanwhile, what it yields is closed at once."""
        if self._attaching is None:
            loop = asyncio.get_running_loop()
            self._attaching = asyncio.ensure_future(
                loop.create_datagram_endpoint(lambda: self.mux, sock=self.sock)
            )
            self._attaching.add_done_callback(self._attached)
        await asyncio.shield(self._attaching)

    def _attached(self, attaching: Attaching) -> None:
        if attaching.cancelled() or attaching.exception() is not None:
            self.sock.close()
            return
        self.endpoint = attaching.result()[0]
        if self.closed:
            self.endpoint.close()

    def close(self) -> None:
        self.closed = True
        if self.endpoint is not None:
            self.endpoint.close()  # and the socket with it
        elif self._attaching is None:
            self.sock.close()
        # else still attaching: ``_attached`` closes it
