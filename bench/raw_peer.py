"""A non-decoding WebRTC peer for load tests: STUN + DTLS-SRTP on one UDP socket, RTP by hand.

The relay is ICE-lite, so a full ICE agent is not needed: one authenticated binding request
latches the address. Publishers send synthetic VP8-framed RTP whose payload carries a send
timestamp; subscribers count packets, check sequence continuity and read that timestamp.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import struct
import time
from dataclasses import dataclass, field

import pylibsrtp
from aioice import stun

from relay.dtls_adapter import DtlsSession, generate_certificate, local_fingerprint
from relay.ice_lite import IceCredentials
from relay.sdp_negotiation import parse_description

_CERT = generate_certificate()
STAMP = struct.Struct("!QI")  # send time (monotonic ns), frame number
SEQ_SSRC = struct.Struct("!H4xI")  # from byte 2 of an RTP header
VIDEO_PT, AUDIO_PT = 96, 111  # as the relay numbers them on subscriber legs
LATENCY_SAMPLE = 8  # decrypt one received packet in this many to read its send time


def _transport_lines(creds: IceCredentials, setup: str) -> list[str]:
    algorithm, value = local_fingerprint(_CERT)
    return [
        f"a=ice-ufrag:{creds.ufrag}",
        f"a=ice-pwd:{creds.pwd}",
        f"a=fingerprint:{algorithm} {value}",
        f"a=setup:{setup}",
        "a=rtcp-mux",
    ]


def _server_address(sdp: str) -> tuple[str, int]:
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            bits = line.split()
            return bits[4], int(bits[5])
    raise ValueError("answer has no candidate")


@dataclass
class ReceiveCounters:
    packets: int = 0
    lost: int = 0
    latencies_ns: list[int] = field(default_factory=list)
    first_packet_at: float | None = None
    first_video_at: float | None = None
    sampled: int = 0
    last_seq: dict[int, int] = field(default_factory=dict)

    def reset(self) -> None:
        """Start a measurement window (join times and sequence state are kept)."""
        self.latencies_ns.clear()
        self.packets = self.lost = 0


class RawPeer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.creds = IceCredentials.generate()
        self.transport: asyncio.DatagramTransport | None = None
        self.server: tuple[str, int] | None = None
        self.dtls: DtlsSession | None = None
        self.connected = asyncio.Event()
        self.stun_ok = asyncio.Event()
        self.counters = ReceiveCounters()
        self.first_video = asyncio.Event()
        self.remote_creds: tuple[str, str] = ("", "")
        self.keyframe_requested = False
        self.keyframe_requests_at: list[float] = []  # perf_counter of each PLI/FIR received
        self._consent: asyncio.Task[None] | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not data:
            return
        b0 = data[0]
        if b0 < 4:
            if b0 & 0x01:  # an answer to our checks
                self.stun_ok.set()
            else:
                self._answer_check(data, addr)
        elif 19 < b0 < 64 and self.dtls is not None:
            self.dtls.feed(data)
        elif 127 < b0 < 192 and self.dtls is not None and self.dtls.connected:
            if 191 < data[1] < 224:
                self.on_rtcp(self.dtls.rx_srtp.unprotect_rtcp(data))
            else:
                self.on_rtp(data)

    def on_rtcp(self, data: bytes) -> None:
        """Notice keyframe requests (PLI, FIR); sender reports are not needed here."""
        offset = 0
        while offset + 4 <= len(data):
            fmt, packet_type = data[offset] & 0x1F, data[offset + 1]
            if packet_type == 206 and fmt in (1, 4):
                self.keyframe_requested = True
                self.keyframe_requests_at.append(time.perf_counter())
            offset += 4 + 4 * struct.unpack_from("!H", data, offset + 2)[0]

    def on_rtp(self, rtp: bytes) -> None:
        """Count one (still encrypted) RTP packet."""
        c = self.counters
        if c.first_video_at is None:
            if c.first_packet_at is None:
                c.first_packet_at = time.perf_counter()
            if rtp[1] & 0x7F == VIDEO_PT:
                c.first_video_at = time.perf_counter()
                self.first_video.set()
        c.packets += 1
        seq, ssrc = SEQ_SSRC.unpack_from(rtp, 2)
        last = c.last_seq.get(ssrc)
        if last is not None:
            gap = (seq - last) & 0xFFFF
            if 1 < gap < 0x8000:
                c.lost += gap - 1
        c.last_seq[ssrc] = seq
        # SRTP leaves the header in the clear: counting needs no decryption. The send
        # timestamp is in the encrypted payload: decrypt a sample, so that one process can
        # play hundreds of subscribers.
        c.sampled += 1
        if c.sampled % LATENCY_SAMPLE == 0 and self.dtls is not None:
            now = time.monotonic_ns()
            try:
                plain = self.dtls.rx_srtp.unprotect(rtp)
            except pylibsrtp.Error:
                return
            if len(plain) >= 12 + 2 + STAMP.size:
                sent, _ = STAMP.unpack_from(plain, 14)
                c.latencies_ns.append(now - sent)

    async def connect(self, answer_sdp: str) -> None:
        parsed = parse_description(answer_sdp)
        self.server = _server_address(answer_sdp)
        self.remote_creds = (parsed.ice_ufrag, parsed.ice_pwd)
        # We offer actpass (the relay answers passive) or answer active: we are the DTLS client.
        if parsed.setup == "active":
            raise RuntimeError("the relay unexpectedly asked to be the DTLS client")
        self.dtls = DtlsSession(_CERT, self._send, "client")
        for _ in range(50):
            self._binding()
            try:
                await asyncio.wait_for(self.stun_ok.wait(), 0.2)
                break
            except TimeoutError:
                continue
        if not await self.dtls.start(parsed.fingerprints):
            raise RuntimeError("DTLS failed")
        self.connected.set()
        self._consent = asyncio.create_task(self._keep_consent())

    def _send(self, data: bytes) -> None:
        if self.transport is not None and self.server is not None:
            self.transport.sendto(data, self.server)

    def _binding(self) -> None:
        request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
        request.attributes["USERNAME"] = f"{self.remote_creds[0]}:{self.creds.ufrag}"
        request.attributes["PRIORITY"] = 0x6E0001FF
        request.attributes["ICE-CONTROLLING"] = secrets.randbits(64)
        request.attributes["USE-CANDIDATE"] = None
        request.add_message_integrity(self.remote_creds[1].encode())
        self._send(bytes(request))

    def _answer_check(self, data: bytes, addr: tuple[str, int]) -> None:
        """Answer the relay's consent check (it sends one before following a move), as
        browsers and aioice do: a success keyed by our password, to where it came from."""
        try:
            request = stun.parse_message(data)
        except (ValueError, struct.error):
            return
        ours = f"{self.creds.ufrag}:{self.remote_creds[0]}"
        pwd = self.creds.pwd.encode()
        if request.attributes.get("USERNAME") != ours or not request.check_message_integrity(pwd):
            return
        response = stun.Message(
            stun.Method.BINDING, stun.Class.RESPONSE, transaction_id=request.transaction_id
        )
        response.attributes["XOR-MAPPED-ADDRESS"] = addr
        response.add_message_integrity(pwd)
        if self.transport is not None:
            self.transport.sendto(bytes(response), addr)

    async def _keep_consent(self) -> None:
        while True:
            await asyncio.sleep(2)
            self._binding()

    async def close(self) -> None:
        if self._consent is not None:
            self._consent.cancel()
        if self.dtls is not None:
            await self.dtls.close()
        if self.transport is not None:
            self.transport.close()

    # SDP ---------------------------------------------------------------------------------

    def publisher_offer(self, ssrc: int | None, audio_ssrc: int | None = None) -> str:
        """Send-only sections: VP8 video (SSRC ``ssrc``) and Opus audio (``audio_ssrc``);
        either may be None (a voice-room speaker publishes audio only)."""
        sections: list[list[str]] = []
        if ssrc is not None:
            sections.append(
                [
                    "m=video 9 UDP/TLS/RTP/SAVPF 96",
                    "a=rtpmap:96 VP8/90000",
                    "a=rtcp-fb:96 nack pli",
                    f"a=ssrc:{ssrc} cname:bench",
                    f"a=msid:bench video{ssrc}",
                ]
            )
        if audio_ssrc is not None:
            sections.append(
                [
                    "m=audio 9 UDP/TLS/RTP/SAVPF 111",
                    "a=rtpmap:111 opus/48000/2",
                    f"a=ssrc:{audio_ssrc} cname:bench",
                    f"a=msid:bench audio{audio_ssrc}",
                ]
            )
        lines = [
            "v=0",
            f"o=- {secrets.randbits(32)} 1 IN IP4 127.0.0.1",
            "s=bench",
            "t=0 0",
            "a=group:BUNDLE " + " ".join(str(mid) for mid in range(len(sections))),
            "a=msid-semantic: WMS *",
        ]
        for mid, (m_line, *rest) in enumerate(sections):
            lines += [
                m_line,
                "c=IN IP4 0.0.0.0",
                f"a=mid:{mid}",
                "a=sendonly",
                *_transport_lines(self.creds, "actpass"),
                *rest,
            ]
        return "\r\n".join(lines) + "\r\n"

    def subscriber_answer(self, offer_sdp: str) -> str:
        offer = parse_description(offer_sdp)
        mids = [m.mid for m in offer.media]
        lines = [
            "v=0",
            f"o=- {secrets.randbits(32)} 1 IN IP4 127.0.0.1",
            "s=bench",
            "t=0 0",
            f"a=group:BUNDLE {' '.join(mids)}",
        ]
        for media in offer.media:
            if media.kind == "application":
                lines += [
                    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
                    "c=IN IP4 0.0.0.0",
                    f"a=mid:{media.mid}",
                    "a=sctp-port:5000",
                ]
            else:
                codec = media.codecs[0]
                direction = "recvonly" if media.direction == "sendonly" else "inactive"
                lines += [
                    f"m={media.kind} 9 UDP/TLS/RTP/SAVPF {codec.payload_type}",
                    "c=IN IP4 0.0.0.0",
                    f"a=mid:{media.mid}",
                    f"a={direction}",
                    f"a=rtpmap:{codec.payload_type} {codec.name}/{codec.clock_rate}"
                    + (f"/{codec.channels}" if codec.channels else ""),
                ]
            lines += _transport_lines(self.creds, "active")
        return "\r\n".join(lines) + "\r\n"


class _Sender:
    """One synthetic RTP stream from a publisher peer, paced by its ``_run``."""

    def __init__(self, peer: RawPeer, ssrc: int) -> None:
        self.peer = peer
        self.ssrc = ssrc
        self.seq = secrets.randbits(16)
        self.sent = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


class VideoSender(_Sender):
    """~bitrate of VP8-framed RTP at 30 fps, a keyframe every 2 s, timestamps in the payload."""

    def __init__(self, peer: RawPeer, ssrc: int, bitrate: int = 1_000_000, mtu: int = 1100) -> None:
        super().__init__(peer, ssrc)
        self.frame_bytes = bitrate // 8 // 30
        self.mtu = mtu

    async def _run(self) -> None:
        assert self.peer.dtls is not None
        protect = self.peer.dtls.tx_srtp.protect
        frame = 0
        started = time.perf_counter()
        filler = os.urandom(self.mtu)
        while True:
            keyframe = frame % 60 == 0 or self.peer.keyframe_requested
            self.peer.keyframe_requested = False
            timestamp = (frame * 3000) & 0xFFFFFFFF
            remaining = self.frame_bytes * (3 if keyframe else 1)
            first = True
            while remaining > 0:
                size = min(self.mtu, remaining)
                remaining -= size
                descriptor = b"\x10" if first else b"\x00"
                tag = b"\x00" if keyframe else b"\x01"
                marker = 0x80 if remaining <= 0 else 0
                header = struct.pack("!BBHII", 0x80, marker | 96, self.seq, timestamp, self.ssrc)
                stamp = STAMP.pack(time.monotonic_ns(), frame)
                payload = descriptor + tag + stamp + filler[: max(0, size - 2 - STAMP.size)]
                self.peer._send(protect(header + payload))
                self.seq = (self.seq + 1) & 0xFFFF
                self.sent += 1
                first = False
            frame += 1
            delay = started + frame / 30 - time.perf_counter()
            await asyncio.sleep(max(0.0, delay))


class AudioSender(_Sender):
    """An Opus-sized stream: 50 packets/s of ~80 bytes, a send timestamp in each payload."""

    def __init__(self, peer: RawPeer, ssrc: int, payload_bytes: int = 80) -> None:
        super().__init__(peer, ssrc)
        self.payload_bytes = payload_bytes

    async def _run(self) -> None:
        assert self.peer.dtls is not None
        protect = self.peer.dtls.tx_srtp.protect
        filler = os.urandom(self.payload_bytes)
        started = time.perf_counter()
        packet = 0
        while True:
            header = struct.pack("!BBHII", 0x80, AUDIO_PT, self.seq, packet * 960, self.ssrc)
            stamp = STAMP.pack(time.monotonic_ns(), packet)
            payload = b"\xfc\xff" + stamp + filler[: self.payload_bytes - 2 - STAMP.size]
            self.peer._send(protect(header + payload))
            self.seq = (self.seq + 1) & 0xFFFF
            self.sent += 1
            packet += 1
            await asyncio.sleep(max(0.0, started + packet / 50 - time.perf_counter()))
