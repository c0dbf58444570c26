"""The publisher leg: media flows up from a peer, and the relay answers its offers.

Its ``on_srtp`` is the start of the fast path: unprotect, bind the stream, note gaps for
NACKs upstream, then ``forward_rtp`` to every subscriber of the track, out of the worker's
main socket (``fanout``) even when the leg itself talks to its peer on a socket of its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import pylibsrtp

from . import rtcp
from .dtls_adapter import DtlsRole
from .forwarder import forward_rtp
from .leg import Leg, LegEnv
from .room import Participant
from .rtp_header import SEQ_TS_SSRC, read_extension
from .track import UpTrack
from .twcc import TwccRecorder

if TYPE_CHECKING:
    from aiortc.rtp import RtcpSrPacket


class PublisherLeg(Leg):
    """Media flows up from the participant; the relay answers its offers."""

    direction = "publisher"

    def __init__(self, env: LegEnv, participant: Participant, role: DtlsRole, now: float) -> None:
        super().__init__(env, participant, role, now)
        # The tracks that come up this leg: its owner's, or every stand-in a bridge feeds.
        self.tracks: dict[str, UpTrack] = {}
        self.by_ssrc: dict[int, UpTrack] = {}
        self.unbound: list[UpTrack] = []  # tracks whose offer carried no a=ssrc
        self.twcc_id = 0  # header extension id of transport-wide sequence numbers; 0: none
        self.rid_id = 0  # header extension ids naming simulcast layers; 0: none
        self.mid_id = 0
        self.by_rid: dict[tuple[str, str], UpTrack] = {}  # (mid, rid) -> layer, until bound
        self.twcc = TwccRecorder(sender_ssrc=self.rtcp_ssrc)

    def add_track(self, track: UpTrack) -> None:
        self.tracks[track.sid] = track
        if track.layers:
            for layer in track.layers:
                if layer.ssrc is not None:  # known up front (a bridge): no rid to read
                    self.by_ssrc[layer.ssrc] = layer
                else:
                    self.by_rid[(track.mid, layer.rid)] = layer
        elif track.ssrc is None:
            self.unbound.append(track)
        else:
            self.by_ssrc[track.ssrc] = track

    def remove_track(self, track: UpTrack) -> None:
        self.tracks.pop(track.sid, None)
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
        # The receive half of the fast path. The common case of each piece of bookkeeping
        # is written out here (the next packet in order: no gap to NACK, the newest yet)
        # and the rest left to the methods it would call: a Python call per piece per
        # packet cost more than the piece (bench.receive_path measures each).
        stats = self.wire.stats
        rx_srtp = self.rx_srtp
        if rx_srtp is None:
            stats.dropped["not_connected"] += 1
            return
        if len(data) > 1 and 191 < data[1] < 224:  # RTCP (RFC 5761), as rtcp.is_rtcp
            self._on_rtcp(data)
            return
        try:
            rtp = rx_srtp.unprotect(data)
        except pylibsrtp.Error:
            stats.dropped["srtp_error"] += 1
            return
        if len(rtp) < 12:
            stats.dropped["malformed"] += 1
            return
        if self.twcc_id and rtp[0] & 0x10:
            # Read here: keeping the packet for the tick to read cost more in all
            # (bench.receive_path), and the feedback is built from the numbers either way.
            value = read_extension(rtp, self.twcc_id)
            if value is not None and len(value) >= 2:
                self.twcc.record((value[0] << 8) | value[1], int(arrival * 1_000_000))
        stats.rtp_packets_in += 1
        stats.rtp_bytes_in += len(data)
        seq, timestamp, ssrc = SEQ_TS_SSRC.unpack_from(rtp, 2)
        up = self.by_ssrc.get(ssrc)
        if up is None:
            up = self._bind_layer(rtp, ssrc) if self.rid_id else None
            up = up or self._bind(ssrc, rtp[1] & 0x7F)
            if up is None:
                stats.dropped["unknown_ssrc"] += 1
                return
        # RFC 3550 A.8 interarrival jitter, as ReceiveStats.update_jitter
        received = up.stats
        transit = arrival * up.codec.clock_rate - timestamp
        last_transit = received.last_transit
        if last_transit is not None:
            received.jitter += (abs(transit - last_transit) - received.jitter) / 16.0
        received.last_transit = transit
        nacks = up.nacks
        if nacks is not None:
            if seq == (nacks.highest + 1) & 0xFFFF and nacks.highest >= 0:
                nacks.highest = seq  # the next one: nothing went missing
            else:
                gap = nacks.received(seq, arrival)
                if gap:
                    self.send_nack(up, gap)
                if nacks.hopeless:
                    nacks.hopeless = False
                    self.repair.upstream_gave_up(up)
                    self.repair.request_keyframe(up)
        forward_rtp(up, rtp, seq, timestamp, self.fanout.fast_sendto, stats, arrival)

    def peer_ssrcs(self) -> Iterable[int]:
        return self.by_ssrc.keys()  # its media's, which its sender reports carry too

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
            self.wire.stats.nack_sent += 1

    def send_due_nacks(self, now: float) -> None:
        """Repeat NACKs for packets still missing; hopeless gaps become fillers for the
        subscribers that asked for them, and a keyframe request."""
        for up in self.by_ssrc.values():
            nacks = up.nacks
            if nacks is None or not nacks.missing:
                continue
            again = nacks.due(now)
            if again:
                self.send_nack(up, again)
            if nacks.hopeless:
                nacks.hopeless = False
                self.repair.upstream_gave_up(up)
                self.repair.request_keyframe(up)

    def send_twcc_feedback(self) -> None:
        if self.twcc_id and self.twcc.pending:
            if not self.twcc.media_ssrc and self.by_ssrc:
                self.twcc.media_ssrc = next(iter(self.by_ssrc))
            self.send_rtcp(self.twcc.feedback())
            self.wire.stats.twcc_feedback_sent += 1

    def send_receiver_reports(self, now: float) -> None:
        self.send_rtcp(rtcp.receiver_report(self.rtcp_ssrc, list(self.by_ssrc.values()), now))
