"""What every leg that sends media down to a peer shares: its down tracks by SSRC, the
RTCP it receives from the peer (PLI/FIR, NACK, REMB, receiver reports) and the round trip
measured from its sender reports. It is the ``Sink`` its down tracks send into.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from . import rtcp
from .dtls_adapter import DtlsRole
from .leg import Leg, LegEnv
from .rate_limiter import TokenBucket
from .room import Participant
from .track import DownTrack

MAX_NACKED = 64  # sequence numbers honoured per NACK packet; the rest are ignored
MAX_PEER_SSRCS = 8  # RTCP sender SSRCs remembered (aiortc sends one per transceiver)


class DownLeg(Leg):
    def __init__(self, env: LegEnv, participant: Participant, role: DtlsRole, now: float) -> None:
        super().__init__(env, participant, role, now)
        self.by_ssrc: dict[int, DownTrack] = {}
        self._sr_sent: dict[int, float] = {}  # LSR (NTP middle 32 bits) -> when we sent it
        self.retransmit_budget = TokenBucket(rate=400.0, burst=200.0)  # NACK floods stop here
        self.fraction_lost: float | None = None  # the peer's last receiver report, worst stream
        # The sender SSRCs of the peer's RTCP, the one part of it SRTCP leaves readable:
        # they recognise the peer at a new address (``relay.handover``).
        self.rtcp_sources: set[int] = set()

    def accepted_ssrcs(self) -> set[int]:
        """The SSRCs the peer has agreed to receive."""
        raise NotImplementedError

    def refresh_active(self) -> list[DownTrack]:
        """Mark down tracks sendable once both DTLS is up and the peer accepted them."""
        newly: list[DownTrack] = []
        ready = self.tx_srtp is not None
        accepted = self.accepted_ssrcs()
        for ssrc, down in self.by_ssrc.items():
            active = ready and ssrc in accepted
            if active and not down.active:
                down.waiting_keyframe = True
                newly.append(down)
            down.active = active
        return newly

    def send_sender_report(self, report: bytes, lsr: int) -> None:
        """Send an SR and remember when, so the peer's RR gives us the round trip."""
        self._sr_sent[lsr] = time.monotonic()
        if len(self._sr_sent) > 16:
            del self._sr_sent[next(iter(self._sr_sent))]
        self.send_rtcp(report)

    def _on_receiver_report(self, packet: Any) -> None:
        now = time.monotonic()
        if packet.reports:
            self.fraction_lost = max(r.fraction_lost for r in packet.reports) / 256.0
        for report in packet.reports:
            down = self.by_ssrc.get(report.ssrc)
            selector = down.selector if down is not None else None  # simulcast only
            if selector is not None:
                selector.on_report(report.fraction_lost / 256.0, now)
            if (
                down is not None
                and not down.rtx_payload_type
                and down.unrepaired_loss(report.packets_lost, report.fraction_lost)
            ):
                # A hole that repair (resends and their copies) never filled: only a keyframe
                # gets that subscriber decoding again. Its last NACK is not sent again: the
                # packets it named may have arrived since, and a filler for one the receiver
                # still holds replaced it in aiortc's buffer (a broken frame). With RTX the
                # media stream's loss count never falls on repair: it says nothing here.
                self.repair.request_keyframe(down.up)
            sent = self._sr_sent.get(report.lsr)
            if sent is None or not report.lsr:
                continue
            rtt = (now - sent - report.dlsr / 65536.0) * 1000.0
            if rtt < 0:
                continue
            if selector is not None:
                selector.on_rtt(rtt, now)
            self.rtt_ms = rtt if self.rtt_ms is None else self.rtt_ms + 0.2 * (rtt - self.rtt_ms)

    def on_srtp(self, data: bytes, arrival: float) -> None:
        if self.rx_srtp is None:
            self.wire.stats.dropped["not_connected"] += 1
            return
        if not rtcp.is_rtcp(data):
            return  # peers send no media on a down leg
        packets = self.unprotect_rtcp(data)
        if packets is None:
            return
        if len(self.rtcp_sources) < MAX_PEER_SSRCS:
            self.rtcp_sources.add(int.from_bytes(data[4:8], "big"))
        stats = self.wire.stats
        for packet in packets:
            name = type(packet).__name__
            if name == "RtcpPsfbPacket":
                fmt = packet.fmt  # type: ignore[attr-defined]
                if fmt == rtcp.PSFB_PLI:
                    stats.pli_received += 1
                elif fmt == rtcp.PSFB_FIR:
                    stats.fir_received += 1
                else:
                    if fmt == rtcp.PSFB_APP:
                        self._on_remb(packet)
                    continue
                down = self.by_ssrc.get(packet.media_ssrc)  # type: ignore[attr-defined]
                if down is not None:
                    down.keyframe_requests += 1
                    self.repair.request_keyframe(down.up)
            elif name == "RtcpRtpfbPacket" and packet.fmt == rtcp.RTPFB_NACK:  # type: ignore[attr-defined]
                stats.nack_received += 1
                down = self.by_ssrc.get(packet.media_ssrc)  # type: ignore[attr-defined]
                if down is not None:  # NACKs for SSRCs we never sent are ignored
                    # aiortc adds the bitmask's offsets to the PID without wrapping (PID
                    # 65535 asks for 65536 and up): the numbers are 16-bit (RFC 4585), and
                    # unwrapped they made the filler's header fail to pack (found by fuzzing).
                    lost = packet.lost[:MAX_NACKED]  # type: ignore[attr-defined]
                    down.nacked = [seq & 0xFFFF for seq in lost]
                    down.nacks_received += 1
                    if down.selector is not None:
                        down.count_nacked(down.nacked)
                    self.repair.retransmit(down, down.nacked)
            elif name in ("RtcpRrPacket", "RtcpSrPacket"):
                self._on_receiver_report(packet)

    def peer_ssrcs(self) -> Iterable[int]:
        return self.rtcp_sources

    def _on_remb(self, packet: Any) -> None:
        """A peer's receive estimate caps the simulcast layers it is sent."""
        remb = rtcp.parse_remb(packet.fci)
        if remb is None:
            return
        bitrate, ssrcs = remb
        for ssrc in ssrcs:
            down = self.by_ssrc.get(ssrc)
            if down is not None and down.selector is not None:
                down.selector.on_remb(bitrate)
