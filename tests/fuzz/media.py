"""The relay's UDP side in miniature, for the fuzz targets that feed it datagrams.

A real ``UdpMux`` on a fake transport, with a real publisher leg and a real subscriber leg
latched to two addresses; their SRTP sessions are the identity, because a peer keys its own
SRTP and so controls every byte the parsers behind it see. The publisher leg carries a VP8,
an Opus, a three-layer simulcast VP8 (bound by rid on its first packets) and an H.264 track
(bound by payload type); the subscriber leg receives a copy of each. A ``Ticker`` does the
periodic work between packets. Constants here are the ones the seeds were written with
(``tests/fuzz/make_seeds.py``), so seeds reach past the SSRC lookups.

Properties checked after every datagram (``MediaHarness.feed``): the mux's last-resort
``except`` did not fire (each parser handles its own bad input), nothing the relay sends is
malformed (RTP out has a valid header, RTCP out parses), and no per-peer state grew past its
bound.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Iterator
from typing import Any, cast

from aiortc.rtp import RtcpPacket

from relay.active_speakers import ActiveSpeakers
from relay.codecs import H264, OPUS, VP8, Codec
from relay.dtls_adapter import RelayCertificate, generate_certificate
from relay.ice_lite import IceCredentials
from relay.leg import LegEnv
from relay.nack_tracker import NackTracker
from relay.packet_cache import PacketCache
from relay.publisher_leg import PublisherLeg
from relay.rate_limiter import TokenBucket
from relay.repair import Repair
from relay.room import Participant, Permissions
from relay.rtp_header import payload_offset
from relay.stats import RelayStats
from relay.subscriber_leg import SubscriberLeg
from relay.ticker import Ticker
from relay.track import HISTORY_SPANS, DownTrack, UpTrack
from relay.twcc import MAX_PENDING
from relay.udp_mux import UdpMux
from tests.relay.fakes import FakeTimers, RecordingTransport

PUBLISHER_ADDR = ("192.0.2.10", 40000)
SUBSCRIBER_ADDR = ("192.0.2.20", 40001)
STRANGER_ADDR = ("192.0.2.30", 40002)

# The relay's own ICE credentials for the two legs (fixed, so seeds can authenticate).
PUBLISHER_ICE = IceCredentials("pubfrag1", "publisher-password-0123456")
SUBSCRIBER_ICE = IceCredentials("subfrag1", "subscriber-password-012345")

# Header extension ids as Chromium numbers them.
AUDIO_LEVEL_ID, TWCC_ID, MID_ID, RID_ID = 1, 3, 4, 10

VIDEO_SSRC, AUDIO_SSRC = 0x1001, 0x2002
RED_PT = 63  # the audio track arrives in RED under this type too (stripped to Opus below)
SIMULCAST_SSRCS = (0x3001, 0x3002, 0x3003)  # q, h, f: unknown to the leg until their rid
SIMULCAST_RIDS = ("q", "h", "f")
H264_SSRC = 0x4004  # unknown to the leg: bound by payload type
H264_PT = 102
DOWN_SSRCS = {"video": 0xA001, "audio": 0xA002, "simulcast": 0xA003, "h264": 0xA004}
DOWN_FIRST_SEQ = 5000  # the subscriber's numbering starts after this
RTCP_SSRC = 0x0000BEEF  # the relay's own RTCP sender SSRC on both legs

MAX_SENT_FACTOR = 8  # datagrams out per datagram in, beyond the retransmission budget


class PropertyViolation(AssertionError):
    """A fuzz target's property does not hold for this input."""


@functools.cache
def certificate() -> RelayCertificate:
    return generate_certificate()


class _IdentitySrtp:
    """SRTP with the keys the peer chose: what it sends is what the parsers see."""

    @staticmethod
    def protect(rtp: bytes) -> bytes:
        return bytes(rtp)

    unprotect = protect_rtcp = unprotect_rtcp = protect


