"""Rates a peer controls before it is anyone: session starts per client address (behind a
trusted proxy, the address it forwards), and STUN requests per IP address."""

from __future__ import annotations

import aiohttp
import pytest

from bench.loopback_node import node_settings, running_node
from relay.stats import RelayStats
from relay.udp_mux import UdpMux

pytestmark = pytest.mark.timeout(30)


async def test_session_starts_per_client_address_are_limited() -> None:
    settings = node_settings(
        http={"trusted_proxies": ["127.0.0.0/8"]}, signaling={"joins_per_ip": 3}
    )
    async with running_node(settings) as rn, aiohttp.ClientSession() as http:

        async def start(path: str, client: str) -> int:
            headers = {"X-Forwarded-For": f"198.51.100.9, {client}"}
            async with http.post(rn.http(path), data="v=0\r\n", headers=headers) as resp:
                return resp.status

        assert [await start("/whep/r", "192.0.2.10") for _ in range(3)] == [401, 401, 401]
        assert await start("/whip/r", "192.0.2.10") == 429
        async with http.get(rn.http("/v1/rtc"), headers={"X-Forwarded-For": "192.0.2.10"}) as resp:
            assert resp.status == 429  # refused before the WebSocket upgrade
            assert (await resp.json())["code"] == "rate_limited"
        assert await start("/whep/r", "192.0.2.11") == 401  # another client is not affected
        assert rn.node.counters()["joins_rate_limited"] == 2


async def test_a_forwarded_address_counts_only_from_a_trusted_proxy() -> None:
    settings = node_settings(signaling={"joins_per_ip": 1})  # no trusted proxies
    async with running_node(settings) as rn, aiohttp.ClientSession() as http:
        for _ in range(3):  # from loopback, which is exempt; the header is not believed
            headers = {"X-Forwarded-For": "192.0.2.10"}
            async with http.post(rn.http("/whep/r"), data="v=0\r\n", headers=headers) as resp:
                assert resp.status == 401


def test_stun_requests_per_source_address_are_limited() -> None:
    stats = RelayStats()
    mux = UdpMux(stats, stun_per_ip=5)
    request = bytes([0x00, 0x01]) + bytes(18)  # a Binding request header, nothing else
    for port in range(10):  # one host, many ports: counted per address
        mux.datagram_received(request, ("192.0.2.7", 40000 + port))
    assert stats.dropped["stun_rate_limited"] == 5
    mux.datagram_received(request, ("192.0.2.8", 40000))
    for _ in range(10):
        mux.datagram_received(request, ("127.0.0.1", 40000))  # loopback is exempt
    assert stats.dropped["stun_rate_limited"] == 5
