"""What reading the audio level costs the fast path, per audio packet.

The same Opus-sized packets, with the header extensions Chromium writes on audio (audio
level, abs-send-time, transport-wide sequence number, mid), go through ``forward_rtp`` to
one subscriber (protect and send are no-ops: only the Python around them is timed), once for
a track without a level (``UpTrack.level`` None: the relay before active speakers) and once
with one, in alternating rounds; the difference is the level's cost. The read alone
(``read_audio_level``) is timed too; each figure is the best of its rounds. No sockets, no
SRTP: nanoseconds, not the whole path (``bench.fastpath`` has that: ~10 µs a received packet
back to back).

    python -m bench.audio_level [--packets 200000] [--rounds 9]
"""

from __future__ import annotations

import argparse
import json
import struct
import time
from dataclasses import asdict, dataclass
from typing import Any

from relay.audio_level import AudioLevel, read_audio_level
from relay.codecs import OPUS
from relay.forwarder import forward_rtp
from relay.rate_limiter import TokenBucket
from relay.stats import RelayStats
from relay.track import DownTrack, UpTrack

HEADING = "## Audio level in the fast path"
SSRC = 0x5150
LEVEL_ID = 1  # Chromium's ids for audio: level 1, abs-send-time 2, transport-cc 3, mid 4


def chromium_audio_packet(seq: int, dbov: int = 30) -> bytes:
    """An Opus packet as Chromium sends it: four one-byte-header extensions, ~80 bytes of
    payload (32 kbit/s in 20 ms frames)."""
    elements = (
        bytes([(1 << 4) | 0, 0x80 | dbov])
        + bytes([(2 << 4) | 2]) + b"\x12\x34\x56"
        + bytes([(3 << 4) | 1]) + struct.pack("!H", seq & 0xFFFF)
        + bytes([(4 << 4) | 0]) + b"0"
    )  # fmt: skip
    elements += bytes(-len(elements) % 4)
    extension = b"\xbe\xde" + struct.pack("!H", len(elements) // 4) + elements
    header = struct.pack("!BBHII", 0x90, 111, seq & 0xFFFF, (seq * 960) & 0xFFFFFFFF, SSRC)
    return header + extension + bytes(80)


class _NoProtection:
    def protect(self, packet: bytes) -> bytes:
        return packet


class _Sink:
    """A subscriber leg whose protect and send cost nothing: only the Python is timed."""

    def __init__(self) -> None:
        self.addr: tuple[str, int] | None = ("127.0.0.1", 9)
        self.tx_srtp: Any = _NoProtection()
        self.rtt_ms: float | None = None
        self.fraction_lost: float | None = None
        self.closed = False
        self.retransmit_budget = TokenBucket(rate=400.0, burst=200.0)

    def send_sender_report(self, report: bytes, lsr: int) -> None: ...


def _send(data: bytes, addr: tuple[str, int]) -> None:
    pass


def _forward_ns(level: bool, packets: list[bytes]) -> float:
    up = UpTrack("T", "audio", OPUS, "0", "P", "R", SSRC)
    up.level = AudioLevel(LEVEL_ID) if level else None
    down = DownTrack(up=up, subscriber_sid="S", mid="0", payload_type=111, sink=_Sink())
    down.active = True
    up.add_down(down)
    stats = RelayStats()
    started = time.perf_counter_ns()
    for seq, rtp in enumerate(packets):
        forward_rtp(up, rtp, seq & 0xFFFF, seq * 960, _send, stats, 0.0)
    return (time.perf_counter_ns() - started) / len(packets)


def _read_ns(packets: list[bytes]) -> float:
    started = time.perf_counter_ns()
    for rtp in packets:
        read_audio_level(rtp, LEVEL_ID)
    return (time.perf_counter_ns() - started) / len(packets)


@dataclass
class AudioLevelResult:
    packets: int
    rounds: int
    forward_ns_without_level: float  # best round, per packet
    forward_ns_with_level: float
    level_ns_per_packet: float  # the difference: what reading and counting the level adds
    read_ns_per_packet: float  # read_audio_level alone


def measure(packets: int = 200_000, rounds: int = 9) -> AudioLevelResult:
    stream = [chromium_audio_packet(seq) for seq in range(packets)]
    without, with_level, reads = [], [], []
    for _ in range(rounds):
        without.append(_forward_ns(False, stream))
        with_level.append(_forward_ns(True, stream))
        reads.append(_read_ns(stream))
    # the best round of each: on a shared machine the others measure the neighbours
    plain, levelled = min(without), min(with_level)
    return AudioLevelResult(
        packets=packets,
        rounds=rounds,
        forward_ns_without_level=round(plain, 1),
        forward_ns_with_level=round(levelled, 1),
        level_ns_per_packet=round(levelled - plain, 1),
        read_ns_per_packet=round(min(reads), 1),
    )


def render(result: AudioLevelResult, today: str) -> str:
    data: dict[str, Any] = asdict(result)
    return (
        f"{HEADING} ({today})\n\n"
        "`python -m bench.audio_level`: Opus packets with the four header extensions Chromium "
        "writes on audio, through `forward_rtp` to one subscriber (protect and send are "
        "no-ops), for a track without and with a level, best of alternating rounds.\n\n"
        "| forward, no level | forward, level read and counted | level's cost | "
        "`read_audio_level` alone |\n|---|---|---|---|\n"
        f"| {data['forward_ns_without_level']} ns | {data['forward_ns_with_level']} ns | "
        f"{data['level_ns_per_packet']} ns | {data['read_ns_per_packet']} ns |\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--packets", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    result = measure(args.packets, args.rounds)
    print(json.dumps(asdict(result), indent=1))
    print(render(result, time.strftime("%Y-%m-%d")))


if __name__ == "__main__":
    main()
