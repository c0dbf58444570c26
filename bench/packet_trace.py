"""Per-packet trace of one impaired viewer: what the proxy dropped, what the viewer asked
for again, what finally arrived, and which of it a freeze waited on.

Two taps feed it. The impairment proxy's ``tap`` sees every datagram toward the viewer with
its RTP header in the clear (SRTP encrypts only the payload) and says which it dropped. The
viewer's aiortc receiver is wrapped (``tap_receiver``) to see each packet after decryption,
with retransmissions in RTX (RFC 4588) unwrapped to their original sequence number, and each
NACK and PLI it sends. Sequence numbers are the relay's outgoing ones, as the viewer sees them.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCRtpReceiver

Key = tuple[int, int]  # (ssrc, sequence number)

# aiortc 1.16's receiver keeps its RTX map under this mangled name (RTX SSRC -> media SSRC)
_RTX_MAP = "_RTCRtpReceiver__rtx_ssrc"


def rtp_key(data: bytes) -> Key | None:
    """(ssrc, seq) of an SRTP packet from its clear header; None for RTCP, STUN, DTLS."""
    if len(data) < 12 or data[0] >> 6 != 2 or 192 <= data[1] <= 223:
        return None
    return int.from_bytes(data[8:12]), int.from_bytes(data[2:4])


@dataclass(slots=True)
class MissingPacket:
    """One packet a freeze waited on; times in seconds from the freeze's start."""

    ssrc: int
    seq: int
    dropped_at: list[float]  # each copy the proxy dropped (first send, then resends)
    nacked_at: list[float]
    arrived_at: float | None  # None: never arrived

    def describe(self) -> str:
        def ms(values: list[float]) -> str:
            return ",".join(f"{v * 1000:+.0f}" for v in values) or "-"

        arrived = "never" if self.arrived_at is None else f"{self.arrived_at * 1000:+.0f} ms"
        return (
            f"seq {self.seq}: dropped {ms(self.dropped_at)} ms, NACKed {ms(self.nacked_at)} ms, "
            f"arrived {arrived}"
        )


@dataclass(slots=True)
class Freeze:
    start: float  # seconds from the window's start
    seconds: float
    missing: list[MissingPacket]
    plis_at: list[float]  # PLIs the viewer sent during it, from its start


