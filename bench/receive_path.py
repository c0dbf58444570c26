"""What each piece of a received packet's bookkeeping costs, called as a function and
written out as the fast path does it (``relay/publisher_leg.py``, ``relay/forwarder.py``),
then the whole received packet back to back against the receive floor.

In-process, ``timeit``-style: each variant runs over a window of ~100k packets, best of a
few rounds, the variants alternating so that a noisy machine weighs on both. The called
form is the relay's own function (kept for the uncommon cases: a gap, a late packet, the
slow paths), fed the same next-in-order packet the fast path sees most of the time.
"""

from __future__ import annotations

import argparse
import os
import struct
import time
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from relay import rtcp
from relay.forwarder import read_seq_ts_ssrc
from relay.nack_tracker import NackTracker
from relay.packet_cache import PacketCache
from relay.rtp_header import SEQ_TS_SSRC, payload_offset, read_extension
from relay.stats import FORWARD_BUCKETS, Histogram
from relay.track import ReceiveStats
from relay.twcc import TwccRecorder

from . import fastpath
from .doc_sections import replace_section

HEADING = "## Receive path, piece by piece"
PACKETS = 100_000
ROUNDS = 5
TWCC_ID = 3


@dataclass
class Piece:
    name: str
    called_ns: float
    written_out_ns: float

    @property
    def saved_ns(self) -> float:
        return self.called_ns - self.written_out_ns


def _packet(seq: int, extension: bool) -> bytes:
    ext = bytes([0xBE, 0xDE, 0, 2, 0x10, 0xAB, 0x31, seq >> 8 & 0xFF, seq & 0xFF, 0, 0, 0])
    first = 0x90 if extension else 0x80
    header = struct.pack("!BBHII", first, 96, seq & 0xFFFF, seq * 3000, 0x1234)
    return header + (ext if extension else b"") + os.urandom(1100)


def _time(make: Callable[[], Callable[[int], object]]) -> float:
    """ns per call of the function ``make`` returns, called with 0, 1, 2, ..."""
    run = make()
    started = time.perf_counter_ns()
    for i in range(PACKETS):
        run(i)
    return (time.perf_counter_ns() - started) / PACKETS


def _best(
    called: Callable[[], Callable[[int], object]], written: Callable[[], Callable[[int], object]]
) -> tuple[float, float]:
    a, b = [], []
    for _ in range(ROUNDS):
        a.append(_time(called))
        b.append(_time(written))
    return min(a), min(b)


