"""The relay's own packet path against the Python floor, in one process, same sockets.

``eurelay bench`` measures the whole server from outside, where the kernel's loopback
work and a busy load client weigh in. This isolates what the relay's Python adds: the
same SRTP packets of a ~1 Mbit/s VP8 publisher (four packets a frame, 30 frames a
second) go through the real ``UdpMux`` -> ``PublisherLeg`` -> ``forward_rtp`` path to N
``DownTrack``s, and through the floor loop (header rewrite, protect, ``sendto``) to the
same N sockets, read by another process as subscribers' sockets are. Rounds alternate
between the two so drift on a noisy machine hits both; CPU is this process's, counted
only while a frame is handled (not while pacing).

Receiving alone (nobody subscribed) is compared with a bare unprotect + header read.
"""

from __future__ import annotations

import argparse
import itertools
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from relay.codecs import VP8
from relay.dtls_adapter import generate_certificate
from relay.leg import LegEnv
from relay.nack_tracker import NackTracker
from relay.packet_cache import PacketCache
from relay.publisher_leg import PublisherLeg
from relay.rate_limiter import TokenBucket
from relay.room import Participant, Permissions
from relay.srtp_fast import FastSrtp
from relay.stats import RelayStats
from relay.track import DownTrack, UpTrack
from relay.udp_mux import UdpMux

from .floor import HEADER, KEY_BYTES, VIDEO_FPS, VIDEO_FRAME, DrainedSockets, _session

FRAME = VIDEO_FRAME
FPS = VIDEO_FPS
PUBLISHER = ("127.0.0.2", 40000)
SSRC = 0x1234


@dataclass
class FastPathResult:
    subscribers: int
    relay_us_per_forwarded_packet: float
    floor_us_per_packet: float
    ratio_to_floor: float
    relay_us_per_received_packet: float  # nobody subscribed: demux, unprotect, bookkeeping
    receive_floor_us_per_packet: float  # unprotect + header read
    received_ratio_to_floor: float
    delivered: float  # fraction of the packets sent that the reading process got
    relay_packets: int  # packets the relay path sent (every packet to every subscriber)
    relay_hot_us_per_received_packet: float = 0.0  # back to back: no wake-up between packets
    receive_floor_hot_us_per_packet: float = 0.0


class _Sink:
    """A subscriber leg as ``forward_rtp`` sees it (``relay.track.Sink``)."""

    def __init__(self, addr: tuple[str, int]) -> None:
        self.tx_srtp: FastSrtp | None = FastSrtp(_session())  # as Leg.connected() wraps DTLS
        self.addr: tuple[str, int] | None = addr
        self.rtt_ms: float | None = None
        self.fraction_lost: float | None = None
        self.closed = False
        self.retransmit_budget = TokenBucket(rate=400.0, burst=200.0)

    def send_sender_report(self, report: bytes, lsr: int) -> None:
        pass


class _Host:
    """The socket and repair a publisher leg reports to; repair does nothing here."""

    def __init__(self, sendto: Callable[[bytes, tuple[str, int]], object]) -> None:
        self.stats = RelayStats()
        self.mux = UdpMux(self.stats)
        self.mux.fast_sendto = sendto  # type: ignore[assignment]  # a socket's returns an int

    def request_keyframe(self, up: UpTrack) -> None:
        pass

    def retransmit(self, down: DownTrack, lost: list[int]) -> None:
        pass

    def upstream_gave_up(self, up: UpTrack) -> None:
        pass


def _publisher(host: _Host, key: bytes) -> tuple[PublisherLeg, UpTrack]:
    participant = Participant("bench", "publisher", Permissions(), TokenBucket(1.0, 1.0))
    env = LegEnv(host.mux, host.mux, host, generate_certificate())
    leg = PublisherLeg(env, participant, "server", time.perf_counter())
    leg.rx_srtp = FastSrtp(_session(key, inbound=True))
    leg.tx_srtp = FastSrtp(_session())
    up = UpTrack(
        sid="TR_bench", kind="video", codec=VP8, mid="0",
        publisher_sid=participant.sid, room="bench", ssrc=SSRC,
    )  # fmt: skip
    up.cache = PacketCache()
    up.nacks = NackTracker()
    leg.add_track(up)
    host.mux.by_addr[PUBLISHER] = leg
    return leg, up


