"""RTCP the relay writes itself: receiver reports and keyframe requests to publishers,
sender reports to subscribers. Built with aiortc's RTCP classes (slow path only)."""

from __future__ import annotations

import struct

from aiortc.rtp import (
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    unpack_remb_fci,
)

from .track import DownTrack, UpTrack

PSFB_PLI = 1
PSFB_FIR = 4
PSFB_APP = 15  # application layer feedback: REMB
RTPFB_NACK = 1


def is_rtcp(data: bytes) -> bool:
    """RFC 5761: RTCP packet types 192-223 share the port with RTP."""
    return len(data) > 1 and 191 < data[1] < 224


def parse(data: bytes) -> list[object]:
    """Parse a compound packet; raises ValueError on garbage."""
    return list(RtcpPacket.parse(data))


def parse_remb(fci: bytes) -> tuple[int, list[int]] | None:
    """(bitrate bit/s, media SSRCs) of a REMB, or None for other application feedback."""
    try:
        return unpack_remb_fci(fci)
    except (ValueError, IndexError, struct.error):
        return None


def nack(sender_ssrc: int, media_ssrc: int, lost: list[int]) -> bytes:
    packet = RtcpRtpfbPacket(fmt=RTPFB_NACK, ssrc=sender_ssrc, media_ssrc=media_ssrc)
    packet.lost = sorted(lost)
    return bytes(packet)


def pli(sender_ssrc: int, media_ssrc: int) -> bytes:
    return bytes(RtcpPsfbPacket(fmt=PSFB_PLI, ssrc=sender_ssrc, media_ssrc=media_ssrc))


def receiver_report(sender_ssrc: int, tracks: list[UpTrack], now: float) -> bytes:
    reports = []
    for track in tracks:
        stats = track.stats
        if track.ssrc is None or stats.base_seq < 0:
            continue
        fraction, lost = stats.interval_loss()
        dlsr = 0
        if stats.last_sr_at:
            dlsr = int((now - stats.last_sr_at) * 65536) & 0xFFFFFFFF
        reports.append(
            RtcpReceiverInfo(
                ssrc=track.ssrc,
                fraction_lost=fraction,
                packets_lost=lost,
                highest_sequence=stats.extended_max & 0xFFFFFFFF,
                jitter=int(stats.jitter) & 0xFFFFFFFF,
                lsr=stats.last_sr_mid32,
                dlsr=dlsr,
            )
        )
    if not reports:
        return b""
    return bytes(RtcpRrPacket(ssrc=sender_ssrc, reports=reports))


def sender_report_for(down: DownTrack, sr: RtcpSrPacket) -> bytes:
    """The publisher's SR rewritten into a subscriber's numbering: same NTP/RTP pairing
    (what browsers use for lip sync), this leg's SSRC, timestamp offset and counts."""
    info = sr.sender_info
    return bytes(
        RtcpSrPacket(
            ssrc=down.ssrc,
            sender_info=RtcpSenderInfo(
                ntp_timestamp=info.ntp_timestamp,
                rtp_timestamp=(info.rtp_timestamp + down.ts_offset) & 0xFFFFFFFF,
                packet_count=down.packets_sent & 0xFFFFFFFF,
                octet_count=down.octets_sent & 0xFFFFFFFF,
            ),
        )
    )


def ntp_middle32(ntp_timestamp: int) -> int:
    return (ntp_timestamp >> 16) & 0xFFFFFFFF
