"""The worker's UDP socket: bound where configured, with the buffers asked for."""

from __future__ import annotations

import socket
from pathlib import Path

from relay.data_message import Relayed
from relay.room import Participant, Room
from relay.track import UpTrack
from relay.worker import RelayWorker, WorkerConfig


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
    sock = socket.socket(fileno=worker.mux.transport.get_extra_info("socket").fileno())
    try:
        return sock.getsockopt(socket.SOL_SOCKET, option) // 2  # Linux reports double
    finally:
        sock.detach()  # the worker owns the descriptor


async def test_socket_buffers_are_raised_to_the_configured_size() -> None:
    cap = min(
        int(Path(f"/proc/sys/net/core/{name}").read_text()) for name in ("rmem_max", "wmem_max")
    )
    wanted = min(1024 * 1024, cap)
    default = int(Path("/proc/sys/net/core/rmem_default").read_text())
    assert wanted > default, "the test needs rmem_max above the default to show anything"
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
