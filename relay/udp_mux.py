"""The worker's one UDP socket, demultiplexed by remote address, then by first byte (RFC 7983):
STUN 0-3 as below, DTLS 20-63 to the leg's DTLS session, SRTP/SRTCP 128-191 to the leg's
fast path.

STUN requests go to the ICE-lite responder, which latches the sender's address to the leg
whose credentials they carry. STUN responses (success or error) answer checks that a leg
which initiates (relay to relay) sent: they go to the one leg checking toward the address they
came from, whose ``IceInitiator`` matches the transaction id and the remote password; its first
authenticated answer latches that address. Until then the address is in ``checking``, not in
``by_addr``, so no DTLS or SRTP from it reaches the leg. Anything else, or anything from an
unlatched address, is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from time import perf_counter

from .ice_lite import IceLiteResponder
from .leg import Leg
from .stats import RelayStats

logger = logging.getLogger(__name__)


class UdpMux(asyncio.DatagramProtocol):
    def __init__(self, stats: RelayStats) -> None:
        self.stats = stats
        self.responder: IceLiteResponder[Leg] = IceLiteResponder()
        self.by_addr: dict[tuple[str, int], Leg] = {}
        # Initiating legs by the one address they check toward: only responses from there
        # reach them (a second leg toward the same address could not be told apart).
        self.checking: dict[tuple[str, int], Leg] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self.on_latch: Callable[[Leg], None] = lambda leg: None  # set by the transports
        self.fast_sendto: Callable[[bytes, tuple[str, int]], None] = self.sendto

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport does not subclass asyncio.DatagramTransport; same interface.
        self.transport = transport  # type: ignore[assignment]
        # The fast path calls the transport's own sendto: no Python frames in between.
        self.fast_sendto = transport.sendto  # type: ignore[attr-defined]

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None:
            self.transport.sendto(data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP unreachable from a peer that went away: consent expiry will remove it.
        logger.debug("UDP error: %s", exc)

    def forget(self, leg: Leg) -> None:
        self.responder.remove(leg.credentials)
        if leg.addr is not None and self.by_addr.get(leg.addr) is leg:
            del self.by_addr[leg.addr]
        if leg.initiator is not None and self.checking.get(leg.initiator.remote_addr) is leg:
            del self.checking[leg.initiator.remote_addr]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        started = perf_counter()
        try:
            if not data:
                return
            b0 = data[0]
            leg = self.by_addr.get(addr)
            if 127 < b0 < 192:
                if leg is None:
                    self.stats.dropped["unknown_source"] += 1
                    return
                leg.last_seen = started
                leg.on_srtp(data, started)
                self.stats.forward_seconds.observe(perf_counter() - started)
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
        self._latch(leg, addr, now)

    def _on_stun_response(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        leg = self.checking.get(addr)
        if leg is None or leg.initiator is None:
            self.stats.dropped["unknown_source"] += 1
            return
        try:
            answered = leg.initiator.handle(data, addr, now)
        except ValueError:
            self.stats.dropped["malformed"] += 1
            return
        if not answered:  # unknown transaction, bad integrity, an error answer
            self.stats.dropped["unauthorized"] += 1
            return
        self._latch(leg, addr, now)

    def _latch(self, leg: Leg, addr: tuple[str, int], now: float) -> None:
        leg.last_seen = now
        if leg.addr != addr:
            if leg.addr is not None and self.by_addr.get(leg.addr) is leg:
                del self.by_addr[leg.addr]
            leg.addr = addr
            self.by_addr[addr] = leg
            self.on_latch(leg)