@dataclass(slots=True)
class PacketTrace:
    dropped: dict[Key, list[float]] = field(default_factory=dict)  # by the proxy, toward it
    passed: dict[Key, int] = field(default_factory=dict)  # copies the proxy let through
    arrived: dict[Key, list[float]] = field(default_factory=dict)  # at the viewer, decrypted
    nacked: dict[Key, list[float]] = field(default_factory=dict)
    nack_packets: int = 0
    plis: list[float] = field(default_factory=list)
    rtx_arrivals: int = 0  # packets that came as RTX (a separate stream)
    # RTX streams' SSRCs, learned from arrivals: the proxy cannot read which packet an RTX
    # copy carries (the original number is in the encrypted payload), so a dropped RTX copy
    # counts as a dropped resend, not as a packet of its own that never arrived.
    rtx_ssrcs: set[int] = field(default_factory=set)
    other_dropped: int = 0  # RTCP, STUN, DTLS the proxy dropped

    def proxy_tap(self, direction: str, data: bytes, dropped: bool) -> None:
        """For ``UdpImpairmentProxy(tap=...)``: only the relay-to-viewer direction counts."""
        if direction != "down":
            return
        key = rtp_key(data)
        if key is None:
            self.other_dropped += dropped
        elif dropped:
            self.dropped.setdefault(key, []).append(time.monotonic())
        else:
            self.passed[key] = self.passed.get(key, 0) + 1

    def on_arrival(self, key: Key, rtx_ssrc: int | None = None) -> None:
        self.arrived.setdefault(key, []).append(time.monotonic())
        if rtx_ssrc is not None:
            self.rtx_arrivals += 1
            self.rtx_ssrcs.add(rtx_ssrc)

    def _media_drops(self) -> dict[Key, list[float]]:
        return {k: d for k, d in self.dropped.items() if k[0] not in self.rtx_ssrcs}

    def on_nack(self, ssrc: int, lost: list[int]) -> None:
        now = time.monotonic()
        self.nack_packets += 1
        for seq in lost:
            self.nacked.setdefault((ssrc, seq), []).append(now)

    def counts(self) -> dict[str, int]:
        """Per-viewer totals: the proxy's drops, and what repair did about them."""
        media = self._media_drops()
        rtx_dropped = sum(len(d) for k, d in self.dropped.items() if k not in media)
        copies = {k: self.passed.get(k, 0) + len(self.dropped.get(k, [])) for k in self.passed}
        for key, drops in self.dropped.items():
            copies.setdefault(key, len(drops))
        return {
            "packets_dropped": sum(len(d) for d in self.dropped.values()),
            "packets_lost_first_time": len(media),
            # a copy of a number already sent: on the same stream (without RTX) the proxy
            # sees it; as RTX the viewer does (rtx_arrivals)
            "resends_seen_by_proxy": sum(c - 1 for c in copies.values() if c > 1),
            "resends_dropped": sum(len(d) - 1 for d in media.values() if len(d) > 1) + rtx_dropped,
            "repaired": sum(1 for k in media if k in self.arrived),
            "never_arrived": sum(1 for k in media if k not in self.arrived),
            "rtx_arrivals": self.rtx_arrivals,
            "nack_packets": self.nack_packets,
            "seqs_nacked": len(self.nacked),
            "nacks_of_a_seq_max": max((len(v) for v in self.nacked.values()), default=0),
            "plis": len(self.plis),
            "other_dropped": self.other_dropped,
        }

    def freezes(
        self, frames: list[float], start: float, end: float, longer_than: float = 0.2
    ) -> list[Freeze]:
        """Gaps between decoded frames in [start, end] over ``longer_than`` seconds, each
        with the packets it waited on: dropped from 2 s before it began to its end, not yet
        arrived when it began (a long freeze's cause is dropped at its start)."""
        inside = [start] + [t for t in frames if start <= t < end] + [end]
        found = []
        for a, b in itertools.pairwise(inside):
            if b - a <= longer_than:
                continue
            missing = []
            for key, drops in sorted(self._media_drops().items(), key=lambda item: item[1][0]):
                if not a - 2.0 <= drops[0] <= b:
                    continue
                later = [t for t in self.arrived.get(key, []) if t > drops[0]]
                if later and later[0] <= a:
                    continue  # repaired before the freeze began
                missing.append(
                    MissingPacket(
                        key[0],
                        key[1],
                        [d - a for d in drops],
                        [n - a for n in self.nacked.get(key, [])],
                        later[0] - a if later else None,
                    )
                )
            plis = [p - a for p in self.plis if a <= p <= b]
            found.append(Freeze(a - start, b - a, missing, plis))
        return found


def tap_receiver(receiver: RTCRtpReceiver, trace: PacketTrace) -> None:
    """Record what ``receiver`` gets and asks for. aiortc 1.16 private methods, wrapped on
    this one instance (the smoke test fails if they move): ``_handle_rtp_packet`` gets each
    decrypted packet, RTX still wrapped; ``_send_rtcp_nack`` and ``_send_rtcp_pli`` send the
    viewer's repair requests."""
    rtx_map: dict[int, int] = getattr(receiver, _RTX_MAP)  # filled in place once negotiated
    handle: Callable[[Any, int], Awaitable[None]] = receiver._handle_rtp_packet
    nack: Callable[[int, list[int]], Awaitable[None]] = receiver._send_rtcp_nack
    pli: Callable[[int], Awaitable[None]] = receiver._send_rtcp_pli

    async def handle_rtp(packet: Any, arrival_time_ms: int) -> None:
        original = rtx_map.get(packet.ssrc)
        if original is not None and len(packet.payload) >= 2:  # RTX: the payload opens with it
            trace.on_arrival((original, int.from_bytes(packet.payload[:2])), packet.ssrc)
        else:
            trace.on_arrival((packet.ssrc, packet.sequence_number))
        await handle(packet, arrival_time_ms)

    async def send_nack(media_ssrc: int, lost: list[int]) -> None:
        trace.on_nack(media_ssrc, lost)
        await nack(media_ssrc, lost)

    async def send_pli(media_ssrc: int) -> None:
        trace.plis.append(time.monotonic())
        await pli(media_ssrc)

    setattr(receiver, "_handle_rtp_packet", handle_rtp)  # noqa: B010 (mypy: method assign)
    setattr(receiver, "_send_rtcp_nack", send_nack)  # noqa: B010
    setattr(receiver, "_send_rtcp_pli", send_pli)  # noqa: B010
