"""The fast path: one decrypted RTP packet from a publisher out to every subscriber of its track.

Synchronous, no ``await``, no logging, no object per packet beyond the output buffers:
read the header by offset, then per subscriber rewrite SSRC / payload type / sequence number /
timestamp, SRTP-protect with that subscriber's session and ``sendto``. Header extensions are
dropped, except an audio packet's level: counted for the room's active speakers and, toward
a bridge, written again so the node across counts it too.

A packet older than the newest (a publisher's retransmission) takes a slower loop: each
subscriber numbers it with the offsets of the span it falls in (``DownTrack.late_out_seq``),
since padding dropped meanwhile has moved the current offset on.

Audio in RED (RFC 2198) takes a loop of its own (``_forward_red``), so other packets pay one
comparison for it: a subscriber that takes RED gets the payload as is, the others its
primary block alone.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

from .audio_level import BRIDGE_LEVEL_BLOCKS, VOICED_DBOV, read_audio_level
from .red import primary_start, retag
from .rtp_header import HEADER, SEQ_TS_SSRC, is_keyframe_start, payload_offset
from .stats import RelayStats
from .track import DownTrack, Sink, UpTrack

OSN = struct.Struct("!H")  # an RTX payload's original sequence number (RFC 4588 section 4)

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
    # What every received packet costs is written out, not called: the payload offset
    # (payload_offset), the cache slot (PacketCache.put) and, for the next packet in order,
    # the receive statistics (ReceiveStats.update); the payload is copied only when there
    # is someone to send it to.
    b0 = rtp[0]
    length = len(rtp)
    offset = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:  # a header extension: its length is in its first word
        if length < offset + 4:
            stats.dropped["malformed"] += 1
            return
        offset += 4 + 4 * ((rtp[offset + 2] << 8) | rtp[offset + 3])
    if offset > length:
        stats.dropped["malformed"] += 1
        return
    cache = up.cache
    if cache is not None:
        i = seq & cache.mask
        cache.seqs[i] = seq
        cache.packets[i] = rtp
        cache.times[i] = now
    received = up.stats
    if seq == (received.max_seq + 1) & 0xFFFF and received.base_seq >= 0:
        received.received += 1
        if not seq:
            received.cycles += 0x10000
        received.max_seq = seq
        newest = True
    else:
        newest = received.update(seq)
    size = length - offset
    up.packets += 1
    up.octets += size
    if up.muted:
        stats.dropped["muted"] += 1
        return
    primary = 0
    # -1 (no RED) never matches; padding alone (Chromium probes under RED's number too) is
    # no RED payload: dropped below as any padding, or forwarded late to close its hole
    if rtp[1] & 0x7F == up.red_payload_type and not (b0 & 0x20 and size <= rtp[-1]):
        primary = primary_start(rtp, offset)
        if primary < 0:
            stats.dropped["red_malformed"] += 1
            return
    if not newest:
        _forward_late(up, rtp, offset, seq, timestamp, sendto, stats, primary)
        return
    level = up.level
    dbov = -1
    if level is not None:  # an audio track whose publisher sends its level: one byte
        dbov = read_audio_level(rtp, level.ext_id)
        if 0 <= dbov <= VOICED_DBOV:  # counted for the tick; quieter ones only by up.packets
            level.voiced += 1
            if dbov < level.loudest:
                level.loudest = dbov
    if b0 & 0x20 and (not size or size <= rtp[-1]):
        # Padding only: a probe of the publisher's link, not media. Forwarded, it can end
        # up a frame of its own, and an empty frame flushes FFmpeg-based decoders for good.
        for down in up.down_tracks:
            if down.started:
                down.skip_padding(seq)
        stats.dropped["padding"] += 1
        return
    if (up.pending or up.keyframes.pending) and is_keyframe_start(up.codec.mime, rtp[offset:]):
        up.keyframes.arrived()  # a deferred keyframe request is answered: not sent
        for waiting in up.pending:  # simulcast layer switches complete at this keyframe
            fill_left_behind(waiting, sendto, stats)
            waiting.move_to(up)
        stats.layer_switches += len(up.pending)
        up.pending = []
    downs = up.down_tracks
    if not downs:
        return
    if primary:
        _forward_red(up, rtp, offset, primary, seq, timestamp, dbov, sendto, stats)
        return
    payload = rtp[offset:]
    first = 0x80 | (b0 & 0x2F)  # version 2, keep padding and CSRC count, drop extensions
    marker = rtp[1] & 0x80
    csrc_end = 12 + 4 * (b0 & 0x0F)
    if csrc_end > 12:
        payload = rtp[12:csrc_end] + payload
    # the extension block goes after the CSRCs: a mixer's packets (rare) cross without it
    level_block = BRIDGE_LEVEL_BLOCKS[dbov] if dbov >= 0 and csrc_end == 12 else None
    mime = up.codec.mime
    sent = 0
    sent_bytes = 0
    payload_len = len(payload)
    pack = HEADER.pack
    for down in downs:
        if not down.active or down.paused:
            continue
        if down.waiting_keyframe:
            if not is_keyframe_start(mime, rtp[offset:]):
                continue
            down.start_at(seq, timestamp)
        out_seq = (seq + down.seq_offset) & 0xFFFF
        out_ts = (timestamp + down.ts_offset) & 0xFFFFFFFF
        sink = down.sink
        try:
            if level_block is not None and down.carries_level:
                rtp_out = (
                    pack(first | 0x10, marker | down.payload_type, out_seq, out_ts, down.ssrc)
                    + level_block
                    + payload
                )
            else:
                rtp_out = (
                    pack(first, marker | down.payload_type, out_seq, out_ts, down.ssrc) + payload
                )
            packet = sink.tx_srtp.protect(rtp_out)  # type: ignore[union-attr]  # active: connected
        except Exception:
            stats.dropped["send_error"] += 1
            continue
        sendto(packet, sink.addr)  # type: ignore[arg-type]  # active: latched
        down.last_seq = out_seq
        down.last_ts = out_ts
        down.packets_sent += 1
        down.octets_sent += payload_len
        sent += 1
        sent_bytes += len(packet)
    stats.rtp_packets_out += sent
    stats.rtp_bytes_out += sent_bytes


def _forward_red(
    up: UpTrack,
    rtp: bytes,
    offset: int,
    primary: int,
    seq: int,
    timestamp: int,
    dbov: int,
    sendto: SendTo,
    stats: RelayStats,
) -> None:
    """The newest packet of an audio track in RED, ``primary`` the index of its primary
    block: as ``forward_rtp``'s loop (audio starts at any packet), with the payload and
    payload type each subscriber takes. The plain payload is cut once, for the first
    subscriber that needs it; the blocks are retagged only for a subscriber whose Opus
    payload type is not the publisher's (the blocks name the publisher's)."""
    b0 = rtp[0]
    first = 0x80 | (b0 & 0x2F)
    marker = rtp[1] & 0x80
    csrc_end = 12 + 4 * (b0 & 0x0F)
    csrcs = rtp[12:csrc_end] if csrc_end > 12 else b""
    level_block = BRIDGE_LEVEL_BLOCKS[dbov] if dbov >= 0 and csrc_end == 12 else None
    red_payload: bytes | None = None
    plain: bytes | None = None
    inner = up.codec.payload_type
    sent = 0
    sent_bytes = 0
    pack = HEADER.pack
    for down in up.down_tracks:
        if not down.active or down.paused:
            continue
        if down.red_payload_type >= 0:
            payload_type = down.red_payload_type
            if down.payload_type == inner:
                if red_payload is None:
                    red_payload = csrcs + rtp[offset:]
                payload = red_payload
            else:  # rare: a viewer that numbers Opus differently (not shared, not kept)
                payload = csrcs + retag(rtp, offset, down.payload_type)
        elif primary == len(rtp) - (rtp[-1] if b0 & 0x20 else 0):
            # An empty primary block: nothing to play, and an empty packet stops some
            # decoders for good (aiortc's). Numbered over, as a dropped padding packet.
            if down.started:
                down.skip_padding(seq)
            continue
        else:
            payload_type = down.payload_type
            if plain is None:
                plain = csrcs + rtp[primary:]
            payload = plain
        if down.waiting_keyframe:
            down.start_at(seq, timestamp)
        out_seq = (seq + down.seq_offset) & 0xFFFF
        out_ts = (timestamp + down.ts_offset) & 0xFFFFFFFF
        sink = down.sink
        try:
            if level_block is not None and down.carries_level:
                rtp_out = (
                    pack(first | 0x10, marker | payload_type, out_seq, out_ts, down.ssrc)
                    + level_block
                    + payload
                )
            else:
                rtp_out = pack(first, marker | payload_type, out_seq, out_ts, down.ssrc) + payload
            packet = sink.tx_srtp.protect(rtp_out)  # type: ignore[union-attr]  # active: connected
        except Exception:
            stats.dropped["send_error"] += 1
            continue
        sendto(packet, sink.addr)  # type: ignore[arg-type]  # active: latched
        down.last_seq = out_seq
        down.last_ts = out_ts
        down.packets_sent += 1
        down.octets_sent += len(payload)
        sent += 1
        sent_bytes += len(packet)
    stats.rtp_packets_out += sent
    stats.rtp_bytes_out += sent_bytes


def _forward_late(
    up: UpTrack,
    rtp: bytes,
    offset: int,
    seq: int,
    timestamp: int,
    sendto: SendTo,
    stats: RelayStats,
    primary: int = 0,
) -> None:
    """A packet older than the newest: each subscriber gets it under the number its span
    left for it (a late padding packet too: it closes the hole it would leave), never one
    already taken; a subscriber that started after it does not get it. A RED packet
    (``primary``: where its primary block starts) goes as ``_forward_red`` sends it."""
    b0 = rtp[0]
    first = 0x80 | (b0 & 0x2F)
    marker = rtp[1] & 0x80
    csrcs = rtp[12 : 12 + 4 * (b0 & 0x0F)]
    payload = csrcs + rtp[offset:]
    for down in up.down_tracks:
        if not down.active or down.paused:
            continue
        if down.waiting_keyframe:
            if not is_keyframe_start(up.codec.mime, rtp[offset:]):
                continue
            down.start_at(seq, timestamp)  # a resent keyframe start: a start like any other
        out_seq = down.late_out_seq(seq)
        if out_seq < 0:
            continue
        if down.awaited and out_seq in down.awaited:
            down.awaited.remove(out_seq)  # asked for and now here: nothing to fill
        out_ts = (timestamp + down.ts_offset) & 0xFFFFFFFF
        payload_type, body = down.payload_type, payload
        if primary and down.red_payload_type >= 0:
            payload_type = down.red_payload_type
            if down.payload_type != up.codec.payload_type:
                body = csrcs + retag(rtp, offset, down.payload_type)
        elif primary:
            body = csrcs + rtp[primary:]
            if len(body) == len(csrcs) + (rtp[-1] if b0 & 0x20 else 0):
                continue  # an empty primary block: nothing to play (see _forward_red)
        header = HEADER.pack(first, marker | payload_type, out_seq, out_ts, down.ssrc)
        if not _protect_and_send(down.sink, header + body, sendto, stats):
            continue
        if out_seq == (down.last_seq + 1) & 0xFFFF:  # only when it starts the subscriber
            down.last_seq = out_seq
            down.last_ts = out_ts
        down.packets_sent += 1
        down.octets_sent += len(body)
        stats.rtp_packets_out += 1


def resend(
    down: DownTrack, rtp: bytes, seq_offset: int, ts_offset: int, sendto: SendTo, stats: RelayStats
) -> bool:
    """Send one cached packet again to one subscriber, in its numbering (slow path: NACKs).

    The same rewrite as ``forward_rtp``, kept apart so the per-packet loop stays inline;
    the offsets are those of the source the packet came from.
    """
    offset = payload_offset(rtp)
    sink = down.sink
    if offset < 0 or not down.started or sink.tx_srtp is None:
        return False
    seq, timestamp, _ = SEQ_TS_SSRC.unpack_from(rtp, 2)
    b0 = rtp[0]
    csrc_end = 12 + 4 * (b0 & 0x0F)
    out_seq = (seq + seq_offset) & 0xFFFF
    out_ts = (timestamp + ts_offset) & 0xFFFFFFFF
    marker = rtp[1] & 0x80
    if down.rtx_payload_type:
        # RFC 4588: the RTX stream's own number; the original one leads the payload
        down.rtx_seq = (down.rtx_seq + 1) & 0xFFFF
        header = HEADER.pack(
            0x80 | (b0 & 0x2F),
            marker | down.rtx_payload_type,
            down.rtx_seq,
            out_ts,
            down.rtx_ssrc,
        )
        body = rtp[12:csrc_end] + OSN.pack(out_seq) + rtp[offset:]
    else:
        header = HEADER.pack(
            0x80 | (b0 & 0x2F), marker | down.payload_type, out_seq, out_ts, down.ssrc
        )
        body = rtp[12:csrc_end] + rtp[offset:]
    if not _protect_and_send(sink, header + body, sendto, stats):
        return False
    stats.retransmitted_packets += 1
    return True


# What a filler carries: never an empty frame (an empty packet flushes FFmpeg-based
# decoders for good), but a fragment no decoder can start a picture with.
FILLER = {"video/VP8": b"\x00\x00", "video/H264": b"\x0c"}  # VP8 continuation; H.264 filler NAL


# No copy or filler goes this far behind the newest packet sent: the receiver may have had
# that packet long since, and aiortc's jitter buffer takes a packet over 100 behind its start
# for a restart, drops all it holds, then stalls for up to 512 packets.
BEHIND_LIMIT = 96


def fill_left_behind(down: DownTrack, sendto: SendTo, stats: RelayStats) -> None:
    """A subscriber moves to another layer at its keyframe: the holes its last NACK listed
    in what it leaves get fillers first. It will not need them (the new layer starts at a
    keyframe), but aiortc's jitter buffer hands out nothing past a hole, and asks for it
    again only on a new gap: after a layer its link could not carry, the picture stayed
    frozen for seconds on the new layer. Browsers drop a filler as a broken frame."""
    if not down.nacked or not down.started:
        return
    now = time.perf_counter()
    for out_seq in down.nacked:
        if (down.last_seq - out_seq) & 0xFFFF <= BEHIND_LIMIT:
            fill_hole(down, out_seq, frame_timestamp(down, out_seq, now), sendto, stats)
    down.nacked = []


def frame_timestamp(down: DownTrack, out_seq: int, now: float) -> int:
    """The timestamp of the frame around ``out_seq``, for a filler in its place: that of the
    packet before it (a receiver that groups packets by timestamp would otherwise make the
    filler a frame of its own and split the frame it belongs to); else the newest sent."""
    origin = down.source_of(out_seq)
    if origin is None:
        return down.last_ts
    source, seq_offset, ts_offset = origin
    cache = source.cache
    before = cache.get((out_seq - seq_offset - 1) & 0xFFFF, now) if cache is not None else None
    if before is None:
        return down.last_ts
    return (read_seq_ts_ssrc(before)[1] + ts_offset) & 0xFFFFFFFF


def fill_hole(
    down: DownTrack, out_seq: int, timestamp: int, sendto: SendTo, stats: RelayStats
) -> bool:
    """Answer a NACK the cache cannot with a filler packet under that number.

    Receivers that wait for every sequence number (aiortc's jitter buffer stalls for 128
    packets on a hole) can then move on to the keyframe the relay requests; others drop
    the fragment as an undecodable partial frame.
    """
    sink = down.sink
    filler = FILLER.get(down.up.codec.mime)
    if filler is None or not down.started or sink.tx_srtp is None:
        return False
    header = HEADER.pack(0x80, down.payload_type, out_seq, timestamp, down.ssrc)
    if not _protect_and_send(sink, header + filler, sendto, stats):
        return False
    stats.holes_filled += 1
    return True


def _protect_and_send(sink: Sink, rtp: bytes, sendto: SendTo, stats: RelayStats) -> bool:
    """Slow-path send of one packet to one subscriber leg."""
    if sink.tx_srtp is None or sink.addr is None:
        return False
    try:
        packet = sink.tx_srtp.protect(rtp)
    except Exception:
        stats.dropped["send_error"] += 1
        return False
    sendto(packet, sink.addr)
    return True


def read_seq_ts_ssrc(rtp: bytes) -> tuple[int, int, int]:
    seq, ts, ssrc = SEQ_TS_SSRC.unpack_from(rtp, 2)
    return seq, ts, ssrc
