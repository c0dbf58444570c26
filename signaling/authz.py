"""Who may act on what: the one rule for every route and message that names a room, a
session or the cluster.

A token's grant names one room, or none: a token with an empty room is the operator's and
covers every room. Whatever a route does, it states its target (the cluster, a room and the
capability it uses, or a session and who owns it) and calls ``authorize``; nothing else in
the control plane compares rooms, identities or grants. Node-to-node routes take the
cluster secret instead (``require_peer``). ``docs/SECURITY.md`` lists every
route with its target, and a test walks the router against that table.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from .app_keys import NODE
from .tokens import Claims, TokenError, verify

# What a room-scoped request uses of the grant: join (any participant), publish, subscribe,
# or administer the room (room_admin).
Capability = Literal["join", "publish", "subscribe", "admin"]


class AccessDenied(Exception):
    """The token is valid but does not cover the target (HTTP 403, WebSocket 4403/4401)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class OnCluster:
    """Cluster-wide: every node or every room. Needs an operator token."""


@dataclass(frozen=True, slots=True)
class OnRoom:
    room: str
    capability: Capability
    public: bool = False  # viewing a public room needs no token


@dataclass(frozen=True, slots=True)
class OnSession:
    room: str
    owner: str | None  # the session's identity; None when no such session exists
    public: bool = False  # a public room's tokenless viewer: the session URL is the credential


Target = OnCluster | OnRoom | OnSession


def bearer_token(authorization: str | None) -> str | None:
    header = authorization or ""
    return header[7:] if header.startswith("Bearer ") else None


def claims_of(authorization: str | None, keys: dict[str, str]) -> Claims | None:
    """The verified claims of an ``Authorization`` header; None when there is no header."""
    if authorization is None:
        return None
    return verify(bearer_token(authorization), keys)


def authorize(claims: Claims | None, target: Target) -> Claims | None:
    """Raise ``TokenError`` (no token) or ``AccessDenied`` unless ``claims`` cover ``target``.

    Returns the claims; None only for a public target reached without a token.
    """
    if claims is None:
        if isinstance(target, OnRoom | OnSession) and target.public:
            return None
        raise TokenError("token_missing", "an access token is required")
    grant = claims.grant
    if isinstance(target, OnCluster):
        if grant.room or not grant.room_admin:
            raise AccessDenied(
                "permission_denied", "an operator token (room_admin for every room) is required"
            )
        return claims
    if grant.room and grant.room != target.room:
        raise AccessDenied("token_wrong_room", f"the token is for room {grant.room!r}")
    if isinstance(target, OnSession):
        if target.owner is not None and claims.sub != target.owner and not grant.room_admin:
            raise AccessDenied("permission_denied", "not your session")
        return claims
    allowed, what = {
        "join": (True, "joining"),
        "publish": (grant.can_publish, "publishing"),
        "subscribe": (grant.can_subscribe, "subscribing"),
        "admin": (grant.room_admin, "administering the room (room_admin)"),
    }[target.capability]
    if not allowed:
        raise AccessDenied("permission_denied", f"the token does not allow {what}")
    return claims


def require(request: web.Request, target: Target) -> Claims | None:
    """``authorize`` with the request's bearer token; the error middleware maps the errors."""
    header = request.headers.get("Authorization")
    return authorize(claims_of(header, request.app[NODE].settings.keys), target)


def authenticate(request: web.Request) -> Claims:
    """The request's verified token, before its target is known (401 only)."""
    header = request.headers.get("Authorization")
    return verify(bearer_token(header), request.app[NODE].settings.keys)


def require_peer(request: web.Request) -> None:
    """Node-to-node routes: the cluster secret, never a client's token (a client cannot open
    bridges or inject data). Refused outright on a node with no secret configured."""
    secret = request.app[NODE].settings.cluster.secret
    presented = bearer_token(request.headers.get("Authorization"))
    if presented is None:
        raise TokenError("token_missing", "the cluster secret is required")
    if not secret or not hmac.compare_digest(presented.encode(), secret.encode()):
        raise AccessDenied("permission_denied", "only another node of this cluster may ask this")


def require_claims(request: web.Request, target: Target) -> Claims:
    """``require`` for a target that no tokenless request can reach."""
    claims = require(request, target)
    if claims is None:
        raise TokenError("token_missing", "an access token is required")
    return claims
