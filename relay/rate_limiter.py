"""Rate limits: a token bucket per participant (data messages, WebSocket messages), and a
count per key and second for sources that are not participants yet (STUN requests per IP
address, joins per client IP)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(slots=True)
class TokenBucket:
    rate: float  # tokens per second
    burst: float
    tokens: float = -1.0
    updated: float = 0.0

    def allow(self, now: float, cost: float = 1.0) -> bool:
        if self.tokens < 0:
            self.tokens = self.burst
            self.updated = now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


def address_key(address: str) -> str:
    """What a per-address limit counts ``address`` under: an IPv4 address as it is; an IPv6
    address by its /64, since one host (or one home) holds a whole /64 and may send from any
    of its addresses; an IPv4 address on a dual-stack socket (``::ffff:192.0.2.7``) as that
    IPv4 address; IPv6 loopback as ``::1``."""
    if ":" not in address:
        return address
    try:
        ip = ipaddress.IPv6Address(address.split("%", 1)[0])
    except ValueError:
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    if ip.is_loopback:
        return "::1"
    return f"{ipaddress.IPv6Network((ip, 64), strict=False).network_address}/64"


def is_loopback_key(key: str) -> bool:
    """Loopback, which the per-address limits exempt: it cannot be spoofed from outside,
    and tests and benchmarks run hundreds of clients from it."""
    return key.startswith("127.") or key == "::1"


class PerKeyWindow:
    """At most ``limit`` events per key in each window of ``window`` seconds; 0: no limit.
    The counts are forgotten at every new window, so memory is bounded by the keys seen in
    one window (a flood of spoofed sources included)."""

    __slots__ = ("_counts", "_started", "limit", "window")

    def __init__(self, limit: int, window: float = 1.0) -> None:
        self.limit = limit
        self.window = window
        self._counts: dict[str, int] = {}
        self._started = 0.0

    def allow(self, key: str, now: float) -> bool:
        if not self.limit:
            return True
        if now - self._started >= self.window:
            self._counts.clear()
            self._started = now
        count = self._counts.get(key, 0) + 1
        self._counts[key] = count
        return count <= self.limit
