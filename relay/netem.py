"""A user-space UDP impairment proxy: loss (random or in bursts), delay, jitter,
reordering and a bandwidth cap, per direction, between WebRTC clients and the relay.

Clients send to the proxy; each client address gets its own upstream socket towards the
relay, so the relay sees (and latches) one address per client as usual; ``rebind`` gives
each a new one, as a NAT that rebinds does. Used by the tests and by ``eurelay netem`` for
reproducing field problems.

Loss with ``burst`` > 1 is the simple Gilbert model (the two-state Gilbert-Elliott chain with
every packet lost in the bad state and none in the good one): bursts of geometric length with
mean ``burst``, entered so that the long-run loss rate is ``loss``. A ``tap`` sees every
packet and whether it was dropped: what the benchmarks trace repair with.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Impairment:
    loss: float = 0.0  # probability a packet is dropped, 0..1
    burst: float = 1.0  # mean length of a loss burst, in packets (1: independent losses)
    delay_ms: float = 0.0
    jitter_ms: float = 0.0  # uniform +- around the delay
    reorder: float = 0.0  # probability a packet is held back by an extra delay_ms + 20 ms
    rate_kbps: float = 0.0  # bandwidth cap; 0: none. Packets over it queue, then drop.
    queue_ms: float = 200.0  # how much the cap may queue before it drops


@dataclass
class _Direction:
    impairment: Impairment
    rng: random.Random
    in_burst: bool = False
    next_free: float = 0.0  # when the capped link is free again
    sent: int = 0
    dropped: int = 0

    def decide(self, size: int, now: float) -> float | None:
        """Delay in seconds before this packet is delivered, or None to drop it."""
        imp = self.impairment
        if imp.loss > 0:
            if self.in_burst:
                # stay in the burst with probability 1 - 1/burst (mean burst length)
                self.in_burst = self.rng.random() < 1.0 - 1.0 / max(1.0, imp.burst)
            else:
                # enter a burst so that the long-run loss rate is ``loss``
                p_enter = imp.loss / max(1.0, imp.burst) / max(1e-9, 1.0 - imp.loss)
                self.in_burst = self.rng.random() < min(1.0, p_enter)
            if self.in_burst:
                self.dropped += 1
                return None
        delay = imp.delay_ms / 1000.0
        if imp.jitter_ms:
            delay += self.rng.uniform(-imp.jitter_ms, imp.jitter_ms) / 1000.0
        if imp.reorder and self.rng.random() < imp.reorder:
            delay += imp.delay_ms / 1000.0 + 0.02
        if imp.rate_kbps > 0:
            start = max(now, self.next_free)
            if start - now > imp.queue_ms / 1000.0:
                self.dropped += 1
                return None
            self.next_free = start + size * 8 / (imp.rate_kbps * 1000.0)
            delay += self.next_free - now
        self.sent += 1
        return max(0.0, delay)


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, proxy: UdpImpairmentProxy, client: tuple[str, int]) -> None:
        self.proxy = proxy
        self.client = client
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.proxy._relay(self.proxy.down, data, self.proxy._to_client(self.client))


class UdpImpairmentProxy(asyncio.DatagramProtocol):
    def __init__(
        self,
        target: tuple[str, int],
        up: Impairment | None = None,
        down: Impairment | None = None,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        seed: int | None = None,
        tap: Callable[[str, bytes, bool], None] | None = None,
    ) -> None:
        """``tap(direction, datagram, dropped)``, direction "up" (client to relay) or "down",
        is called for every datagram as the proxy decides its fate."""
        rng = random.Random(seed)
        self.tap = tap
        self.target = target
        self.listen = listen
        self.up = _Direction(up or Impairment(), random.Random(rng.random()))
        self.down = _Direction(down or Impairment(), random.Random(rng.random()))
        self.transport: asyncio.DatagramTransport | None = None
        self._upstreams: dict[tuple[str, int], _Upstream] = {}
        self._rebinding: set[tuple[str, int]] = set()
        self._pending: dict[tuple[str, int], list[bytes]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.port = 0
        self.closed = False

    async def start(self) -> int:
        self._loop = asyncio.get_running_loop()
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: self, local_addr=self.listen
        )
        self.port = transport.get_extra_info("sockname")[1]
        return self.port

    def set(self, up: Impairment | None = None, down: Impairment | None = None) -> None:
        """Change impairments while running (e.g. a burst of heavy loss, then none)."""
        if up is not None:
            self.up.impairment = up
        if down is not None:
            self.down.impairment = down

    def rebind(self) -> None:
        """A NAT rebinding: each client's next datagram leaves from a new upstream socket
        (a new source port toward the relay), and the old one closes then, so what the
        relay still sends to the old port is lost."""
        self._rebinding = set(self._upstreams)

    def close(self) -> None:
        self.closed = True
        for upstream in self._upstreams.values():
            if upstream.transport is not None:
                upstream.transport.close()
        if self.transport is not None:
            self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        upstream = self._upstreams.get(addr)
        if upstream is not None and addr in self._rebinding:
            self._rebinding.discard(addr)
            if upstream.transport is not None:
                upstream.transport.close()
            upstream = None
        if upstream is None:
            self._open_upstream(addr, data)
            return
        if upstream.transport is None:
            self._pending.setdefault(addr, []).append(data)
            return
        self._relay(self.up, data, upstream.transport.sendto)

    def _open_upstream(self, client: tuple[str, int], first: bytes) -> None:
        assert self._loop is not None
        upstream = _Upstream(self, client)
        self._upstreams[client] = upstream
        self._pending[client] = [first]

        async def connect() -> None:
            assert self._loop is not None
            await self._loop.create_datagram_endpoint(lambda: upstream, remote_addr=self.target)
            assert upstream.transport is not None
            for data in self._pending.pop(client, []):
                self._relay(self.up, data, upstream.transport.sendto)

        self._loop.create_task(connect())

    def _to_client(self, client: tuple[str, int]) -> Callable[[bytes], None]:
        def send(data: bytes) -> None:
            if self.transport is not None:
                self.transport.sendto(data, client)

        return send

    def _relay(self, direction: _Direction, data: bytes, send: Callable[[bytes], None]) -> None:
        assert self._loop is not None
        delay = direction.decide(len(data), self._loop.time())
        if self.tap is not None:
            self.tap("down" if direction is self.down else "up", data, delay is None)
        if delay is None:
            return
        if delay <= 0:
            send(data)
        else:
            self._loop.call_later(delay, self._send_unless_closed, send, data)

    def _send_unless_closed(self, send: Callable[[bytes], None], data: bytes) -> None:
        if not self.closed:  # packets still queued when the proxy closes are dropped
            send(data)
