"""Handover: a leg's peer that turns up at a new address (a NAT rebinding, Wi-Fi to mobile)
is found by its first authenticated SRTP or SRTCP packet from it, instead of at its next
consent check, which may be ~5 s away while its media is lost. Finding is not moving: a
connected leg moves there once the address answers the relay's own check (the mux, with
``relay.consent``), since anyone holding the leg's keys can put any source on a packet.

Only the mux's unlatched path comes here: a packet from an address no leg is latched to.
The SSRC in its clear header names candidate legs (a publisher's media SSRCs; the sender
SSRC of the RTCP a subscriber or viewer sent before: SRTCP encrypts everything after it, so
the media SSRCs its reports name cannot be read before the packet is authenticated). A leg
is chosen only if its SRTP session authenticates the packet, and libsrtp's replay check
refuses a packet seen before; a publisher's RTP must also be newer than the newest of its
stream. Anyone can send such packets: the mux limits them per source IP, at most
``MAX_TRIES`` legs are tried per packet, and the index is rebuilt at most every
``INDEX_REFRESH`` seconds.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable

import pylibsrtp

from .leg import Leg
from .publisher_leg import PublisherLeg

MAX_TRIES = 4  # legs tried per packet (SSRCs may collide: Chrome's receivers all send as 1)
INDEX_REFRESH = 0.25  # seconds: the index is rebuilt on a miss at most this often


class Unprotected:
    """Stands in for a leg's receiving SRTP session during one ``on_srtp`` call: the packet
    was unprotected already, by the trial that chose its leg, and unprotecting it twice
    would fail libsrtp's replay check."""

    __slots__ = ("plain",)

    def __init__(self, plain: bytes) -> None:
        self.plain = plain

    def unprotect(self, data: bytes) -> bytes:
        return self.plain

    def unprotect_rtcp(self, data: bytes) -> bytes:
        return self.plain


class Handover:
    def __init__(self, legs: Callable[[], Iterable[Leg]]) -> None:
        self._legs = legs  # every leg that may roam: those answering on the main socket
        self._by_ssrc: dict[int, list[Leg]] = {}
        self._indexed_at = float("-inf")

    def claim(self, data: bytes, now: float) -> tuple[Leg, bytes] | None:
        """The leg whose keys authenticate ``data`` (SRTP or SRTCP) and the packet
        unprotected; None when no candidate leg does."""
        if len(data) < 12:
            return None
        rtcp = 191 < data[1] < 224  # RFC 5761, as rtcp.is_rtcp
        ssrc = int.from_bytes(data[4:8] if rtcp else data[8:12], "big")
        candidates = self._by_ssrc.get(ssrc)
        if candidates is None and now - self._indexed_at >= INDEX_REFRESH:
            self._reindex(now)
            candidates = self._by_ssrc.get(ssrc)
        if not candidates:
            return None
        # A leg that moved has been silent at its old address since: try the quietest first.
        live = (leg for leg in candidates if not leg.closed and leg.rx_srtp is not None)
        for leg in heapq.nsmallest(MAX_TRIES, live, key=lambda leg: leg.last_seen):
            if not rtcp and not _newer(leg, ssrc, data):
                continue
            srtp = leg.rx_srtp
            assert srtp is not None
            try:
                plain = srtp.unprotect_rtcp(data) if rtcp else srtp.unprotect(data)
            except pylibsrtp.Error:  # not its keys, or a replay
                continue
            return leg, plain
        return None

    def _reindex(self, now: float) -> None:
        index: dict[int, list[Leg]] = {}
        for leg in self._legs():
            for ssrc in leg.peer_ssrcs():
                index.setdefault(ssrc, []).append(leg)
        self._by_ssrc = index
        self._indexed_at = now


def _newer(leg: Leg, ssrc: int, data: bytes) -> bool:
    """RTP from a new address must be newer than what the stream sent from the old one,
    where the leg tracks it (a publisher's streams with NACKs): libsrtp alone accepts any
    packet of its window not seen yet."""
    if not isinstance(leg, PublisherLeg):
        return True
    up = leg.by_ssrc.get(ssrc)
    nacks = up.nacks if up is not None else None
    if nacks is None or nacks.highest < 0:
        return True
    ahead = (int.from_bytes(data[2:4], "big") - nacks.highest) & 0xFFFF
    return 0 < ahead < 0x8000
