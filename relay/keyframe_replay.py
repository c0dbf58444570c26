"""A joining subscriber's first picture from the packet cache: the track's latest keyframe
and every packet since, sent at once in the subscriber's numbering.

A viewer who starts receiving shortly after a keyframe then waits for nothing, and asks the
publisher for nothing: subscribers joining in a stream cost the publisher one keyframe per
``max_age`` at most, however many they are (throttling requests alone makes each of them
wait up to the throttle's interval). The replay is bounded: the older the keyframe, the
older the first picture (the receiver decodes the catch-up frames at once and plays on with
the live ones) and the bigger the burst, so only a keyframe at most ``max_age`` old and at
most ``MAX_PACKETS`` packets are replayed. A run with a hole (a packet lost upstream and not
resent yet) is not replayed; nor is anything received before ``UpTrack.replay_since`` (the
track was muted: what came meanwhile was never meant to be seen).

Not the fast path: this runs once per subscriber that starts, from the control side.
"""

from __future__ import annotations

from .forwarder import SendTo
from .rtp_header import HEADER, SEQ_TS_SSRC, is_keyframe_start, payload_offset
from .stats import RelayStats
from .track import DownTrack

# aiortc's receiver holds 128 video packets; a burst beyond that would overflow it (and
# one that size takes a while to drain on a slow downlink, delaying the live packets).
MAX_PACKETS = 96


def replay_keyframe(
    down: DownTrack, max_age: float, sendto: SendTo, stats: RelayStats, now: float
) -> bool:
    """Start ``down`` at its track's latest cached keyframe and send it everything since;
    False (nothing sent) when there is none to use: the caller asks for a keyframe.

    ``now`` is on the clock that stamps arrivals (``time.perf_counter``)."""
    up = down.up
    cache = up.cache
    sink = down.sink
    srtp, addr = sink.tx_srtp, sink.addr
    if (
        cache is None
        or max_age <= 0
        or up.muted
        or not (down.active and down.waiting_keyframe)
        or down.paused
        or up.stats.base_seq < 0  # nothing received yet
        or srtp is None
        or addr is None
    ):
        return False
    mime = up.codec.mime

    def starts(rtp: bytes) -> bool:
        offset = payload_offset(rtp)
        return offset >= 0 and is_keyframe_start(mime, rtp[offset:])

    since = max(now - max_age, up.replay_since)
    run = cache.run_from(up.stats.max_seq, since, starts)
    if not run or len(run) > MAX_PACKETS:
        return False
    seq, timestamp, _ = SEQ_TS_SSRC.unpack_from(run[0], 2)
    down.start_at(seq, timestamp)
    for rtp in run:
        # The rewrite of ``forward_rtp``: version 2, padding and CSRCs kept, extensions
        # dropped; padding-only packets (probes) skipped as the fast path skips them.
        offset = payload_offset(rtp)
        seq, timestamp, _ = SEQ_TS_SSRC.unpack_from(rtp, 2)
        b0 = rtp[0]
        if b0 & 0x20 and (offset >= len(rtp) or len(rtp) - offset <= rtp[-1]):
            down.skip_padding(seq)
            continue
        out_seq = (seq + down.seq_offset) & 0xFFFF
        out_ts = (timestamp + down.ts_offset) & 0xFFFFFFFF
        payload = rtp[12 : 12 + 4 * (b0 & 0x0F)] + rtp[offset:]
        header = HEADER.pack(
            0x80 | (b0 & 0x2F), (rtp[1] & 0x80) | down.payload_type, out_seq, out_ts, down.ssrc
        )
        try:
            packet = srtp.protect(header + payload)
        except Exception:
            stats.dropped["send_error"] += 1
            continue  # a hole the subscriber NACKs, answered from the cache
        sendto(packet, addr)
        down.last_seq = out_seq
        down.last_ts = out_ts
        down.packets_sent += 1
        down.octets_sent += len(payload)
        stats.rtp_packets_out += 1
        stats.rtp_bytes_out += len(packet)
    stats.keyframe_replays += 1
    return True
