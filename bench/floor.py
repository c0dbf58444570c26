"""The Python floors: what no Python SFU can beat, measured in the same run as the relay
so ratios compare like with like on a noisy machine.

Forwarding one packet to N subscribers: per subscriber, rewrite the RTP header
(struct.pack), SRTP-protect with that subscriber's own session (pylibsrtp, as the relay
does) and ``sendto`` a loopback socket; process CPU time per forwarded packet.

Receiving: a uvloop datagram endpoint in a process of its own that SRTP-unprotects each
packet and reads its header, fed at a publisher's packet rate; that process's CPU time
per packet. At a few hundred packets a second most of it is the event loop waking up
for each datagram, which a relay pays the same way.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import time

from pylibsrtp import Policy, Session

HEADER = struct.Struct("!BBHII")
# What bench/raw_peer.py's publisher sends: a ~1 Mbit/s VP8 frame as four packets 30
# times a second, and an 80-byte Opus-sized packet 50 times a second.
VIDEO_FRAME = (1100, 1100, 1100, 866)
VIDEO_FPS = 30
AUDIO_BYTES = 80
AUDIO_PPS = 50


def publisher_schedule(seconds: float) -> list[tuple[float, tuple[int, ...]]]:
    """(send time, payload sizes sent back to back then) for ``seconds`` of one publisher."""
    events: list[tuple[float, tuple[int, ...]]] = [
        (i / VIDEO_FPS, VIDEO_FRAME) for i in range(int(seconds * VIDEO_FPS))
    ]
    events += [(i / AUDIO_PPS, (AUDIO_BYTES,)) for i in range(int(seconds * AUDIO_PPS))]
    return sorted(events, key=lambda event: event[0])


def publishers_schedule(publishers: int, seconds: float) -> list[tuple[float, tuple[int, ...]]]:
    """Several publishers' schedules merged, each offset by a fraction of a frame, as
    independent senders are."""
    return sorted(
        (
            (at + p / (publishers * VIDEO_FPS), sizes)
            for p in range(publishers)
            for at, sizes in publisher_schedule(seconds)
        ),
        key=lambda event: event[0],
    )


# The SRTP profile two aiortc peers negotiate (aiortc lists it first), so the one the
# bench's subscribers and publishers use with the relay: the floor pays the same cipher.
SRTP_PROFILE = Policy.SRTP_PROFILE_AEAD_AES_256_GCM
KEY_BYTES = 32 + 12  # key and salt


def _session(key: bytes | None = None, inbound: bool = False) -> Session:
    policy = Policy(
        key=key or os.urandom(KEY_BYTES),
        ssrc_type=Policy.SSRC_ANY_INBOUND if inbound else Policy.SSRC_ANY_OUTBOUND,
        srtp_profile=SRTP_PROFILE,
    )
    policy.allow_repeat_tx = True
    policy.window_size = 1024
    return Session(policy)


def paced_floor_us_per_packet(subscribers: int, publishers: int = 1, seconds: float = 4.0) -> float:
    """The floor loop fed on the publishers' schedule, to sockets another process reads.

    Like for like with a relay: its packets arrive a few at a time with the process asleep
    in between (so caches are cold again at each wake-up), and each send to a socket
    someone waits on wakes the reader, which loopback charges to the sender."""
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setblocking(False)
    payloads = {size: os.urandom(size) for size in (*VIDEO_FRAME, AUDIO_BYTES)}
    with DrainedSockets(subscribers) as drained:
        targets = [(addr, _session(), 1000 + i) for i, addr in enumerate(drained.addrs)]
        cpu = 0.0
        packets = 0
        started = time.monotonic()
        for at, sizes in publishers_schedule(publishers, seconds):
            time.sleep(max(0.0, started + at - time.monotonic()))
            before = time.process_time()
            for size in sizes:
                payload = payloads[size]
                for addr, session, ssrc in targets:
                    packet = session.protect(
                        HEADER.pack(0x80, 96, packets & 0xFFFF, packets * 3000, ssrc) + payload
                    )
                    try:  # noqa: SIM105 - a zero-cost try
                        sender.sendto(packet, addr)
                    except BlockingIOError:
                        pass
                packets += 1
            cpu += time.process_time() - before
    sender.close()
    return cpu * 1e6 / max(1, packets * subscribers)


def floor_us_per_packet(subscribers: int, packets: int = 3000, payload_size: int = 1100) -> float:
    """The floor loop back to back (caches hot), to sockets this process drains."""
    receivers = []
    for _ in range(subscribers):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        receivers.append(sock)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setblocking(False)
    targets = [(r.getsockname(), _session(), 1000 + i) for i, r in enumerate(receivers)]
    payload = os.urandom(payload_size)
    try:
        started = time.process_time()
        for seq in range(packets):
            for addr, session, ssrc in targets:
                packet = session.protect(
                    HEADER.pack(0x80, 96, seq & 0xFFFF, seq * 3000, ssrc) + payload
                )
                try:  # noqa: SIM105 - a zero-cost try; contextlib.suppress would inflate the floor
                    sender.sendto(packet, addr)
                except BlockingIOError:
                    pass
            if seq % 64 == 0:  # keep the receivers' buffers from filling up
                for sock in receivers:
                    try:
                        while sock.recv(2048):
                            pass
                    except BlockingIOError:
                        pass
        elapsed = time.process_time() - started
    finally:
        sender.close()
        for sock in receivers:
            sock.close()
    return elapsed * 1e6 / (packets * subscribers)


RECEIVE_KEY = bytes(range(KEY_BYTES))  # both ends of the receive floor; nothing secret here


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.session = _session(RECEIVE_KEY, inbound=True)
        self.count = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        rtp = self.session.unprotect(data)
        HEADER.unpack_from(rtp)
        self.count += 1


async def _receive(seconds: float) -> None:
    """The receiving end (``python -m bench.floor SECONDS``): prints its port, then after
    its first packet and ``seconds`` more, its CPU seconds and packet count."""
    loop = asyncio.get_running_loop()
    transport, receiver = await loop.create_datagram_endpoint(
        _Receiver, local_addr=("127.0.0.1", 0)
    )
    print(transport.get_extra_info("sockname")[1], flush=True)
    while not receiver.count:
        await asyncio.sleep(0.01)
    cpu, count = time.process_time(), receiver.count
    await asyncio.sleep(seconds)
    print(time.process_time() - cpu, receiver.count - count, flush=True)
    transport.close()


def receive_floor_us_per_packet(publishers: int = 1, seconds: float = 2.0) -> float:
    """CPU µs per packet of a bare uvloop receiver fed ``publishers`` publishers' schedules
    (each offset by a fraction of a frame, as independent senders are)."""
    receiver = subprocess.Popen(
        [sys.executable, "-m", "bench.floor", str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    events = publishers_schedule(publishers, seconds + 1.0)
    try:
        assert receiver.stdout is not None
        port = int(receiver.stdout.readline())
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        session = _session(RECEIVE_KEY)
        payloads = {size: os.urandom(size) for size in (*VIDEO_FRAME, AUDIO_BYTES)}
        started = time.monotonic()
        seq = 0
        for at, sizes in events:
            if receiver.poll() is not None:
                break
            time.sleep(max(0.0, started + at - time.monotonic()))
            for size in sizes:
                header = HEADER.pack(0x80, 96, seq & 0xFFFF, seq * 3000, 1)
                sender.sendto(session.protect(header + payloads[size]), ("127.0.0.1", port))
                seq += 1
        sender.close()
        cpu, count = receiver.stdout.readline().split()
        receiver.wait(timeout=5)
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
    return float(cpu) * 1e6 / max(1, int(count))


def room_schedule(
    publishers: int, seconds: float, audio_only: bool = False
) -> list[tuple[float, int, tuple[int, ...]]]:
    """(send time, publisher, payload sizes) for ``publishers`` independent publishers, each
    offset by a fraction of a frame; audio only: the Opus-sized stream alone."""
    one = publisher_schedule(seconds)
    if audio_only:
        one = [(at, sizes) for at, sizes in one if sizes == (AUDIO_BYTES,)]
    events = [
        (at + p / (max(1, publishers) * VIDEO_FPS), p, sizes)
        for p in range(publishers)
        for at, sizes in one
    ]
    return sorted(events, key=lambda event: event[0])


class _Relay(asyncio.DatagramProtocol):
    """The relayed-packet floor: unprotect, then per subscriber rewrite, protect, sendto."""

    def __init__(self, targets: list[list[int]]) -> None:
        self.session = _session(RECEIVE_KEY, inbound=True)
        sessions: dict[int, Session] = {}
        # by incoming SSRC (publisher index + 1): (address, session, outgoing SSRC) each
        self.targets: dict[int, list[tuple[tuple[str, int], Session, int]]] = {
            p + 1: [
                (("127.0.0.1", port), sessions.setdefault(port, _session()), 1000 + port)
                for port in ports
            ]
            for p, ports in enumerate(targets)
        }
        self.transport: asyncio.DatagramTransport | None = None
        self.received = 0
        self.sent = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        rtp = self.session.unprotect(data)
        first, second, seq, timestamp, ssrc = HEADER.unpack_from(rtp)
        payload = rtp[12:]
        sendto = self.transport.sendto  # type: ignore[union-attr]
        targets = self.targets.get(ssrc, ())
        for target, session, out_ssrc in targets:
            header = HEADER.pack(first, second, seq, timestamp, out_ssrc)
            sendto(session.protect(header + payload), target)
        self.received += 1
        self.sent += len(targets)


async def _relay(seconds: float) -> None:
    """``python -m bench.floor relay SECONDS``: reads the targets (JSON: per publisher the
    ports of its subscribers) from stdin, prints its port, then after its first packet and
    ``seconds`` more, its CPU seconds and the packets it sent."""
    loop = asyncio.get_running_loop()
    targets = json.loads(await loop.run_in_executor(None, sys.stdin.readline))
    transport, relay = await loop.create_datagram_endpoint(
        lambda: _Relay(targets), local_addr=("127.0.0.1", 0)
    )
    print(transport.get_extra_info("sockname")[1], flush=True)
    while not relay.received:
        await asyncio.sleep(0.01)
    cpu, sent = time.process_time(), relay.sent
    await asyncio.sleep(seconds)
    print(time.process_time() - cpu, relay.sent - sent, flush=True)
    transport.close()


def relayed_floor_us_per_packet(
    rooms: int, room_size: int, speakers: int, audio_only: bool = False, seconds: float = 2.0
) -> float:
    """CPU µs per relayed packet (one copy sent) of a bare uvloop relay fed ``rooms`` rooms'
    publishers on their schedule: per packet an unprotect, then for each other member of
    the room a header rewrite, protect and ``sendto`` to a socket another process reads."""
    publishers = rooms * speakers
    with DrainedSockets(rooms * room_size) as drained:
        ports = [addr[1] for addr in drained.addrs]
        targets = [
            [ports[r * room_size + m] for m in range(room_size) if m != s]
            for r in range(rooms)
            for s in range(speakers)
        ]
        relay = subprocess.Popen(
            [sys.executable, "-m", "bench.floor", "relay", str(seconds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert relay.stdin is not None and relay.stdout is not None
            relay.stdin.write(json.dumps(targets) + "\n")
            relay.stdin.flush()
            port = int(relay.stdout.readline())
            _feed(port, room_schedule(publishers, seconds + 1.0, audio_only), relay)
            cpu, count = relay.stdout.readline().split()
            relay.wait(timeout=5)
        finally:
            if relay.poll() is None:
                relay.kill()
                relay.wait()
    return float(cpu) * 1e6 / max(1, int(count))


def _feed(
    port: int, events: list[tuple[float, int, tuple[int, ...]]], receiver: subprocess.Popen[str]
) -> None:
    """Send the publishers' packets to ``port`` on their schedule (SSRC: publisher + 1)."""
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    session = _session(RECEIVE_KEY)
    payloads = {size: os.urandom(size) for size in (*VIDEO_FRAME, AUDIO_BYTES)}
    seqs: dict[int, int] = {}
    started = time.monotonic()
    try:
        for at, publisher, sizes in events:
            if receiver.poll() is not None:
                break
            time.sleep(max(0.0, started + at - time.monotonic()))
            for size in sizes:
                seq = seqs.get(publisher, 0)
                seqs[publisher] = seq + 1
                header = HEADER.pack(0x80, 96, seq & 0xFFFF, seq * 3000, publisher + 1)
                try:  # noqa: SIM105 - the relay floor falling behind drops, as a relay would
                    sender.sendto(session.protect(header + payloads[size]), ("127.0.0.1", port))
                except BlockingIOError:
                    pass
    finally:
        sender.close()


