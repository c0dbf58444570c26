"""Transport-wide congestion control feedback, decoded back independently."""

from __future__ import annotations

import struct

from relay.rtp_header import read_extension
from relay.twcc import TwccRecorder


def decode(packet: bytes) -> dict[str, object]:
    """A minimal reader of the draft's feedback format (run-length chunks only)."""
    first, pt, length = struct.unpack_from("!BBH", packet)
    assert first & 0x1F == 15 and pt == 205 and (length + 1) * 4 == len(packet)
    end = len(packet) - (packet[-1] if first & 0x20 else 0)
    _, media, base, count, ref_and_count = struct.unpack_from("!IIHHI", packet, 4)
    statuses: list[int] = []
    i = 20
    while len(statuses) < count:
        (chunk,) = struct.unpack_from("!H", packet, i)
        i += 2
        assert not chunk & 0x8000  # run-length chunk
        statuses += [(chunk >> 13) & 0x3] * (chunk & 0x1FFF)
    deltas = []
    for status in statuses:
        if status == 1:
            deltas.append(packet[i] * 250)
            i += 1
        elif status == 2:
            deltas.append(struct.unpack_from("!h", packet, i)[0] * 250)
            i += 2
    assert i <= end
    return {
        "media": media,
        "base": base,
        "statuses": statuses,
        "deltas": deltas,
        "reference": ref_and_count >> 8,
        "fb_count": ref_and_count & 0xFF,
    }


def test_feedback_round_trip_with_loss_and_wraparound() -> None:
    recorder = TwccRecorder(sender_ssrc=1, media_ssrc=2)
    arrivals = {65534: 1_000_000, 65535: 1_001_000, 1: 1_005_000, 2: 1_090_000}  # 0 is lost
    for seq, at in arrivals.items():
        recorder.record(seq, at)
    decoded = decode(recorder.feedback())
    assert decoded["base"] == 65534 and decoded["media"] == 2
    assert decoded["statuses"] == [1, 1, 0, 1, 2]  # 85 ms gap: a large delta
    reference_us = decoded["reference"] * 64000  # type: ignore[operator]
    times, t = [], reference_us
    for delta in decoded["deltas"]:  # type: ignore[attr-defined]
        t += delta
        times.append(t)
    assert times == [1_000_000, 1_001_000, 1_005_000, 1_090_000]
    assert recorder.feedback() == b""  # nothing new since
    recorder.record(3, 1_100_000)
    assert decode(recorder.feedback())["fb_count"] == 1


def test_reads_one_byte_header_extensions() -> None:
    ext = bytes([0xBE, 0xDE, 0, 2, 0x10, 0xAB, 0x31, 0x01, 0x02, 0, 0, 0])  # id1 len1, id3 len2
    rtp = struct.pack("!BBHII", 0x90, 96, 1, 2, 3) + ext + b"payload"
    assert read_extension(rtp, 3) == b"\x01\x02"
    assert read_extension(rtp, 1) == b"\xab"
    assert read_extension(rtp, 5) is None
    assert read_extension(struct.pack("!BBHII", 0x80, 96, 1, 2, 3), 3) is None
    assert read_extension(struct.pack("!BBHII", 0x90, 96, 1, 2, 3) + b"\xbe", 3) is None