def _frames(key: bytes) -> Iterator[list[bytes]]:
    """SRTP packets of the publisher, frame by frame; the first frame is a keyframe."""
    session = _session(key)
    fill = os.urandom(max(FRAME))
    seq = 0
    frame = 0
    while True:
        packets = []
        for i, size in enumerate(FRAME):
            descriptor = b"\x10" if i == 0 else b"\x00"
            tag = b"\x00" if frame % 60 == 0 else b"\x01"  # VP8 P bit clear: a keyframe
            marker = 0x80 if i == len(FRAME) - 1 else 0
            header = HEADER.pack(0x80, marker | 96, seq & 0xFFFF, frame * 3000, SSRC)
            packets.append(session.protect(header + descriptor + tag + fill[: size - 2]))
            seq += 1
        frame += 1
        yield packets


def _paced(frames: int, handle: Callable[[int], None]) -> float:
    """Call ``handle(frame)`` at the frame rate; CPU seconds spent inside it."""
    cpu = 0.0
    started = time.monotonic()
    for frame in range(frames):
        before = time.process_time()
        handle(frame)
        cpu += time.process_time() - before
        time.sleep(max(0.0, started + (frame + 1) / FPS - time.monotonic()))
    return cpu


def forwarding(
    subscribers: int, seconds: float = 1.0, rounds: int = 4
) -> tuple[float, float, float, int]:
    """(relay µs, floor µs) per forwarded packet, the fraction delivered, the relay's count."""
    key = os.urandom(KEY_BYTES)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setblocking(False)
    frames = int(seconds * FPS)
    with DrainedSockets(subscribers) as drained:
        host = _Host(sender.sendto)
        _, up = _publisher(host, key)
        now = time.monotonic()
        for i, addr in enumerate(drained.addrs):
            down = DownTrack(
                up=up, subscriber_sid=f"s{i}", mid="0", payload_type=96, sink=_Sink(addr)
            )
            down.active = True
            down.attach(up, now)
        # made before the clock runs: the publisher's protect is not the relay's cost
        source = iter(list(itertools.islice(_frames(key), rounds * frames)))
        receive = host.mux.datagram_received
        targets = [(addr, _session(), 1000 + i) for i, addr in enumerate(drained.addrs)]
        payloads = [os.urandom(size) for size in FRAME]
        floor_seq = 0

        def relay(_: int) -> None:
            for packet in next(source):
                receive(packet, PUBLISHER)

        def floor(frame: int) -> None:
            nonlocal floor_seq
            for payload in payloads:
                for addr, session, ssrc in targets:
                    packet = session.protect(
                        HEADER.pack(0x80, 96, floor_seq & 0xFFFF, frame * 3000, ssrc) + payload
                    )
                    sender.sendto(packet, addr)
                floor_seq += 1

        relay_cpu = floor_cpu = 0.0
        for _ in range(rounds):
            relay_cpu += _paced(frames, relay)
            floor_cpu += _paced(frames, floor)
        forwarded = host.stats.rtp_packets_out
    sender.close()
    sent = forwarded + rounds * frames * len(FRAME) * subscribers
    floor_packets = rounds * frames * len(FRAME) * subscribers
    return (
        relay_cpu * 1e6 / max(1, forwarded),
        floor_cpu * 1e6 / floor_packets,
        drained.read / sent,
        forwarded,
    )