class _LastResort(logging.Handler):
    """Records the mux's "datagram dropped" debug records: its catch-all fired."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


_MUX_LOGGER = logging.getLogger("relay.udp_mux")
_HANDLER = _LastResort()


@contextlib.contextmanager
def last_resort_watch() -> Iterator[_LastResort]:
    """Capture exceptions the mux swallows while the block runs."""
    level, propagate = _MUX_LOGGER.level, _MUX_LOGGER.propagate
    _MUX_LOGGER.setLevel(logging.DEBUG)
    _MUX_LOGGER.propagate = False
    _MUX_LOGGER.addHandler(_HANDLER)
    try:
        yield _HANDLER
    finally:
        _MUX_LOGGER.removeHandler(_HANDLER)
        _MUX_LOGGER.setLevel(level)
        _MUX_LOGGER.propagate = propagate


def _participant(identity: str) -> Participant:
    return Participant(
        room="fuzz",
        identity=identity,
        permissions=Permissions(),
        data_limiter=TokenBucket(rate=10, burst=10),
    )


def _up(sid: str, kind: str, codec: Codec, mid: str, ssrc: int | None, rid: str = "") -> UpTrack:
    track = UpTrack(
        sid=sid,
        kind=kind,
        codec=codec,
        mid=mid,
        publisher_sid="PA_pub",
        room="fuzz",
        ssrc=ssrc,
        rid=rid,
    )
    if kind == "video":
        track.cache = PacketCache()
        track.nacks = NackTracker()
    return track


class MediaHarness:
    """One publisher and one subscriber on a mux; ``feed`` a datagram, then check."""

    def __init__(self) -> None:
        self.stats = RelayStats()
        self.mux = UdpMux(self.stats)
        self.transport = RecordingTransport()
        self.mux.connection_made(self.transport)  # type: ignore[arg-type]
        self.timers = FakeTimers()  # copies a resend schedules: run after each datagram
        self.repair = Repair(self.mux, lambda up: self.publisher, call_later=self.timers.call_later)
        env = LegEnv(self.mux, self.mux, self.repair, certificate())
        now = time.perf_counter()
        self.publisher = PublisherLeg(env, _participant("pub"), "server", now)
        self.subscriber = SubscriberLeg(env, _participant("sub"), "server", now)
        for leg, addr, creds in (
            (self.publisher, PUBLISHER_ADDR, PUBLISHER_ICE),
            (self.subscriber, SUBSCRIBER_ADDR, SUBSCRIBER_ICE),
        ):
            leg.credentials = creds
            leg.rtcp_ssrc = RTCP_SSRC
            leg.tx_srtp = leg.rx_srtp = cast(Any, _IdentitySrtp())
            leg.addr = addr
            self.mux.by_addr[addr] = leg
            self.mux.responder.add(creds, leg)
        self.publisher.twcc.sender_ssrc = RTCP_SSRC
        self.publisher.twcc_id, self.publisher.mid_id, self.publisher.rid_id = (
            TWCC_ID,
            MID_ID,
            RID_ID,
        )
        self.video = _up("TR_video", "video", VP8, "0", VIDEO_SSRC)
        self.audio = _up("TR_audio", "audio", OPUS, "1", AUDIO_SSRC)
        self.audio.red_payload_type = RED_PT
        self.simulcast = _up("TR_sim", "video", VP8, "2", None)
        self.simulcast.layers = [
            _up("TR_sim", "video", VP8, "2", None, rid) for rid in SIMULCAST_RIDS
        ]
        self.h264 = _up("TR_h264", "video", H264, "3", None)
        ups = {"video": self.video, "audio": self.audio, "simulcast": self.simulcast}
        ups["h264"] = self.h264
        self.downs: dict[str, DownTrack] = {}
        for name, up in ups.items():
            self.publisher.add_track(up)
            down = DownTrack(
                up=up,
                subscriber_sid="PA_sub",
                mid=str(len(self.downs)),
                payload_type=up.codec.payload_type,
                sink=self.subscriber,
                ssrc=DOWN_SSRCS[name],
                last_seq=DOWN_FIRST_SEQ,
                last_ts=90000,
            )
            down.active = True
            down.attach(up, now)
            self.subscriber.by_ssrc[down.ssrc] = down
            self.downs[name] = down
        rooms = cast(Any, None)  # only consent expiry and speakers read them: not called here
        self.ticker = Ticker(
            {self.publisher: None},
            rooms,
            self.repair,
            ActiveSpeakers(rooms, lambda room, speakers: None),
            lambda participant: None,
            tick_interval=0.02,
            report_interval=1.0,
            consent_timeout=30.0,
        )
        self.datagrams_in = 0

    def feed(self, data: bytes, addr: tuple[str, int], watch: _LastResort) -> None:
        """One datagram through the mux, then the properties."""
        before = len(watch.records)
        self.mux.datagram_received(data, addr)
        self.datagrams_in += 1
        for _ in range(4):  # each copy may schedule the next; a bounded number of them
            self.timers.run_due()
        if len(watch.records) > before:
            record = watch.records[-1]
            assert record.exc_info is not None
            exc = record.exc_info[1]
            watch.records.clear()
            raise PropertyViolation(
                f"the mux's catch-all swallowed {type(exc).__name__}: {exc}"
            ) from exc

    def tick(self, now: float) -> None:
        """The worker's periodic work, as its ticker does it."""
        self.ticker.send_due_keyframe_requests(now)
        self.ticker.send_due_nacks(time.perf_counter())
        self.ticker.select_layers(now, 1.0)
        self.ticker.send_receiver_reports(now)

    def check_output_and_bounds(self) -> None:
        """What went out is well formed; no per-peer state outgrew its bound."""
        retransmit_budget = 200 + 400 * 60  # burst + rate over a generous minute
        limit = MAX_SENT_FACTOR * (self.datagrams_in + 10) + retransmit_budget
        if len(self.transport.sent) > limit:
            raise PropertyViolation(f"{len(self.transport.sent)} datagrams out, limit {limit}")
        for data, addr in self.transport.sent:
            if addr not in (PUBLISHER_ADDR, SUBSCRIBER_ADDR, STRANGER_ADDR):
                raise PropertyViolation(f"sent to an address nobody latched: {addr}")
            if data[0] < 4:
                continue  # STUN answers are checked by the stun target
            if 191 < data[1] < 224:
                _check_rtcp_out(data)
            elif data[0] >> 6 != 2 or payload_offset(data) < 0:
                raise PropertyViolation(f"the relay sent bad RTP {data[:16].hex()}")
        self.transport.sent.clear()
        for up in [self.video, self.audio, self.h264, *self.simulcast.layers]:
            nacks = up.nacks
            if nacks is not None and len(nacks.missing) > nacks.max_missing:
                raise PropertyViolation(f"{len(nacks.missing)} sequence numbers tracked")
        if len(self.publisher.twcc.pending) > MAX_PENDING:
            raise PropertyViolation("TWCC pending list over its bound")
        for down in self.downs.values():
            if len(down.resent_at) > 257 or len(down.history) > HISTORY_SPANS:
                raise PropertyViolation("a down track's resend history outgrew its bound")
            if len(down.nacked) > 64:
                raise PropertyViolation("a NACK kept more than 64 sequence numbers")
        if len(self.subscriber._sr_sent) > 17:
            raise PropertyViolation("sender reports remembered without bound")


