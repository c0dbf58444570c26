"""The per-address limits count an IPv6 client by its /64 (found by the attack re-run,
docs/SECURITY.md): one host, or one home, holds a whole /64 and may send from any of its
2^64 addresses, so a limit per full IPv6 address limited nothing. An IPv4 address seen on
a dual-stack socket (``::ffff:192.0.2.7``) counts as that IPv4 address."""

from __future__ import annotations

import aiohttp
import pytest

from bench.loopback_node import node_settings, running_node
from relay.rate_limiter import address_key
from relay.stats import RelayStats
from relay.udp_mux import UdpMux

pytestmark = pytest.mark.timeout(30)

BINDING = bytes([0x00, 0x01]) + bytes(18)  # a Binding request header, nothing else
SRTP = bytes([0x80, 96]) + bytes(10) + bytes(40)  # RTP header, an SSRC no leg has


def test_the_key_of_an_address() -> None:
    assert address_key("192.0.2.7") == "192.0.2.7"
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff:1:2:3")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key("::1") == "::1"
    assert address_key("fe80::1%lo") == address_key("fe80::2")
    assert address_key("not an address") == "not an address"


def test_stun_and_moves_are_limited_per_ipv6_prefix() -> None:
    stats = RelayStats()
    mux = UdpMux(stats, stun_per_ip=5, moves_per_ip=5)
    for host in range(1, 11):  # ten addresses of one /64, as a host rotating them sends
        mux.datagram_received(BINDING, (f"2001:db8:1:2::{host:x}", 40000, 0, 0))
        mux.datagram_received(SRTP, (f"2001:db8:1:2:{host:x}::1", 40000, 0, 0))
    assert stats.dropped["stun_rate_limited"] == 5
    assert stats.dropped["move_rate_limited"] == 5
    mux.datagram_received(BINDING, ("2001:db8:1:3::1", 40000, 0, 0))  # another /64
    for _ in range(10):  # IPv4 loopback on a dual-stack socket is exempt, as 127.0.0.1 is
        mux.datagram_received(BINDING, ("::ffff:127.0.0.1", 40000, 0, 0))
        mux.datagram_received(BINDING, ("::1", 40000, 0, 0))
    assert stats.dropped["stun_rate_limited"] == 5
    for _ in range(3):  # one IPv4 client, whichever socket family it reaches
        mux.datagram_received(BINDING, ("192.0.2.7", 40000))
        mux.datagram_received(BINDING, ("::ffff:192.0.2.7", 40000, 0, 0))
    assert stats.dropped["stun_rate_limited"] == 6


async def test_session_starts_are_limited_per_ipv6_prefix() -> None:
    settings = node_settings(
        http={"trusted_proxies": ["127.0.0.0/8"]}, signaling={"joins_per_ip": 3}
    )
    async with running_node(settings) as rn, aiohttp.ClientSession() as http:

        async def start(client: str) -> int:
            headers = {"X-Forwarded-For": client}
            async with http.post(rn.http("/whep/r"), data="v=0\r\n", headers=headers) as resp:
                return resp.status

        got = [await start(f"2001:db8:7:7::{i}") for i in range(1, 6)]
        assert got == [401, 401, 401, 429, 429]
        assert await start("2001:db8:7:8::1") == 401  # another /64