class _Drain(asyncio.DatagramProtocol):
    count = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        _Drain.count += 1


async def _drain(sockets: int) -> None:
    """``python -m bench.floor drain N``: N sockets read by uvloop, as a subscriber's are;
    prints their ports, then on a line on stdin the number of packets read."""
    loop = asyncio.get_running_loop()
    ports = []
    for _ in range(sockets):
        transport, _ = await loop.create_datagram_endpoint(_Drain, local_addr=("127.0.0.1", 0))
        ports.append(transport.get_extra_info("sockname")[1])
    print(*ports, flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    print(_Drain.count, flush=True)


class DrainedSockets:
    """N loopback sockets read by another process (a context manager): sending to them
    costs what sending to real subscribers costs, the reader's wake-ups included."""

    def __init__(self, sockets: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.floor", "drain", str(sockets)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.addrs = [("127.0.0.1", int(p)) for p in self.process.stdout.readline().split()]
        self.read = 0

    def __enter__(self) -> DrainedSockets:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            assert self.process.stdin is not None and self.process.stdout is not None
            self.process.stdin.write("\n")
            self.process.stdin.flush()
            self.read = int(self.process.stdout.readline() or 0)
            self.process.wait(timeout=5)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()


if __name__ == "__main__":
    import uvloop

    if sys.argv[1] == "drain":
        uvloop.run(_drain(int(sys.argv[2])))
    elif sys.argv[1] == "relay":
        uvloop.run(_relay(float(sys.argv[2])))
    else:
        uvloop.run(_receive(float(sys.argv[1])))
