"""An initiating leg against the existing answering leg, over real sockets on 127.0.0.1 (two
workers' muxes in one process, no signaling): checks from the leg's own socket, latching,
DTLS roles, SRTP both ways, several legs between the same two workers, what must not
connect, and the leg's socket closed with it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvloop
from aioice import stun
from aioice.utils import random_transaction_id

from relay import rtcp
from relay.ice_initiator import CheckSchedule
from relay.ice_lite import IceCredentials
from relay.leg import Address, Leg
from relay.publisher_leg import PublisherLeg
from relay.rate_limiter import TokenBucket
from relay.repair import Repair
from relay.room import Participant, Permissions
from relay.stats import RelayStats
from relay.transport import RemoteTransport, Transports
from relay.udp_mux import UdpMux, bind_socket
from relay.viewer_leg import ViewerLeg
from tests.helpers import eventually, open_udp_ports

pytestmark = pytest.mark.timeout(20)

LOOPBACK = "127.0.0.1"
RTP = bytes([0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 7]) + b"media"


class RecordingLeg(PublisherLeg):
    """Keeps the RTP and RTCP it receives instead of acting on them: the point here is the
    transport."""

    received: list[bytes]
    rtcp_received: list[str]

    def on_srtp(self, data: bytes, arrival: float) -> None:
        assert self.rx_srtp is not None
        if rtcp.is_rtcp(data):
            self.rtcp_received += [type(p).__name__ for p in self.unprotect_rtcp(data) or []]
        else:
            self.received.append(bytes(self.rx_srtp.unprotect(data)))


def _participant(identity: str) -> Participant:
    return Participant("room", identity, Permissions(), TokenBucket(rate=10.0, burst=10.0))


@dataclass
class Side:
    """One worker's socket: a mux and its transports, as ``RelayWorker`` wires them."""

    mux: UdpMux
    transports: Transports
    endpoint: asyncio.BaseTransport
    addr: Address
    connected: list[Leg] = field(default_factory=list)
    failed: list[Leg] = field(default_factory=list)
    legs: list[RecordingLeg] = field(default_factory=list)

    def answering(self) -> RecordingLeg:
        leg = self.transports.new_leg(RecordingLeg, _participant("answering"), "server")
        leg.received, leg.rtcp_received = [], []
        self.legs.append(leg)
        return leg

    def initiating(
        self, remote: RemoteTransport, schedule: CheckSchedule | None = None
    ) -> RecordingLeg:
        participant = _participant("initiating")
        leg = self.transports.initiating_leg(RecordingLeg, participant, remote, schedule)
        leg.received, leg.rtcp_received = [], []
        self.legs.append(leg)
        return leg

    def own(self, leg: Leg) -> Address:
        """Where an initiating leg's own socket is bound."""
        return self.transports.sockets[leg].addr

    def toward(self, leg: RecordingLeg) -> RemoteTransport:
        """How a peer reaches ``leg``, an answering leg here, as bridging announces it."""
        return RemoteTransport(self.addr, leg.credentials, [self.transports.fingerprint])

    async def close(self) -> None:
        for leg in self.legs:
            await self.transports.close(leg)
        self.transports.stop()
        self.endpoint.close()


def _transports(mux: UdpMux, connected: list[Leg], failed: list[Leg]) -> Transports:
    return Transports(
        mux,
        Repair(mux, lambda up: None),
        [LOOPBACK],
        0,
        connected.append,
        failed.append,
        lambda: bind_socket(LOOPBACK, 0),
    )


async def _side() -> Side:
    mux = UdpMux(RelayStats())
    connected: list[Leg] = []
    failed: list[Leg] = []
    transports = _transports(mux, connected, failed)
    endpoint, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: mux, local_addr=(LOOPBACK, 0)
    )
    addr = endpoint.get_extra_info("sockname")[:2]
    transports.port = addr[1]
    return Side(mux, transports, endpoint, addr, connected, failed)


