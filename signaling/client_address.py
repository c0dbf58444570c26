"""Who a request comes from, and how often it may start a session.

Behind a load balancer or reverse proxy the TCP peer is the proxy: when it is one of
``http.trusted_proxies``, the client is the last address of ``X-Forwarded-For`` that is not
a trusted proxy (the one the first trusted hop saw). The address decides placement (prefix
map, learned RTTs) and the per-IP join limit.
"""

from __future__ import annotations

import ipaddress
import time

from aiohttp import web

from relay.rate_limiter import address_key, is_loopback_key

from .app_keys import NODE
from .errors import ApiError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _trusted(address: str, proxies: list[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_ip(request: web.Request) -> str | None:
    peer = request.remote
    proxies = request.app[NODE].trusted_proxies
    if peer is None or not proxies or not _trusted(peer, proxies):
        return peer
    hops = [h.strip() for v in request.headers.getall("X-Forwarded-For", []) for h in v.split(",")]
    for hop in reversed(hops):
        if hop and not _trusted(hop, proxies):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # a forged or broken header: the proxy is all we know
    return peer


def limit_joins(request: web.Request) -> None:
    """Refuse a session start beyond ``signaling.joins_per_ip`` per second from one client
    address, an IPv6 one counted by its /64 (429). Loopback is exempt: a proxy on the same
    host must limit by itself."""
    node = request.app[NODE]
    key = address_key(client_ip(request) or "")  # an IPv6 client by its /64
    if is_loopback_key(key):
        return
    if not node.join_limit.allow(key, time.monotonic()):
        node.joins_rate_limited += 1
        raise ApiError(429, "rate_limited", "too many sessions started from this address")
