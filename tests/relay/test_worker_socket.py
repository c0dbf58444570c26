"""The worker's UDP sockets, its main one and an initiating leg's own: bound where configured,
with the buffers asked for."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from relay.bridging import BridgeEndpoint
from relay.data_message import Relayed
from relay.room import Participant, Room
from relay.track import UpTrack
from relay.worker import RelayWorker, WorkerConfig
from tests.helpers import eventually, open_udp_ports


class _Observer:
    def participant_joined(self, room: Room, participant: Participant) -> None: ...
    def participant_left(self, room: Room, participant: Participant, reason: str) -> None: ...
    def track_published(self, room: Room, participant: Participant, track: UpTrack) -> None: ...
    def track_unpublished(self, room: Room, participant: Participant, track: UpTrack) -> None: ...
    def track_muted(self, room: Room, participant: Participant, track: UpTrack) -> None: ...
    def negotiation_needed(self, participant: Participant) -> None: ...
    def data_rejected(self, participant: Participant, code: str, message: str) -> None: ...
    def data_relayed(self, participant: Participant, lossy: bool, relayed: Relayed) -> None: ...


def _granted(worker: RelayWorker, option: int) -> int:
    transport = worker.mux.transport
    assert transport is not None
    return _granted_on(transport.get_extra_info("socket").fileno(), option)


def _granted_on(fileno: int, option: int) -> int:
    sock = socket.socket(fileno=fileno)
    try:
        return sock.getsockopt(socket.SOL_SOCKET, option) // 2  # Linux reports double
    finally:
        sock.detach()  # the worker owns the descriptor


def _wanted() -> int:
    """A buffer size above the kernel's default that the kernel grants."""
    cap = min(
        int(Path(f"/proc/sys/net/core/{name}").read_text()) for name in ("rmem_max", "wmem_max")
    )
    wanted = min(1024 * 1024, cap)
    default = int(Path("/proc/sys/net/core/rmem_default").read_text())
    assert wanted > default, "the test needs rmem_max above the default to show anything"
    return wanted


async def test_socket_buffers_are_raised_to_the_configured_size() -> None:
    wanted = _wanted()
    worker = RelayWorker(WorkerConfig(port=0, udp_buffer_bytes=wanted), _Observer())
    await worker.start()
    try:
        assert worker.port != 0
        assert _granted(worker, socket.SO_RCVBUF) >= wanted
        assert _granted(worker, socket.SO_SNDBUF) >= wanted
    finally:
        await worker.stop()

    plain = RelayWorker(WorkerConfig(port=0), _Observer())  # 0: the kernel's default
    await plain.start()
    try:
        assert _granted(plain, socket.SO_RCVBUF) < wanted
    finally:
        await plain.stop()


@pytest.mark.timeout(20)
async def test_an_initiating_leg_has_its_own_socket_like_the_main_one_until_the_worker_stops(
    unused_udp_port: int,
) -> None:
    wanted = _wanted()
    worker = RelayWorker(WorkerConfig(port=0, udp_buffer_bytes=wanted), _Observer())
    await worker.start()
    try:
        nobody = BridgeEndpoint(
            addresses=(("127.0.0.1", unused_udp_port),), ufrag="u", pwd="p" * 22, fingerprints=()
        )
        worker.bridging.open_in("room", "origin", nobody)
        leg = worker.bridging.incoming[("room", "origin")]
        own = worker.transports.sockets[leg]
        assert own.addr[0] == worker.config.bind and own.addr[1] not in (0, worker.port)
        # Its own peer is reached on its socket; what it forwards, and the retransmissions
        # of that, leave the main one, which local viewers latched to.
        assert leg.wire is own.mux and leg.fanout is worker.mux and worker.repair.wire is worker.mux
        await eventually(lambda: own.endpoint is not None, 5)
        fileno = own.sock.fileno()
        assert _granted_on(fileno, socket.SO_RCVBUF) >= wanted
        assert _granted_on(fileno, socket.SO_SNDBUF) >= wanted
    finally:
        await worker.stop()
    # The bridge never reached a room, so no leave closed it: stopping the worker did.
    assert worker.transports.sockets == {}
    await eventually(lambda: own.addr[1] not in open_udp_ports(), 5)
