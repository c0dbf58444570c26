"""A leg follows its peer to a new address on an authenticated SRTP/SRTCP packet from it,
and on nothing else: no network, real SRTP keys (``relay.handover``)."""

from __future__ import annotations

import time

import pylibsrtp
import pytest
from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket, RtpPacket

from relay.codecs import VP8
from relay.dtls_adapter import generate_certificate
from relay.leg import Leg, LegEnv
from relay.nack_tracker import NackTracker
from relay.packet_cache import PacketCache
from relay.publisher_leg import PublisherLeg
from relay.rate_limiter import TokenBucket
from relay.repair import Repair
from relay.room import Participant, Permissions
from relay.srtp_fast import FastSrtp
from relay.stats import RelayStats
from relay.track import UpTrack
from relay.udp_mux import UdpMux
from relay.viewer_leg import ViewerLeg
from tests.relay.fakes import RecordingTransport

KEY = bytes(range(30))  # AES_CM_128_HMAC_SHA1_80: 16 bytes of key, 14 of salt
OTHER_KEY = bytes(range(1, 31))
OLD, NEW, THIRD = ("192.0.2.1", 5000), ("192.0.2.1", 6000), ("198.51.100.9", 7000)
VIDEO_SSRC, PEER_RTCP_SSRC = 1111, 2222


def _session(key: bytes, direction: int) -> pylibsrtp.Session:
    return pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=direction))


def _sender(key: bytes = KEY) -> pylibsrtp.Session:
    """The peer's sending session."""
    return _session(key, pylibsrtp.Policy.SSRC_ANY_OUTBOUND)


def _participant(identity: str) -> Participant:
    return Participant(
        room="r", identity=identity, permissions=Permissions(), data_limiter=TokenBucket(10, 10)
    )


@pytest.fixture
def mux() -> UdpMux:
    mux = UdpMux(RelayStats(), moves_per_ip=5)
    mux.connection_made(RecordingTransport())  # type: ignore[arg-type]
    return mux


def _connect(mux: UdpMux, leg: Leg) -> None:
    """As ICE and DTLS would leave it: latched at OLD, receiving with KEY."""
    leg.rx_srtp = FastSrtp(_session(KEY, pylibsrtp.Policy.SSRC_ANY_INBOUND))
    leg.tx_srtp = FastSrtp(_session(KEY, pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    mux.responder.add(leg.credentials, leg)
    mux.by_addr[OLD] = leg
    leg.addr = OLD
    leg.last_seen = time.perf_counter() - 1.0


def _viewer(mux: UdpMux) -> ViewerLeg:
    env = LegEnv(mux, mux, Repair(mux, lambda up: None), generate_certificate())
    leg = ViewerLeg(env, _participant("viewer"), "server", time.perf_counter())
    _connect(mux, leg)
    return leg


def _publisher(mux: UdpMux) -> PublisherLeg:
    env = LegEnv(mux, mux, Repair(mux, lambda up: None), generate_certificate())
    leg = PublisherLeg(env, _participant("pub"), "server", time.perf_counter())
    up = UpTrack(
        sid="TR_v", kind="video", codec=VP8, mid="0", publisher_sid="PA", room="r", ssrc=VIDEO_SSRC
    )
    up.cache, up.nacks = PacketCache(), NackTracker()
    leg.add_track(up)
    _connect(mux, leg)
    return leg


def _receiver_report() -> bytes:
    report = RtcpReceiverInfo(
        ssrc=3333, fraction_lost=0, packets_lost=0, highest_sequence=1, jitter=0, lsr=0, dlsr=0
    )
    return bytes(RtcpRrPacket(ssrc=PEER_RTCP_SSRC, reports=[report]))


def _rtp(seq: int) -> bytes:
    packet = RtpPacket(payload_type=VP8.payload_type, sequence_number=seq, ssrc=VIDEO_SSRC)
    packet.payload = b"\x10" + bytes(20)
    return packet.serialize()


def test_viewer_moves_on_its_rtcp_from_a_new_address(mux: UdpMux) -> None:
    leg = _viewer(mux)
    peer = _sender()
    mux.datagram_received(peer.protect_rtcp(_receiver_report()), OLD)  # names the peer
    assert leg.rtcp_sources == {PEER_RTCP_SSRC}
    rtcp_in = mux.stats.rtcp_packets_in

    moved = peer.protect_rtcp(_receiver_report())
    mux.datagram_received(moved, NEW)
    assert leg.addr == NEW and mux.by_addr == {NEW: leg}
    assert mux.stats.address_changes == 1
    assert mux.stats.rtcp_packets_in == rtcp_in + 1  # and the packet was the leg's

    mux.datagram_received(moved, THIRD)  # the same packet replayed from elsewhere
    assert leg.addr == NEW
    assert mux.stats.dropped["unknown_source"] == 1


def test_a_packet_the_legs_keys_do_not_authenticate_moves_nothing(mux: UdpMux) -> None:
    leg = _viewer(mux)
    mux.datagram_received(_sender().protect_rtcp(_receiver_report()), OLD)
    forged = _sender(OTHER_KEY).protect_rtcp(_receiver_report())  # the right SSRC, not the keys
    mux.datagram_received(forged, NEW)
    assert leg.addr == OLD
    assert mux.stats.dropped["unknown_source"] == 1
    assert mux.stats.dropped["srtp_error"] == 0  # a trial failing is not the leg's error


def test_publisher_moves_on_newer_media_only(mux: UdpMux) -> None:
    leg = _publisher(mux)
    peer = _sender()
    stale = peer.protect(_rtp(90))
    old = [peer.protect(_rtp(seq)) for seq in range(100, 103)]
    for packet in old[:2]:
        mux.datagram_received(packet, OLD)
    # never seen, so libsrtp alone would take it from anywhere; older than 101, it may not
    # move the leg
    mux.datagram_received(stale, NEW)
    assert leg.addr == OLD
    mux.datagram_received(old[2], NEW)
    assert leg.addr == NEW
    assert mux.stats.rtp_packets_in == 3  # the packet that moved it was forwarded too


def test_unlatched_packets_are_limited_per_source_ip(mux: UdpMux) -> None:
    leg = _viewer(mux)
    junk = bytes([0x80, 0x60]) + bytes(30)
    for port in range(10):  # one host, many ports: counted per address
        mux.datagram_received(junk, ("203.0.113.5", 40000 + port))
    assert mux.stats.dropped["move_rate_limited"] == 5
    assert mux.stats.dropped["unknown_source"] == 5
    for _ in range(10):
        mux.datagram_received(junk, ("127.0.0.1", 40000))  # loopback is exempt
    assert mux.stats.dropped["move_rate_limited"] == 5
    assert leg.addr == OLD
