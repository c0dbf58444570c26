"""Peer legs: one ICE-lite + DTLS-SRTP transport each, named for the direction media flows.

A participant has a subscriber leg (the relay offers: data channels and the tracks it
receives) and, once it publishes, a publisher leg (the participant offers its tracks).
Both share the worker's UDP socket; the mux hands each its datagrams.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

import pylibsrtp

from . import rtcp
from .dtls_adapter import DtlsRole, DtlsSession
from .forwarder import forward_rtp, read_seq_ts_ssrc
from .ice_lite import IceCredentials
from .rate_limiter import TokenBucket
from .room import Participant
from .rtp_header import read_extension
from .sdp_negotiation import SubscriberSlot, ViewerSlot
from .srtp_fast import FastSrtp
from .stats import RelayStats
from .track import DownTrack, UpTrack, random_ssrc
from .twcc import TwccRecorder

if TYPE_CHECKING:
    from aiortc.rtp import RtcpSrPacket

logger = logging.getLogger(__name__)
MAX_NACKED = 64  # sequence numbers honoured per NACK packet; the rest are ignored


class LegHost(Protocol):
    """What a leg needs from its worker."""

    stats: RelayStats
    mux: Any  # the UDP mux; the fast path uses its ``fast_sendto``

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None: ...

    def request_keyframe(self, up: UpTrack) -> None: ...

    def retransmit(self, down: DownTrack, lost: list[int]) -> None: ...

    def data_received(
        self, participant: Participant, lossy: bool, message: bytes | str
    ) -> None: ...

    def leg_failed(self, leg: Leg) -> None: ...


class Leg:
    direction = "none"

    def __init__(
        self, host: LegHost, participant: Participant, certificate: Any, role: DtlsRole, now: float
    ) -> None:
        self.host = host
        self.participant = participant
        self.credentials = IceCredentials.generate()
        self.dtls = DtlsSession(certificate, self._send_dtls, role)
        self.addr: tuple[str, int] | None = None
        self.last_seen = now
        self.remote_fingerprints: list[tuple[str, str]] = []
        self.dtls_started = False
        self.closed = False
        self.tx_srtp: Any = None
        self.rx_srtp: Any = None
        self.rtcp_ssrc = random_ssrc()
        self.rtt_ms: float | None = None  # measured from RTCP (subscriber legs)

    def _send_dtls(self, data: bytes) -> None:
        if self.addr is not None:
            self.host.sendto(data, self.addr)

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
            self.host.sendto(self.tx_srtp.protect_rtcp(data), self.addr)
        except pylibsrtp.Error:
            self.host.stats.dropped["send_error"] += 1
            return
        self.host.stats.rtcp_packets_out += 1

    def unprotect_rtcp(self, data: bytes) -> list[object] | None:
        try:
            plain = self.rx_srtp.unprotect_rtcp(data)
            packets = rtcp.parse(plain)
        except (pylibsrtp.Error, ValueError):
            self.host.stats.dropped["srtp_error"] += 1
            return None
        except Exception:  # aiortc's parser can raise more than ValueError on garbage
            self.host.stats.dropped["malformed"] += 1
            return None
        self.host.stats.rtcp_packets_in += 1
        return packets

    def on_srtp(self, data: bytes, arrival: float) -> None:
        raise NotImplementedError


class PublisherLeg(Leg):
    """Media flows up from the participant; the relay answers its offers."""

    direction = "publisher"

    def __init__(
        self, host: LegHost, participant: Participant, certificate: Any, role: DtlsRole, now: float
    ) -> None:
        super().__init__(host, participant, certificate, role, now)
        self.by_ssrc: dict[int, UpTrack] = {}
        self.unbound: list[UpTrack] = []  # tracks whose offer carried no a=ssrc
        self.twcc_id = 0  # header extension id of transport-wide sequence numbers; 0: none
        self.rid_id = 0  # header extension ids naming simulcast layers; 0: none
        self.mid_id = 0
        self.by_rid: dict[tuple[str, str], UpTrack] = {}  # (mid, rid) -> layer, until bound
        self.twcc = TwccRecorder(sender_ssrc=self.rtcp_ssrc)

    def add_track(self, track: UpTrack) -> None:
        if track.layers:
            for layer in track.layers:
                self.by_rid[(track.mid, layer.rid)] = layer
        elif track.ssrc is None:
            self.unbound.append(track)
        else:
            self.by_ssrc[track.ssrc] = track

    def remove_track(self, track: UpTrack) -> None:
        for stream in track.streams():
            if stream.ssrc is not None and self.by_ssrc.get(stream.ssrc) is stream:
                del self.by_ssrc[stream.ssrc]
            self.by_rid.pop((track.mid, stream.rid), None)
        if track in self.unbound:
            self.unbound.remove(track)

    def _bind_layer(self, rtp: bytes, ssrc: int) -> UpTrack | None:
        """First packet of a simulcast layer: its rid (and mid) extension names it."""
        rid = read_extension(rtp, self.rid_id)
        if not rid:
            return None
        mid = read_extension(rtp, self.mid_id) if self.mid_id else None
        name = rid.decode("ascii", "replace")
        layer = None
        if mid is not None:
            layer = self.by_rid.get((mid.decode("ascii", "replace"), name))
        else:  # without the mid extension a rid must be unique on the leg
            matches = [t for (_, r), t in self.by_rid.items() if r == name]
            layer = matches[0] if len(matches) == 1 else None
        if layer is None or layer.ssrc is not None:
            return None
        layer.ssrc = ssrc
        self.by_ssrc[ssrc] = layer
        return layer

    def _bind(self, ssrc: int, payload_type: int) -> UpTrack | None:
        """First packet of an SSRC the offer did not name: bind it by payload type."""
        for track in self.unbound:
            if track.codec.payload_type == payload_type:
                self.unbound.remove(track)
                track.ssrc = ssrc
                self.by_ssrc[ssrc] = track
                return track
        return None

    def on_srtp(self, data: bytes, arrival: float) -> None:
        stats = self.host.stats
        if self.rx_srtp is None:
            stats.dropped["not_connected"] += 1
            return
        if rtcp.is_rtcp(data):
            self._on_rtcp(data)
            return
        try:
            rtp = self.rx_srtp.unprotect(data)
        except pylibsrtp.Error:
            stats.dropped["srtp_error"] += 1
            return
        if len(rtp) < 12:
            stats.dropped["malformed"] += 1
            return
        if self.twcc_id:
            value = read_extension(rtp, self.twcc_id)
            if value is not None and len(value) >= 2:
                self.twcc.record((value[0] << 8) | value[1], int(arrival * 1_000_000))
        stats.rtp_packets_in += 1
        stats.rtp_bytes_in += len(data)
        seq, timestamp, ssrc = read_seq_ts_ssrc(rtp)
        up = self.by_ssrc.get(ssrc)
        if up is None:
            up = self._bind_layer(rtp, ssrc) if self.rid_id else None
            up = up or self._bind(ssrc, rtp[1] & 0x7F)
            if up is None:
                stats.dropped["unknown_ssrc"] += 1
                return
        up.stats.update_jitter(arrival * up.codec.clock_rate, timestamp)
        nacks = up.nacks
        if nacks is not None:
            gap = nacks.received(seq, arrival)
            if gap:
                self.send_nack(up, gap)
            if nacks.hopeless:
                nacks.hopeless = False
                self.host.request_keyframe(up)
        forward_rtp(up, rtp, seq, timestamp, self.host.mux.fast_sendto, stats, arrival)

    def _on_rtcp(self, data: bytes) -> None:
        packets = self.unprotect_rtcp(data)
        if packets is None:
            return
        for packet in packets:
            if type(packet).__name__ == "RtcpSrPacket":
                self._on_sender_report(packet)  # type: ignore[arg-type]

    def _on_sender_report(self, sr: RtcpSrPacket) -> None:
        up = self.by_ssrc.get(sr.ssrc)
        if up is None:
            return
        up.stats.last_sr_mid32 = rtcp.ntp_middle32(sr.sender_info.ntp_timestamp)
        up.stats.last_sr_at = time.monotonic()
        for down in up.down_tracks:
            if down.active and down.started:
                down.sink.send_sender_report(
                    rtcp.sender_report_for(down, sr), up.stats.last_sr_mid32
                )

    def send_nack(self, up: UpTrack, lost: list[int]) -> None:
        if up.ssrc is not None:
            self.send_rtcp(rtcp.nack(self.rtcp_ssrc, up.ssrc, lost))
            self.host.stats.nack_sent += 1

    def send_due_nacks(self, now: float) -> None:
        """Repeat NACKs for packets still missing; hopeless gaps become a keyframe request."""
        for up in self.by_ssrc.values():
            nacks = up.nacks
            if nacks is None or not nacks.missing:
                continue
            again = nacks.due(now)
            if again:
                self.send_nack(up, again)
            if nacks.hopeless:
                nacks.hopeless = False
                self.host.request_keyframe(up)

    def send_twcc_feedback(self) -> None:
        if self.twcc_id and self.twcc.pending:
            if not self.twcc.media_ssrc and self.by_ssrc:
                self.twcc.media_ssrc = next(iter(self.by_ssrc))
            self.send_rtcp(self.twcc.feedback())
            self.host.stats.twcc_feedback_sent += 1

    def send_receiver_reports(self, now: float) -> None:
        self.send_rtcp(rtcp.receiver_report(self.rtcp_ssrc, list(self.by_ssrc.values()), now))


class SubscriberLeg(Leg):
    """Media flows down to the participant; the relay offers, and carries data channels."""

    direction = "subscriber"

    def __init__(
        self, host: LegHost, participant: Participant, certificate: Any, role: DtlsRole, now: float
    ) -> None:
        super().__init__(host, participant, certificate, role, now)
        self.slots: list[SubscriberSlot] = []
        self.by_ssrc: dict[int, DownTrack] = {}
        self.offer_version = 0
        self.session_id = random_ssrc()
        self.offer_pending = False  # an offer is out and its answer not back yet
        self.needs_offer = True  # state changed since the last offer
        self.offered_ssrcs: set[int] = set()
        self.accepted_ssrcs: set[int] = set()
        self.remote_sctp_port = 5000
        self._sr_sent: dict[int, float] = {}  # LSR (NTP middle 32 bits) -> when we sent it
        self.retransmit_budget = TokenBucket(rate=400.0, burst=200.0)  # NACK floods stop here
        self.has_data = True  # False for WHEP viewers: no SCTP
        self.viewer_slots: list[ViewerSlot] = []  # WHEP: the m-lines the viewer offered
        self.viewer_history: dict[int, DownTrack] = {}  # WHEP: last source per m-line SSRC
        self.reliable: Any = None
        self.lossy: Any = None

    def next_mid(self) -> str:
        return str(len(self.slots))

    def refresh_active(self) -> list[DownTrack]:
        """Mark down tracks sendable once both DTLS is up and the subscriber accepted them."""
        newly: list[DownTrack] = []
        ready = self.tx_srtp is not None
        for ssrc, down in self.by_ssrc.items():
            active = ready and ssrc in self.accepted_ssrcs
            if active and not down.active:
                down.waiting_keyframe = True
                newly.append(down)
            down.active = active
        return newly

    def send_sender_report(self, report: bytes, lsr: int) -> None:
        """Send an SR and remember when, so the subscriber's RR gives us the round trip."""
        self._sr_sent[lsr] = time.monotonic()
        if len(self._sr_sent) > 16:
            del self._sr_sent[next(iter(self._sr_sent))]
        self.send_rtcp(report)

    def _on_receiver_report(self, packet: Any) -> None:
        now = time.monotonic()
        for report in packet.reports:
            down = self.by_ssrc.get(report.ssrc)
            selector = down.selector if down is not None else None  # simulcast only
            if selector is not None:
                selector.on_report(report.fraction_lost / 256.0, now)
            if down is not None and down.unrepaired_loss(report.packets_lost, report.fraction_lost):
                # Some receivers NACK only on new gaps: send what they last asked for once
                # more (a hole stalls their jitter buffer), and a keyframe for the rest.
                self.host.retransmit(down, down.nacked)
                self.host.request_keyframe(down.up)
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
            self.host.stats.dropped["not_connected"] += 1
            return
        if not rtcp.is_rtcp(data):
            return  # subscribers send no media to the relay
        packets = self.unprotect_rtcp(data)
        if packets is None:
            return
        stats = self.host.stats
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
                    self.host.request_keyframe(down.up)
            elif name == "RtcpRtpfbPacket" and packet.fmt == rtcp.RTPFB_NACK:  # type: ignore[attr-defined]
                stats.nack_received += 1
                down = self.by_ssrc.get(packet.media_ssrc)  # type: ignore[attr-defined]
                if down is not None:  # NACKs for SSRCs we never sent are ignored
                    down.nacked = packet.lost[:MAX_NACKED]  # type: ignore[attr-defined]
                    self.host.retransmit(down, down.nacked)
            elif name in ("RtcpRrPacket", "RtcpSrPacket"):
                self._on_receiver_report(packet)

    def _on_remb(self, packet: Any) -> None:
        """A subscriber's receive estimate caps the simulcast layers it is sent."""
        remb = rtcp.parse_remb(packet.fci)
        if remb is None:
            return
        bitrate, ssrcs = remb
        for ssrc in ssrcs:
            down = self.by_ssrc.get(ssrc)
            if down is not None and down.selector is not None:
                down.selector.on_remb(bitrate)

    def send_data(self, lossy: bool, message: str) -> bool:
        channel = self.lossy if lossy else self.reliable
        if channel is None or channel.readyState != "open":
            return False
        channel.send(message)
        return True
