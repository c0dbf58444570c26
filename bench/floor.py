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
import os
import socket
import struct
import subprocess
import sys
import time

from pylibsrtp import Policy, Session

HEADER = struct.Struct("!BBHII")


def _session(key: bytes | None = None, inbound: bool = False) -> Session:
    policy = Policy(
        key=key or os.urandom(30),
        ssrc_type=Policy.SSRC_ANY_INBOUND if inbound else Policy.SSRC_ANY_OUTBOUND,
        srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    )
    policy.allow_repeat_tx = True
    policy.window_size = 1024
    return Session(policy)


def floor_us_per_packet(subscribers: int, packets: int = 3000, payload_size: int = 1100) -> float:
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


RECEIVE_KEY = bytes(range(30))  # both ends of the receive floor; nothing secret here


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


def receive_floor_us_per_packet(
    rate: float, seconds: float = 2.0, payload_size: int = 1100
) -> float:
    """CPU µs per packet of a bare uvloop receiver fed ``rate`` SRTP packets a second."""
    receiver = subprocess.Popen(
        [sys.executable, "-m", "bench.floor", str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.stdout is not None
        port = int(receiver.stdout.readline())
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        session = _session(RECEIVE_KEY)
        payload = os.urandom(payload_size)
        started = time.monotonic()
        seq = 0
        while receiver.poll() is None and time.monotonic() - started < seconds + 1.0:
            packet = session.protect(HEADER.pack(0x80, 96, seq & 0xFFFF, seq * 3000, 1) + payload)
            sender.sendto(packet, ("127.0.0.1", port))
            seq += 1
            time.sleep(max(0.0, started + seq / rate - time.monotonic()))
        sender.close()
        cpu, count = receiver.stdout.readline().split()
        receiver.wait(timeout=5)
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
    return float(cpu) * 1e6 / max(1, int(count))


if __name__ == "__main__":
    import uvloop

    uvloop.run(_receive(float(sys.argv[1])))
