"""WHIP ingest (RFC 9725): ``POST /whip/{room}`` with an SDP offer publishes into a room.

A WHIP publisher is an ordinary participant (WebSocket clients see it join and publish;
the admin API and metrics count it) that has only a publisher leg. Its session resource is
``/whip/{room}/{participant sid}``: ``DELETE`` ends it, ``PATCH`` takes trickle ICE
fragments (the relay is ICE-lite and needs none, so it only acknowledges them).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from aiohttp import web
from multidict import MultiDict

from relay.control import ParticipantInfo, ParticipantKind, RoomConfig
from relay.errors import RelayError, SdpError
from relay.sdp_negotiation import MAX_SDP_BYTES, parse_description

from .app_keys import NODE
from .authz import OnRoom, OnSession, require, require_claims
from .client_address import client_ip, limit_joins
from .cluster import PlacementUnavailable
from .cluster_api import parse_rtts
from .errors import ApiError, read_body, relay_status
from .turn import ice_servers

SDP = "application/sdp"
REDIRECTED = "redirected"  # query marker of a request a node sent on to another
TRICKLE = "application/trickle-ice-sdpfrag"
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, PATCH, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, ETag, Link, Accept-Patch",
}


TEXT_CHARSETS = (None, "utf-8", "utf8", "us-ascii")


async def read_text(request: web.Request, content_type: str, limit: int, code: str) -> str:
    """The body as text: the media type and charset checked, the bytes decoded strictly."""
    if request.content_type != content_type:
        raise ApiError(415, "unsupported_media_type", f"Content-Type must be {content_type}")
    charset = request.charset.lower() if request.charset else None
    if charset not in TEXT_CHARSETS:
        raise ApiError(415, "unsupported_media_type", f"charset {charset!r}: only UTF-8 is read")
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, code, f"body larger than {limit} bytes")
    body = await read_body(request)
    if len(body) > limit:
        raise ApiError(413, code, f"body larger than {limit} bytes")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, code, f"the body is not UTF-8 text (byte {exc.start})") from None


async def read_sdp(request: web.Request) -> str:
    body = await read_text(request, SDP, MAX_SDP_BYTES, "invalid_sdp")
    try:
        parse_description(body)  # refuse garbage before any state is created
    except SdpError as exc:
        raise ApiError(400, exc.code, str(exc)) from None
    return body


def ice_server_links(servers: list[dict[str, Any]]) -> list[str]:
    """RFC 9725 section 4.4: STUN/TURN servers as Link headers."""
    links = []
    for server in servers:
        urls = server.get("urls", [])
        for url in [urls] if isinstance(urls, str) else urls:
            link = f'<{url}>; rel="ice-server"'
            if "username" in server:
                secret = server.get("credential", "")
                link += f'; username="{server["username"]}"; credential="{secret}"'
                link += '; credential-type="password"'
            links.append(link)
    return links


def etag(participant: ParticipantInfo) -> str:
    return '"' + hashlib.sha256(participant.sid.encode()).hexdigest()[:16] + '"'


def session_participant(request: web.Request, kind: str) -> ParticipantInfo:
    """The session's participant, once the caller may act on it (401/403 before 404)."""
    relay = request.app[NODE].relay
    room_name = request.match_info["room"]
    participant = relay.participant(room_name, request.match_info["session"])
    if participant is not None and participant.kind.value != kind:
        participant = None  # a WHEP session is not reachable under /whip/, nor a WebSocket's
    room = relay.room(room_name)
    public = participant is not None and kind == "whep" and room is not None and room.public_viewing
    owner = participant.identity if participant else None
    require(request, OnSession(room_name, owner, public=public))
    if participant is None:
        raise ApiError(404, "not_found", "no such session")
    return participant


def created(
    request: web.Request, kind: str, participant: ParticipantInfo, answer: str
) -> web.Response:
    location = f"/{kind}/{request.match_info['room']}/{participant.sid}"
    response = web.Response(status=201, text=answer, content_type=SDP)
    response.headers["Location"] = location
    response.headers["ETag"] = etag(participant)
    response.headers["Accept-Patch"] = TRICKLE
    for link in ice_server_links(ice_servers(request.app[NODE].settings.rtc)):
        response.headers.add("Link", link)
    return response