@pytest.fixture
async def sides() -> AsyncIterator[tuple[Side, Side]]:
    a = await _side()
    try:
        b = await _side()
    except BaseException:
        await a.close()
        raise
    try:
        yield a, b
    finally:
        await b.close()
        await a.close()


class Peer(asyncio.DatagramProtocol):
    """A bare socket the test speaks STUN through: a silent origin, or an intruder."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None
        self.addr: Address = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.addr = transport.get_extra_info("sockname")[:2]

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.inbox.put_nowait(data)

    async def receive(self, timeout: float = 5.0) -> bytes:
        return await asyncio.wait_for(self.inbox.get(), timeout)

    def send(self, data: bytes, addr: Address) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)


@pytest.fixture
async def peers() -> AsyncIterator[tuple[Peer, Peer]]:
    loop = asyncio.get_running_loop()
    opened: list[asyncio.BaseTransport] = []
    try:
        for _ in range(2):
            transport, _ = await loop.create_datagram_endpoint(Peer, local_addr=(LOOPBACK, 0))
            opened.append(transport)
        yield opened[0].get_protocol(), opened[1].get_protocol()  # type: ignore[misc]
    finally:
        for each in opened:
            each.close()


def _answer(transaction_id: bytes, pwd: str, mapped: Address) -> bytes:
    answer = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, transaction_id)
    answer.attributes["XOR-MAPPED-ADDRESS"] = mapped
    answer.add_message_integrity(pwd.encode())
    return bytes(answer)


async def test_initiating_leg_connects_from_its_own_socket_and_srtp_flows_both_ways(
    sides: tuple[Side, Side],
) -> None:
    a, b = sides
    origin = a.answering()
    origin.remote_fingerprints = [b.transports.fingerprint]  # learned through signaling
    viewer = b.initiating(a.toward(origin))

    await eventually(lambda: origin.tx_srtp is not None and viewer.tx_srtp is not None, 10)

    own = b.own(viewer)
    own_mux = b.transports.sockets[viewer].mux
    assert own[0] == LOOPBACK and own != b.addr
    assert origin.addr == own and a.mux.by_addr == {own: origin}
    assert viewer.addr == a.addr and own_mux.by_addr == {a.addr: viewer}
    assert b.mux.by_addr == {} and len(b.mux.responder) == 0  # the main socket has no part
    # It talks to its peer on its own socket, and forwards to local viewers on the main one.
    assert viewer.wire is own_mux and viewer.fanout is b.mux
    assert viewer.dtls.role == "client" and origin.dtls.role == "server"
    assert origin.rx_srtp is not None and viewer.rx_srtp is not None
    assert a.connected == [origin] and b.connected == [viewer]

    assert viewer.tx_srtp is not None
    viewer.wire.sendto(viewer.tx_srtp.protect(RTP), a.addr)
    await eventually(lambda: origin.received == [RTP], 5)
    reply = RTP[:3] + b"\x02" + RTP[4:]
    assert origin.tx_srtp is not None
    origin.wire.sendto(origin.tx_srtp.protect(reply), own)
    await eventually(lambda: viewer.received == [reply], 5)

    # What it sends upstream (keyframe requests, NACKs, reports) leaves its own socket too.
    viewer.send_rtcp(rtcp.pli(viewer.rtcp_ssrc, 7))
    viewer.send_rtcp(rtcp.nack(viewer.rtcp_ssrc, 7, [1, 2]))
    await eventually(lambda: origin.rtcp_received == ["RtcpPsfbPacket", "RtcpRtpfbPacket"], 5)
    assert a.failed == [] and b.failed == []


async def test_legs_between_the_same_two_workers_both_ways_connect_and_stay_apart(
    sides: tuple[Side, Side],
) -> None:
    """Two bridges from a to b (two rooms) and one from b to a (a room bridged both ways)."""
    a, b = sides
    pairs: list[tuple[RecordingLeg, RecordingLeg, Side]] = []
    for origin_side, viewing_side in ((a, b), (a, b), (b, a)):
        origin = origin_side.answering()
        origin.remote_fingerprints = [viewing_side.transports.fingerprint]
        pairs.append((origin, viewing_side.initiating(origin_side.toward(origin)), viewing_side))

    await eventually(
        lambda: all(o.tx_srtp is not None and v.tx_srtp is not None for o, v, _ in pairs), 10
    )
    for n, (origin, viewer, viewing_side) in enumerate(pairs):
        assert origin.addr == viewing_side.own(viewer)
        assert origin.tx_srtp is not None and viewer.tx_srtp is not None
        assert origin.addr is not None and viewer.addr is not None
        packet = RTP[:-1] + bytes([n])
        viewer.wire.sendto(viewer.tx_srtp.protect(packet), viewer.addr)
        origin.wire.sendto(origin.tx_srtp.protect(packet), origin.addr)
    await eventually(lambda: all(o.received and v.received for o, v, _ in pairs), 5)
    for n, (origin, viewer, _) in enumerate(pairs):
        assert origin.received == [RTP[:-1] + bytes([n])] == viewer.received
    assert b.own(pairs[0][1]) != b.own(pairs[1][1])
    assert a.failed == [] and b.failed == []


async def test_a_down_leg_cannot_initiate(sides: tuple[Side, Side]) -> None:
    _, b = sides
    remote = RemoteTransport(b.addr, IceCredentials.generate(), [])
    with pytest.raises(TypeError):
        b.transports.initiating_leg(ViewerLeg, _participant("viewer"), remote)
    assert b.transports.sockets == {}  # refused before a socket was opened


@pytest.mark.parametrize("wrong", ["ufrag", "pwd"])
async def test_wrong_credentials_never_connect_and_fail_within_the_bound(
    sides: tuple[Side, Side], wrong: str
) -> None:
    a, b = sides
    origin = a.answering()
    origin.remote_fingerprints = [b.transports.fingerprint]
    good = origin.credentials
    bad = IceCredentials(
        good.ufrag + "x" if wrong == "ufrag" else good.ufrag,
        IceCredentials.generate().pwd if wrong == "pwd" else good.pwd,
    )
    bound = 0.5
    started = asyncio.get_running_loop().time()
    viewer = b.initiating(
        RemoteTransport(a.addr, bad, [a.transports.fingerprint]),
        CheckSchedule(connect_timeout=bound),
    )

    await eventually(lambda: b.failed == [viewer], bound + 3)

    assert asyncio.get_running_loop().time() - started >= bound  # it kept trying until then
    assert a.mux.stats.dropped["unauthorized"] >= 2  # the origin refused several checks
    assert viewer.initiator is not None and viewer.initiator.last_error == 401
    assert origin.addr is None and viewer.addr is None
    assert a.mux.by_addr == {} and b.transports.sockets[viewer].mux.by_addr == {}
    assert not origin.dtls_started and not viewer.dtls_started
    assert a.failed == [] and b.connected == []


async def test_only_an_authenticated_answer_from_the_checked_address_latches(
    sides: tuple[Side, Side], peers: tuple[Peer, Peer]
) -> None:
    _, b = sides
    origin, intruder = peers
    remote = IceCredentials.generate()
    # No fingerprints: DTLS does not start, the point is the latch.
    viewer = b.initiating(RemoteTransport(origin.addr, remote, []))
    check = stun.parse_message(await origin.receive())
    assert check.attributes["USERNAME"] == f"{remote.ufrag}:{viewer.credentials.ufrag}"
    assert check.check_message_integrity(remote.pwd.encode())
    own = b.own(viewer)
    own_mux = b.transports.sockets[viewer].mux
    good = _answer(check.transaction_id, remote.pwd, own)

    intruder.send(good, own)  # the right answer from the wrong address
    origin.send(good, b.addr)  # to the worker's main socket, where nobody initiates
    origin.send(_answer(random_transaction_id(), remote.pwd, own), own)
    origin.send(_answer(check.transaction_id, IceCredentials.generate().pwd, own), own)
    origin.send(RTP, own)  # media before the latch
    stats = b.mux.stats  # one worker's counters, whichever socket
    await eventually(
        lambda: stats.dropped["unknown_source"] >= 3 and stats.dropped["unauthorized"] >= 2, 5
    )
    assert viewer.addr is None and own_mux.by_addr == {} and b.mux.by_addr == {}

    origin.send(good, own)
    await eventually(lambda: viewer.addr == origin.addr, 5)
    assert own_mux.by_addr == {origin.addr: viewer} and b.mux.by_addr == {}
    assert b.failed == []


async def test_closing_the_leg_stops_its_checks(
    sides: tuple[Side, Side], peers: tuple[Peer, Peer]
) -> None:
    _, b = sides
    origin, _ = peers
    every_10_ms = CheckSchedule(first_retransmit=0.01, max_retransmit=0.01)
    viewer = b.initiating(RemoteTransport(origin.addr, IceCredentials.generate(), []), every_10_ms)
    for _ in range(3):  # checks go out to a silent origin
        await origin.receive()

    checks = b.transports._checks[viewer]
    await b.transports.close(viewer)
    assert viewer not in b.transports.sockets
    await asyncio.wait([checks])  # ended: what it sent before has reached the origin's inbox
    while not origin.inbox.empty():
        origin.inbox.get_nowait()
    with pytest.raises(TimeoutError):  # twenty check intervals of silence
        await origin.receive(timeout=0.2)
    assert b.failed == []


async def test_an_origin_that_stops_answering_fails_the_leg_on_lost_consent(
    sides: tuple[Side, Side],
) -> None:
    a, b = sides
    origin = a.answering()
    origin.remote_fingerprints = [b.transports.fingerprint]
    quick = CheckSchedule(consent_interval=0.05, consent_timeout=0.5)
    viewer = b.initiating(a.toward(origin), quick)
    await eventually(lambda: viewer.tx_srtp is not None, 10)
    seen = origin.last_seen
    await eventually(lambda: origin.last_seen > seen, 5)  # consent checks keep arriving

    a.legs.remove(origin)
    await a.transports.close(origin)  # the origin forgets the credentials: 401s from now on
    await eventually(lambda: b.failed == [viewer], 5)
    assert viewer.addr == a.addr  # it had connected: this was consent, not the first check


Runner = Callable[[Coroutine[Any, Any, None]], None]


@pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
@pytest.mark.parametrize("when", ["before_its_task_ran", "attaching", "checking", "stopping"])
def test_the_legs_socket_is_closed_with_it(run: Runner, when: str) -> None:
    """Closed at each point of its life, and on either loop (production runs uvloop, which
    keeps a socket open when the attaching is cancelled instead of left to finish)."""

    async def scenario() -> None:
        transports = _transports(UdpMux(RelayStats()), [], [])
        nobody = RemoteTransport((LOOPBACK, 9), IceCredentials.generate(), [])  # no answer
        leg = transports.initiating_leg(PublisherLeg, _participant("initiating"), nobody)
        own = transports.sockets[leg]
        assert own.addr[0] == LOOPBACK and own.addr[1] in open_udp_ports()
        if when == "attaching":
            while own.mux.transport is None:  # the loop has the socket, the task waits for it
                await asyncio.sleep(0)
            assert own.endpoint is None
        elif when in ("checking", "stopping"):
            await eventually(lambda: own.endpoint is not None, 5)
        if when == "stopping":
            transports.stop()  # the worker stops with the leg still open
        else:
            await transports.close(leg)
        assert leg not in transports.sockets
        await eventually(lambda: own.addr[1] not in open_udp_ports(), 5)

    run(scenario())
