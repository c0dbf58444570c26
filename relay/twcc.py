"""Transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc-
extensions-01) for publisher legs.

Browsers estimate their send bandwidth from this feedback; without it Chromium stays near
its start bitrate (and keeps simulcast's upper layers off). The fast path records each
packet's transport-wide sequence number and arrival time; the periodic tick turns them
into one RTCP feedback packet. Statuses are written as run-length chunks.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

MAX_PENDING = 8192  # packets recorded between two feedbacks; more are dropped
TWCC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"

NOT_RECEIVED, SMALL, LARGE = 0, 1, 2


@dataclass(slots=True)
class TwccRecorder:
    sender_ssrc: int
    media_ssrc: int = 0
    count: int = 0  # feedback packet counter (8 bits on the wire)
    pending: list[tuple[int, int]] = field(default_factory=list)  # (unwrapped seq, arrival µs)
    last_seq: int = -1  # unwrapped

    def record(self, seq16: int, arrival_us: int) -> None:
        if self.last_seq < 0:
            unwrapped = seq16
        else:
            delta = (seq16 - self.last_seq) & 0xFFFF
            unwrapped = self.last_seq + (delta if delta < 0x8000 else delta - 0x10000)
        if unwrapped > self.last_seq:
            self.last_seq = unwrapped
        if len(self.pending) < MAX_PENDING:
            self.pending.append((unwrapped, arrival_us))

    def feedback(self) -> bytes:
        """One feedback packet for what arrived since the last call (b"" if nothing did)."""
        if not self.pending:
            return b""
        received = dict(self.pending)
        self.pending = []
        base = min(received)
        last = min(max(received), base + 0xFFFF - 1)
        first_arrival = min(t for s, t in received.items() if s <= last)
        reference = first_arrival // 64000
        previous = reference * 64000
        statuses: list[int] = []
        deltas = bytearray()
        for seq in range(base, last + 1):
            arrival = received.get(seq)
            if arrival is None:
                statuses.append(NOT_RECEIVED)
                continue
            delta = round((arrival - previous) / 250)
            if 0 <= delta <= 0xFF:
                statuses.append(SMALL)
                deltas.append(delta)
            elif -0x8000 <= delta <= 0x7FFF:
                statuses.append(LARGE)
                deltas += struct.pack("!h", delta)
            else:
                statuses.append(NOT_RECEIVED)
                continue
            previous = arrival
        chunks = bytearray()
        i = 0
        while i < len(statuses):
            run = 1
            while i + run < len(statuses) and statuses[i + run] == statuses[i] and run < 0x1FFF:
                run += 1
            chunks += struct.pack("!H", (statuses[i] << 13) | run)
            i += run
        body = struct.pack(
            "!IIHHI",
            self.sender_ssrc,
            self.media_ssrc,
            base & 0xFFFF,
            len(statuses),
            ((reference & 0xFFFFFF) << 8) | (self.count & 0xFF),
        )
        self.count += 1
        payload = body + bytes(chunks) + bytes(deltas)
        padding = -len(payload) % 4
        first = 0x80 | 15
        if padding:  # RFC 3550 padding: P bit set, last byte counts the padding
            payload += b"\x00" * (padding - 1) + bytes([padding])
            first |= 0x20
        header = struct.pack("!BBH", first, 205, len(payload) // 4)
        return header + payload