def _check_rtcp_out(data: bytes) -> None:
    """Each packet of a compound the relay sends: version 2, its length field matching, its
    padding count within it; and aiortc parses it. TWCC feedback is exempt from the last:
    aiortc requires its feedback payloads 4-aligned before padding, which RFC 3550 does not
    (libwebrtc pads TWCC feedback as the relay does)."""
    i = 0
    while i < len(data):
        if len(data) - i < 4 or data[i] >> 6 != 2:
            raise PropertyViolation(f"the relay sent a bad RTCP header: {data.hex()}")
        end = i + 4 + 4 * int.from_bytes(data[i + 2 : i + 4], "big")
        if end > len(data) or (data[i] & 0x20 and not 0 < data[end - 1] <= end - i - 4):
            raise PropertyViolation(f"the relay sent a bad RTCP length or padding: {data.hex()}")
        if not (data[i + 1] == 205 and data[i] & 0x1F == 15):
            try:
                RtcpPacket.parse(data[i:end])
            except Exception as exc:
                raise PropertyViolation(f"the relay sent bad RTCP {data.hex()}: {exc}") from exc
        i = end


def split_frames(data: bytes) -> list[bytes]:
    """A fuzz input as datagrams: each a 2-byte big-endian length, then that many bytes
    (the last one takes what is left)."""
    frames = []
    i = 0
    while i < len(data):
        if i + 2 > len(data):
            frames.append(data[i:])
            break
        length = (data[i] << 8) | data[i + 1]
        frames.append(data[i + 2 : i + 2 + length])
        i += 2 + length
    return frames


def join_frames(frames: list[bytes]) -> bytes:
    return b"".join(len(f).to_bytes(2, "big") + f for f in frames)
