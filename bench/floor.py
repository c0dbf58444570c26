"""The Python floor for forwarding one packet to N subscribers: what no Python SFU can beat.

Per subscriber: rewrite the RTP header (struct.pack), SRTP-protect with that subscriber's
own session (pylibsrtp, as the relay does) and ``sendto`` a loopback socket. Measured as
process CPU time per forwarded packet, in the same run as the relay so ratios compare
like with like on a noisy machine.
"""

from __future__ import annotations

import os
import socket
import struct
import time

from pylibsrtp import Policy, Session

HEADER = struct.Struct("!BBHII")


def _session() -> Session:
    policy = Policy(
        key=os.urandom(30),
        ssrc_type=Policy.SSRC_ANY_OUTBOUND,
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
