"""A leg follows its peer to a new address on an authenticated SRTP/SRTCP packet from it,
once that address answers the relay's consent check, and on nothing else: no network, real
SRTP keys (``relay.handover``, ``relay.consent``)."""

from __future__ import annotations

import time

import pylibsrtp
import pytest
from aioice import stun
from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket, RtpPacket

from relay.codecs import VP8
from relay.consent import RETRANSMITS
from relay.dtls_adapter import generate_certificate
from relay.ice_lite import IceCredentials
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


PEER = IceCredentials.generate()  # the peer's ICE credentials, as its SDP gave them


@pytest.fixture
def mux() -> UdpMux:
    mux = UdpMux(RelayStats(), moves_per_ip=5)
    mux.connection_made(RecordingTransport())  # type: ignore[arg-type]
    return mux


def _connect(mux: UdpMux, leg: Leg) -> None:
    """As ICE and DTLS would leave it: latched at OLD, receiving with KEY."""
    leg.rx_srtp = FastSrtp(_session(KEY, pylibsrtp.Policy.SSRC_ANY_INBOUND))
    leg.tx_srtp = FastSrtp(_session(KEY, pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    leg.remote_credentials = PEER
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


def _sent(mux: UdpMux) -> list[tuple[bytes, tuple[str, int]]]:
    transport = mux.transport
    assert isinstance(transport, RecordingTransport)
    return transport.sent


def _checks_to(mux: UdpMux, addr: tuple[str, int]) -> list[stun.Message]:
    """The binding requests the relay sent to ``addr``."""
    return [
        stun.parse_message(data)
        for data, to in _sent(mux)
        if to == addr and data[0] < 4 and not data[0] & 0x01
    ]


def _answer(
    request: stun.Message,
    pwd: str = PEER.pwd,
    transaction_id: bytes | None = None,
    message_class: stun.Class = stun.Class.RESPONSE,
) -> bytes:
    """What the peer's ICE agent answers a check with (aioice's ``request_received``)."""
    response = stun.Message(
        stun.Method.BINDING, message_class, transaction_id or request.transaction_id
    )
    response.attributes["XOR-MAPPED-ADDRESS"] = ("203.0.113.1", 3478)
    response.add_message_integrity(pwd.encode())
    return bytes(response)


def _stun_request(leg: Leg) -> bytes:
    """A binding request from the peer with its own ICE credentials."""
    message = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    message.attributes["USERNAME"] = f"{leg.credentials.ufrag}:{PEER.ufrag}"
    message.add_message_integrity(leg.credentials.pwd.encode())
    return bytes(message)


def _media_to(mux: UdpMux, addr: tuple[str, int]) -> int:
    return sum(1 for data, to in _sent(mux) if to == addr and 127 < data[0] < 192)


def test_viewer_moves_on_its_rtcp_from_a_new_address_that_consents(mux: UdpMux) -> None:
    leg = _viewer(mux)
    peer = _sender()
    mux.datagram_received(peer.protect_rtcp(_receiver_report()), OLD)  # names the peer
    assert leg.rtcp_sources == {PEER_RTCP_SSRC}
    rtcp_in = mux.stats.rtcp_packets_in

    moved = peer.protect_rtcp(_receiver_report())
    mux.datagram_received(moved, NEW)
    assert leg.addr == OLD  # not before NEW answers the relay's check
    assert mux.stats.rtcp_packets_in == rtcp_in + 1  # but the packet was the leg's at once
    (check,) = _checks_to(mux, NEW)
    assert check.attributes["USERNAME"] == f"{PEER.ufrag}:{leg.credentials.ufrag}"
    assert check.check_message_integrity(PEER.pwd.encode())
    assert "FINGERPRINT" in check.attributes

    mux.datagram_received(_answer(check), NEW)
    assert leg.addr == NEW and mux.by_addr == {NEW: leg}
    assert mux.stats.address_changes == 1
    assert mux.stats.moves_refused == 0 and not mux.moves

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
    assert mux.stats.rtp_packets_in == 3  # the packet that asked for the move was forwarded
    (check,) = _checks_to(mux, NEW)
    mux.datagram_received(_answer(check), NEW)
    assert leg.addr == NEW


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


def test_a_spoofed_source_that_never_answers_gets_no_media(mux: UdpMux) -> None:
    """The reflector: one packet the leg's own keys authenticate, or one binding request with
    its own ICE credentials, from a spoofed source, moves nothing; the relay's checks to it go
    unanswered and stop."""
    leg = _viewer(mux)
    peer = _sender()
    mux.datagram_received(peer.protect_rtcp(_receiver_report()), OLD)
    mux.datagram_received(peer.protect_rtcp(_receiver_report()), NEW)  # SRTCP, spoofed
    mux.datagram_received(_stun_request(leg), NEW)  # and STUN, while the check is pending
    assert len(_checks_to(mux, NEW)) == 1  # one check at a time
    leg.send_rtcp(_receiver_report())  # what the relay sends the leg still goes to OLD
    assert _media_to(mux, OLD) == 1 and _media_to(mux, NEW) == 0

    start = time.perf_counter()
    at = start
    for wait in (*RETRANSMITS, 0.4, 1.0):
        at += wait
        mux.poll_moves(at)
    assert len(_checks_to(mux, NEW)) == 4  # sent at 0, 50, 150 and 350 ms, then no more
    assert leg.addr == OLD and mux.by_addr == {OLD: leg}
    assert mux.stats.moves_refused == 1 and not mux.moves and not mux.moving_to
    assert mux.stats.address_changes == 0

    # the same from a binding request alone: its answer goes to the spoofed source (ICE-lite
    # must answer), then a check; nothing more
    mux.datagram_received(_stun_request(leg), THIRD)
    assert len(_checks_to(mux, THIRD)) == 1
    mux.poll_moves(at + 2.0)
    mux.poll_moves(at + 4.0)
    mux.poll_moves(at + 6.0)
    mux.poll_moves(at + 8.0)
    assert leg.addr == OLD and mux.stats.moves_refused == 2
    leg.send_rtcp(_receiver_report())
    assert _media_to(mux, THIRD) == 0 and _media_to(mux, NEW) == 0


def test_a_binding_request_from_a_new_address_moves_the_leg_once_it_consents(
    mux: UdpMux,
) -> None:
    leg = _viewer(mux)
    mux.datagram_received(_stun_request(leg), NEW)
    assert leg.addr == OLD
    (check,) = _checks_to(mux, NEW)
    mux.datagram_received(_answer(check), NEW)
    assert leg.addr == NEW and mux.by_addr == {NEW: leg}
    leg.send_rtcp(_receiver_report())
    assert _media_to(mux, NEW) == 1


@pytest.mark.parametrize("wrong", ["password", "transaction", "source", "error_class", "garbage"])
def test_a_wrong_answer_moves_nothing(mux: UdpMux, wrong: str) -> None:
    leg = _viewer(mux)
    peer = _sender()
    mux.datagram_received(peer.protect_rtcp(_receiver_report()), OLD)
    mux.datagram_received(peer.protect_rtcp(_receiver_report()), NEW)
    (check,) = _checks_to(mux, NEW)
    if wrong == "password":
        mux.datagram_received(_answer(check, pwd=leg.credentials.pwd), NEW)
    elif wrong == "transaction":
        mux.datagram_received(_answer(check, transaction_id=bytes(12)), NEW)
    elif wrong == "source":  # the right answer, from another port than the one checked
        mux.datagram_received(_answer(check), (NEW[0], NEW[1] + 1))
    elif wrong == "error_class":
        mux.datagram_received(_answer(check, message_class=stun.Class.ERROR), NEW)
    else:
        mux.datagram_received(b"\x01\x01\x00\x08" + bytes(16), NEW)
    assert leg.addr == OLD and mux.by_addr == {OLD: leg}
    # the check goes on: the peer's own answer still moves it
    mux.datagram_received(_answer(check), NEW)
    assert leg.addr == NEW


def test_a_leg_before_dtls_latches_at_once(mux: UdpMux) -> None:
    """The first latch and moves before DTLS finished stay immediate: the handshake proves
    the path, and no media flows yet."""
    env = LegEnv(mux, mux, Repair(mux, lambda up: None), generate_certificate())
    leg = ViewerLeg(env, _participant("new"), "server", time.perf_counter())
    mux.responder.add(leg.credentials, leg)
    mux.datagram_received(_stun_request(leg), OLD)
    assert leg.addr == OLD
    mux.datagram_received(_stun_request(leg), NEW)
    assert leg.addr == NEW and not mux.moves


def test_a_leg_without_the_peers_credentials_does_not_move(mux: UdpMux) -> None:
    leg = _viewer(mux)
    leg.remote_credentials = None  # a bridge: its peer is another relay
    mux.datagram_received(_stun_request(leg), NEW)
    assert leg.addr == OLD and not _checks_to(mux, NEW)
    assert mux.stats.moves_refused == 1


def test_a_pending_move_ends_with_its_leg(mux: UdpMux) -> None:
    leg = _viewer(mux)
    mux.datagram_received(_stun_request(leg), NEW)
    assert mux.moves
    mux.forget(leg)
    assert not mux.moves and not mux.moving_to
