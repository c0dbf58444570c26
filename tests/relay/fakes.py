"""Stand-ins for a down leg and the worker's socket, for tests of the repair and numbering
logic without the network."""

from __future__ import annotations

from relay.rate_limiter import TokenBucket
from relay.stats import RelayStats


class FakeSink:
    """A down leg: an address, no RTT yet, SRTP that leaves packets as they are."""

    addr = ("127.0.0.1", 1)
    rtt_ms = None

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