async def place_or_redirect(request: web.Request) -> web.Response | RoomConfig:
    """WHIP/WHEP sessions land on the participant's nearest eligible node: elsewhere
    answers 307 to that node; here, the room's settings for the join."""
    redirected = REDIRECTED in request.query
    # A WHIP/WHEP client may say what it measured (?rtt=eu-west:12,eu-north:40), as a
    # WebSocket client does in its join; without it, learned RTTs and the prefix map decide.
    probes = parse_rtts(request.query.get("rtt", ""))
    try:
        placement = await request.app[NODE].cluster.place(
            request.match_info["room"], client_ip(request), probes, redirected=redirected
        )
    except PlacementUnavailable as exc:
        raise ApiError(503, exc.code, str(exc)) from None
    if not placement.local:
        assert placement.decision.node is not None
        query = MultiDict(request.query)
        query[REDIRECTED] = "1"  # the node it goes to takes it: never a second redirect
        target = request.url.with_query(query).relative()
        location = placement.decision.node.signaling_url.rstrip("/") + str(target)
        return web.Response(status=307, headers={"Location": location})
    return placement.room_config


async def whip_post(request: web.Request) -> web.Response:
    limit_joins(request)
    claims = require_claims(request, OnRoom(request.match_info["room"], "publish"))
    placed = await place_or_redirect(request)
    if isinstance(placed, web.Response):
        return placed
    offer = await read_sdp(request)
    relay = request.app[NODE].relay
    room = request.match_info["room"]
    try:
        participant = await relay.join(
            room,
            claims.sub,
            # a WHIP publisher only publishes, within its token's sources
            replace(claims.grant.permissions(), can_subscribe=False, can_publish_data=False),
            kind=ParticipantKind.INGEST,
            auto_subscribe=False,
            name=claims.name,
            room_config=placed,
        )
    except RelayError as exc:
        raise ApiError(relay_status(exc), exc.code, str(exc)) from None
    try:
        answer, tracks = await relay.publish(room, participant.sid, offer)
        if not tracks:
            raise SdpError("the offer has no audio or video the relay can forward")
    except RelayError as exc:
        await relay.leave(room, participant.sid, "rejected")
        raise ApiError(relay_status(exc), exc.code, str(exc)) from None
    return created(request, "whip", participant, answer)


async def session_delete(request: web.Request, kind: str) -> web.Response:
    participant = session_participant(request, kind)
    await request.app[NODE].relay.leave(participant.room, participant.sid, "left")
    return web.Response(status=200)


async def session_patch(request: web.Request, kind: str) -> web.Response:
    participant = session_participant(request, kind)
    body = await read_text(request, TRICKLE, MAX_SDP_BYTES, "invalid_message")
    if_match = request.headers.get("If-Match")
    if if_match not in (None, "*", etag(participant)):
        raise ApiError(412, "etag_mismatch", "the session's ETag does not match")
    if "a=ice-ufrag:" in body or "a=ice-pwd:" in body:
        # An ICE restart would need new credentials on the leg; not supported yet.
        raise ApiError(405, "ice_restart_unsupported", "ICE restarts are not supported")
    return web.Response(status=204)  # ICE-lite: the relay learns addresses from checks


async def options(request: web.Request) -> web.Response:
    """A CORS preflight, and the ICE servers to gather with before the offer. A TURN
    credential only to a token that may use the room: anyone else would get a relay."""
    response = web.Response(status=204)
    response.headers["Accept-Post"] = SDP
    rtc = request.app[NODE].settings.rtc
    servers = list(rtc.ice_servers)
    room = request.match_info["room"]
    if "session" not in request.match_info and "Authorization" in request.headers:
        whip = request.path.startswith("/whip/")
        require(request, OnRoom(room, "publish") if whip else OnRoom(room, "subscribe"))
        servers = ice_servers(rtc)
    for link in ice_server_links(servers):
        response.headers.add("Link", link)
    return response


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Browsers POST to WHIP/WHEP from other origins; every answer there carries CORS."""
    response = await handler(request)
    if request.path.startswith(("/whip/", "/whep/")):
        response.headers.update(CORS)
    return response


def add_session_routes(app: web.Application, kind: str, post: Handler) -> None:
    """The resource routes WHIP and WHEP share: offer, session delete/patch, preflights."""
    app.router.add_post(f"/{kind}/{{room}}", post)
    app.router.add_route("OPTIONS", f"/{kind}/{{room}}", options)
    session = f"/{kind}/{{room}}/{{session}}"
    app.router.add_delete(session, functools.partial(session_delete, kind=kind))
    app.router.add_patch(session, functools.partial(session_patch, kind=kind))
    app.router.add_route("OPTIONS", session, options)


def add_routes(app: web.Application) -> None:
    add_session_routes(app, "whip", whip_post)