def receiving(seconds: float = 1.0, rounds: int = 4) -> tuple[float, float, float, float]:
    """(relay µs, floor µs) per received packet with nobody subscribed, paced the same way,
    then the same back to back (caches hot, as on a busy worker); the floor is an unprotect
    and a header read."""
    key = os.urandom(KEY_BYTES)
    host = _Host(lambda data, addr: None)
    _publisher(host, key)
    frames = int(seconds * FPS)
    hot_frames = 250
    made = list(itertools.islice(_frames(key), rounds * frames + hot_frames))
    relay_source = iter(made)
    floor_source = iter(made)
    floor_session = _session(key, inbound=True)
    receive = host.mux.datagram_received

    def relay(_: int) -> None:
        for packet in next(relay_source):
            receive(packet, PUBLISHER)

    def floor(_: int) -> None:
        for packet in next(floor_source):
            HEADER.unpack_from(floor_session.unprotect(packet))

    relay_cpu = floor_cpu = 0.0
    for _ in range(rounds):
        relay_cpu += _paced(frames, relay)
        floor_cpu += _paced(frames, floor)
    packets = rounds * frames * len(FRAME)
    relay_hot = _back_to_back(hot_frames, relay)
    floor_hot = _back_to_back(hot_frames, floor)
    hot_packets = hot_frames * len(FRAME)
    return (
        relay_cpu * 1e6 / packets,
        floor_cpu * 1e6 / packets,
        relay_hot * 1e6 / hot_packets,
        floor_hot * 1e6 / hot_packets,
    )


def _back_to_back(frames: int, handle: Callable[[int], None]) -> float:
    before = time.process_time()
    for frame in range(frames):
        handle(frame)
    return time.process_time() - before


def measure(subscribers: int, seconds: float = 1.0, rounds: int = 4) -> FastPathResult:
    relay_fwd, floor_fwd, delivered, relay_packets = forwarding(subscribers, seconds, rounds)
    relay_rx, floor_rx, relay_rx_hot, floor_rx_hot = receiving(seconds, rounds)
    return FastPathResult(
        subscribers=subscribers,
        relay_us_per_forwarded_packet=relay_fwd,
        floor_us_per_packet=floor_fwd,
        ratio_to_floor=relay_fwd / floor_fwd,
        relay_us_per_received_packet=relay_rx,
        receive_floor_us_per_packet=floor_rx,
        received_ratio_to_floor=relay_rx / floor_rx,
        delivered=delivered,
        relay_packets=relay_packets,
        relay_hot_us_per_received_packet=relay_rx_hot,
        receive_floor_hot_us_per_packet=floor_rx_hot,
    )


def table(results: list[FastPathResult]) -> str:
    rows = [
        "| subscribers | relay µs / fwd pkt | floor µs | x floor "
        "| relay µs / received pkt | receive floor µs | x floor "
        "| received back to back: relay / floor µs | delivered |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        rows.append(
            f"| {r.subscribers} | {r.relay_us_per_forwarded_packet:.2f} "
            f"| {r.floor_us_per_packet:.2f} | {r.ratio_to_floor:.2f} "
            f"| {r.relay_us_per_received_packet:.2f} | {r.receive_floor_us_per_packet:.2f} "
            f"| {r.received_ratio_to_floor:.2f} "
            f"| {r.relay_hot_us_per_received_packet:.2f} / {r.receive_floor_hot_us_per_packet:.2f} "
            f"| {r.delivered:.3f} |"
        )
    return "\n".join(rows)


HEADING = "## Fast path in one process"


def render_section(table_text: str, date: str) -> str:
    return f"""{HEADING} ({date})

`python -m bench.fastpath`: the relay's real receive path (`UdpMux` -> `PublisherLeg` ->
`forward_rtp`, packet cache, NACK tracker, statistics) fed SRTP packets of a ~1 Mbit/s
VP8 publisher at 30 frames a second, against the floor loop sending the same frames to
the same sockets (read by another process), in alternating rounds; CPU counted only
while a frame is handled. Received: the same path with nobody subscribed, against a bare
unprotect and header read, paced the same way. No server, no load client, no signaling:
what the relay's Python adds to the floor, and nothing else.

{table_text}
"""


def main() -> None:
    from datetime import UTC, datetime
    from pathlib import Path

    from .doc_sections import replace_section

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, nargs="+", default=[10, 50, 150, 500])
    parser.add_argument("--seconds", type=float, default=1.0, help="per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--write", type=Path, help="refresh this section of BENCHMARKS.md")
    args = parser.parse_args()
    text = table([measure(n, args.seconds, args.rounds) for n in args.subscribers])
    print(text)
    if args.write:
        date = datetime.now(UTC).strftime("%Y-%m-%d")
        replace_section(args.write, HEADING, render_section(text, date))


if __name__ == "__main__":
    main()
