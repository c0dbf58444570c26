"""The fast path: one decrypted RTP packet from a publisher out to every subscriber of its track.

Synchronous, no ``await``, no logging, no object per packet beyond the output buffers:
read the header by offset, then per subscriber rewrite SSRC / payload type / sequence number /
timestamp, SRTP-protect with that subscriber's session and ``sendto``.
"""

from __future__ import annotations

from collections.abc import Callable

from .rtp_header import HEADER, SEQ_TS_SSRC, is_keyframe_start, payload_offset
from .stats import RelayStats
from .track import DownTrack, UpTrack

SendTo = Callable[[bytes, tuple[str, int]], None]


def forward_rtp(
    up: UpTrack,
    rtp: bytes,
    seq: int,
    timestamp: int,
    sendto: SendTo,
    stats: RelayStats,
    now: float,
) -> None:
    offset = payload_offset(rtp)
    if offset < 0:
        stats.dropped["malformed"] += 1
        return
    if up.cache is not None:
        up.cache.put(seq, rtp, now)
    b0 = rtp[0]
    payload = rtp[offset:]
    up.stats.update(seq)
    up.packets += 1
    up.octets += len(payload)
    if up.muted:
        stats.dropped["muted"] += 1
        return
    downs = up.down_tracks
    if not downs:
        return
    first = 0x80 | (b0 & 0x2F)  # version 2, keep padding and CSRC count, drop extensions
    marker = rtp[1] & 0x80
    csrc_end = 12 + 4 * (b0 & 0x0F)
    if csrc_end > 12:
        payload = rtp[12:csrc_end] + payload
    mime = up.codec.mime
    sent = 0
    sent_bytes = 0
    payload_len = len(payload)
    pack = HEADER.pack
    for down in downs:
        if not down.active:
            continue
        if down.waiting_keyframe:
            if not is_keyframe_start(mime, rtp[offset:]):
                continue
            down.start_at(seq, timestamp)
        out_seq = (seq + down.seq_offset) & 0xFFFF
        out_ts = (timestamp + down.ts_offset) & 0xFFFFFFFF
        sink = down.sink
        try:
            packet = sink.tx_srtp.protect(
                pack(first, marker | down.payload_type, out_seq, out_ts, down.ssrc) + payload
            )
        except Exception:
            stats.dropped["send_error"] += 1
            continue
        sendto(packet, sink.addr)
        down.last_seq = out_seq
        down.last_ts = out_ts
        down.packets_sent += 1
        down.octets_sent += payload_len
        sent += 1
        sent_bytes += len(packet)
    stats.rtp_packets_out += sent
    stats.rtp_bytes_out += sent_bytes


def resend(down: DownTrack, rtp: bytes, sendto: SendTo, stats: RelayStats) -> bool:
    """Send one cached packet again to one subscriber, in its numbering (slow path: NACKs).

    The same rewrite as ``forward_rtp``, kept apart so the per-packet loop stays inline.
    """
    offset = payload_offset(rtp)
    sink = down.sink
    if offset < 0 or not down.started or sink.tx_srtp is None:
        return False
    seq, timestamp, _ = SEQ_TS_SSRC.unpack_from(rtp, 2)
    b0 = rtp[0]
    csrc_end = 12 + 4 * (b0 & 0x0F)
    header = HEADER.pack(
        0x80 | (b0 & 0x2F),
        (rtp[1] & 0x80) | down.payload_type,
        (seq + down.seq_offset) & 0xFFFF,
        (timestamp + down.ts_offset) & 0xFFFFFFFF,
        down.ssrc,
    )
    try:
        packet = sink.tx_srtp.protect(header + rtp[12:csrc_end] + rtp[offset:])
    except Exception:
        stats.dropped["send_error"] += 1
        return False
    sendto(packet, sink.addr)
    stats.retransmitted_packets += 1
    return True


def read_seq_ts_ssrc(rtp: bytes) -> tuple[int, int, int]:
    seq, ts, ssrc = SEQ_TS_SSRC.unpack_from(rtp, 2)
    return seq, ts, ssrc
