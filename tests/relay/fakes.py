"""Stand-ins for a down leg and the worker's socket, for tests of the repair and numbering
logic without the network."""

from __future__ import annotations

from collections.abc import Callable

from relay.rate_limiter import TokenBucket
from relay.stats import RelayStats


class FakeSink:
    """A down leg: an address, no RTT yet, SRTP that leaves packets as they are."""

    addr = ("127.0.0.1", 1)
    rtt_ms = None
    fraction_lost = None
    closed = False

    def __init__(self) -> None:
        self.retransmit_budget = TokenBucket(rate=400.0, burst=200.0)

    class tx_srtp:
        @staticmethod
        def protect(packet: bytes) -> bytes:
            return packet


class FakeWire:
    """The worker's socket as ``Repair`` sees it, counting what goes out."""

    def __init__(self) -> None:
        self.stats = RelayStats()
        self.sent: list[bytes] = []
        self.fast_sendto = self.sendto

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append(data)


class FakeTimers:
    """``loop.call_later`` for code that schedules callbacks: they run when the test says."""

    def __init__(self) -> None:
        self.pending: list[tuple[float, Callable[..., object], tuple[object, ...]]] = []

    def call_later(self, delay: float, callback: Callable[..., object], *args: object) -> None:
        self.pending.append((delay, callback, args))

    def run_due(self) -> int:
        """Run what is pending now (not what those callbacks schedule); how many ran."""
        due, self.pending = self.pending, []
        for _, callback, args in due:
            callback(*args)
        return len(due)


class RecordingTransport:
    """A datagram transport that keeps what is sent (``UdpMux.connection_made`` takes it)."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((bytes(data), addr))

    def is_closing(self) -> bool:
        return False
