"""ICE servers handed to a client: the configured STUN/TURN servers, and a TURN server with a
credential minted for this session (the TURN REST scheme: coturn's ``use-auth-secret``
checks it against the shared secret, with no call back to us).

The username is ``<expiry unix time>:<random tag>``: it carries no identity, since the TURN
server logs it; the credential is base64(HMAC-SHA1(secret, username)).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import Any

from .settings import RtcSettings


def turn_credential(secret: str, ttl: int, now: float | None = None) -> tuple[str, str]:
    """(username, credential) valid for ``ttl`` seconds from ``now``."""
    expiry = int(now if now is not None else time.time()) + ttl
    username = f"{expiry}:{secrets.token_hex(6)}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers(rtc: RtcSettings) -> list[dict[str, Any]]:
    """What one session's client is given, in the RTCIceServer shape (urls, username,
    credential), which WebSocket clients get in ``joined`` and WHIP/WHEP clients as
    ``Link`` headers."""
    servers = [dict(server) for server in rtc.ice_servers]
    turn = rtc.turn
    if turn.urls:
        username, credential = turn_credential(turn.secret, turn.ttl)
        servers.append({"urls": list(turn.urls), "username": username, "credential": credential})
    return servers