def measure() -> list[Piece]:
    packets = [_packet(i, extension=True) for i in range(256)]
    plain = [_packet(i, extension=False) for i in range(256)]
    pieces: list[Piece] = []

    def add(
        name: str,
        called: Callable[[], Callable[[int], object]],
        written: Callable[[], Callable[[int], object]],
    ) -> None:
        pieces.append(Piece(name, *_best(called, written)))

    def histogram_called() -> Callable[[int], object]:
        hist = Histogram(FORWARD_BUCKETS)
        return lambda i: hist.observe(3e-5)

    def histogram_written() -> Callable[[int], object]:
        hist = Histogram(FORWARD_BUCKETS)

        def run(i: int) -> None:
            h = hist
            h.counts[bisect_left(h.bounds, 3e-5)] += 1
            h.total += 3e-5

        return run

    add("forwarding histogram", histogram_called, histogram_written)
    add(
        "RTCP or RTP",
        lambda: lambda i: rtcp.is_rtcp(packets[i & 255]),
        lambda: lambda i: len(d := packets[i & 255]) > 1 and 191 < d[1] < 224,
    )
    add(
        "header read",
        lambda: lambda i: read_seq_ts_ssrc(packets[i & 255]),
        lambda: lambda i: SEQ_TS_SSRC.unpack_from(packets[i & 255], 2),
    )

    def jitter_called() -> Callable[[int], object]:
        stats = ReceiveStats()
        return lambda i: stats.update_jitter(i * 90.0 * 33.3, i * 3000)

    def jitter_written() -> Callable[[int], object]:
        stats = ReceiveStats()

        def run(i: int) -> None:
            received = stats
            transit = i * 90.0 * 33.3 - i * 3000
            last = received.last_transit
            if last is not None:
                received.jitter += (abs(transit - last) - received.jitter) / 16.0
            received.last_transit = transit

        return run

    add("jitter (RFC 3550)", jitter_called, jitter_written)

    def nack_called() -> Callable[[int], object]:
        nacks = NackTracker()
        return lambda i: nacks.received(i & 0xFFFF, 1.0)

    def nack_written() -> Callable[[int], object]:
        nacks = NackTracker()
        nacks.highest = 0xFFFF

        def run(i: int) -> None:
            seq = i & 0xFFFF
            if seq == (nacks.highest + 1) & 0xFFFF and nacks.highest >= 0:
                nacks.highest = seq
            else:
                nacks.received(seq, 1.0)

        return run

    add("NACK tracking, next in order", nack_called, nack_written)

    def stats_called() -> Callable[[int], object]:
        stats = ReceiveStats()
        return lambda i: stats.update(i & 0xFFFF)

    def stats_written() -> Callable[[int], object]:
        stats = ReceiveStats(base_seq=0, max_seq=0xFFFF)

        def run(i: int) -> object:
            seq = i & 0xFFFF
            received = stats
            if seq == (received.max_seq + 1) & 0xFFFF and received.base_seq >= 0:
                received.received += 1
                if not seq:
                    received.cycles += 0x10000
                received.max_seq = seq
                return True
            return received.update(seq)

        return run

    add("receive statistics, next in order", stats_called, stats_written)

    def cache_called() -> Callable[[int], object]:
        cache = PacketCache()
        return lambda i: cache.put(i & 0xFFFF, packets[i & 255], 1.0)

    def cache_written() -> Callable[[int], object]:
        cache = PacketCache()

        def run(i: int) -> None:
            c = cache
            seq = i & 0xFFFF
            slot = seq & c.mask
            c.seqs[slot] = seq
            c.packets[slot] = packets[i & 255]
            c.times[slot] = 1.0

        return run

    add("cache insert", cache_called, cache_written)

    def offset_written() -> Callable[[int], object]:
        def run(i: int) -> int:
            rtp = packets[i & 255]
            b0 = rtp[0]
            length = len(rtp)
            offset = 12 + 4 * (b0 & 0x0F)
            if b0 & 0x10:
                if length < offset + 4:
                    return -1
                offset += 4 + 4 * ((rtp[offset + 2] << 8) | rtp[offset + 3])
            return offset if offset <= length else -1

        return run

    add("payload offset", lambda: lambda i: payload_offset(packets[i & 255]), offset_written)
    add(
        "payload copy with nobody subscribed",
        lambda: lambda i: len(plain[i & 255][12:]),
        lambda: lambda i: len(plain[i & 255]) - 12,
    )

    def twcc_called() -> Callable[[int], object]:
        twcc = TwccRecorder(sender_ssrc=1)

        def run(i: int) -> None:
            value = read_extension(packets[i & 255], TWCC_ID)
            if value is not None and len(value) >= 2:
                twcc.record((value[0] << 8) | value[1], int(i * 1e-3 * 1_000_000))
            if len(twcc.pending) > 1000:
                twcc.pending.clear()

        return run

    def twcc_written() -> Callable[[int], object]:
        """The alternative measured and not kept: per packet two appends (the packet and
        its arrival), and its share of reading them all at the tick (every 1000)."""
        twcc = TwccRecorder(sender_ssrc=1)
        kept: list[bytes] = []
        arrivals: list[float] = []

        def run(i: int) -> None:
            kept.append(packets[i & 255])
            arrivals.append(i * 1e-3)
            if len(kept) >= 1000:
                for rtp, arrival in zip(kept, arrivals, strict=True):
                    value = read_extension(rtp, TWCC_ID)
                    if value is not None and len(value) >= 2:
                        twcc.record((value[0] << 8) | value[1], int(arrival * 1_000_000))
                kept.clear()
                arrivals.clear()
                twcc.pending.clear()

        return run

    add("TWCC: read per packet / kept, read at the tick (not kept)", twcc_called, twcc_written)
    return pieces


def render(pieces: list[Piece], whole: tuple[float, float, float, float], date: str) -> str:
    relay_paced, floor_paced, relay_hot, floor_hot = whole
    lines = [
        f"{HEADING} ({date})",
        "",
        "`python -m bench.receive_path`: "
        + " ".join(__doc__.split("\n\n", 1)[0].split())
        .replace("What each", "what each")
        .replace("``", "`")
        + " Layer demux is a dict lookup by SSRC in both forms and kept.",
        "",
        "| piece | called (ns) | written out (ns) | saved (ns) |",
        "|---|---|---|---|",
    ]
    for p in pieces:
        lines.append(
            f"| {p.name} | {p.called_ns:.0f} | {p.written_out_ns:.0f} | {p.saved_ns:.0f} |"
        )
    total = sum(p.saved_ns for p in pieces if not p.name.endswith("(not kept)"))
    lines += [
        "",
        f"Saved per received packet, summed over the pieces kept: {total / 1000:.2f} µs (each "
        "form includes the harness's own call per packet, ~0.2 µs, so only the differences "
        "mean something). TWCC kept for the tick costs more in all than reading it per "
        "packet, so the relay reads it per packet (skipping packets without extensions). "
        "The whole received packet "
        "(`bench.fastpath`, nobody subscribed, same run): back to back "
        f"{relay_hot:.2f} µs against the receive floor's {floor_hot:.2f} µs "
        f"({relay_hot / floor_hot:.2f}x); paced like a publisher {relay_paced:.2f} against "
        f"{floor_paced:.2f} µs ({relay_paced / floor_paced:.2f}x). The floor is pylibsrtp's "
        "`Session.unprotect` and a header read; SRTP unprotect itself (libsrtp, AES-GCM) is "
        "about a third of the relay's samples in a py-spy `--native` profile.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="refresh this section of BENCHMARKS.md")
    args = parser.parse_args()
    pieces = measure()
    whole = fastpath.receiving(1.0, 3)
    text = render(pieces, whole, datetime.now(UTC).strftime("%Y-%m-%d"))
    print(text)
    if args.write:
        replace_section(args.write, HEADING, text)


if __name__ == "__main__":
    main()
