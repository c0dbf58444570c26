"""WHIP ingest (RFC 9725): ``POST /whip/{room}`` with an SDP offer publishes into a room.

A WHIP publisher is an ordinary participant (WebSocket clients see it join and publish;
the admin API and metrics count it) that has only a publisher leg. Its session resource is
``/whip/{room}/{participant sid}``: ``DELETE`` ends it, ``PATCH`` takes trickle ICE
fragments (the relay is ICE-lite and needs none, so it only acknowledges them).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

from aiohttp import web

from relay.errors import NodeFullError, RelayError, RoomFullError, SdpError
from relay.room import Participant, Permissions
from relay.sdp_negotiation import MAX_SDP_BYTES, parse_description

from .app_keys import NODE
from .cluster import PlacementUnavailable
from .errors import ApiError
from .tokens import Claims, TokenError, verify

SDP = "application/sdp"
TRICKLE = "application/trickle-ice-sdpfrag"
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, PATCH, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, ETag, Link, Accept-Patch",
}


def bearer_claims(request: web.Request) -> Claims:
    header = request.headers.get("Authorization", "")
    token = header[7:] if header.startswith("Bearer ") else None
    try:
        return verify(token, request.app[NODE].settings.keys)
    except TokenError as exc:
        raise ApiError(401, exc.code, str(exc)) from None


def room_claims(request: web.Request, need: Callable[[Claims], bool], what: str) -> Claims:
    claims = bearer_claims(request)
    room = request.match_info["room"]
    if claims.grant.room and claims.grant.room != room:
        raise ApiError(403, "token_wrong_room", f"the token is for room {claims.grant.room!r}")
    if not need(claims):
        raise ApiError(403, "permission_denied", f"the token does not allow {what}")
    return claims


async def read_sdp(request: web.Request) -> str:
    if request.content_type != SDP:
        raise ApiError(415, "unsupported_media_type", f"Content-Type must be {SDP}")
    if request.content_length is not None and request.content_length > MAX_SDP_BYTES:
        raise ApiError(413, "invalid_sdp", "SDP offer too large")
    body = await request.text()
    try:
        parse_description(body)  # refuse garbage before any state is created
    except SdpError as exc:
        raise ApiError(400, exc.code, str(exc)) from None
    return body


def ice_server_links(request: web.Request) -> list[str]:
    """RFC 9725 section 4.4: configured STUN/TURN servers as Link headers."""
    links = []
    for server in request.app[NODE].settings.rtc.ice_servers:
        urls = server.get("urls", [])
        for url in [urls] if isinstance(urls, str) else urls:
            link = f'<{url}>; rel="ice-server"'
            if "username" in server:
                secret = server.get("credential", "")
                link += f'; username="{server["username"]}"; credential="{secret}"'
                link += '; credential-type="password"'
            links.append(link)
    return links


def etag(participant: Participant) -> str:
    return '"' + hashlib.sha256(participant.sid.encode()).hexdigest()[:16] + '"'


def session_participant(request: web.Request) -> Participant:
    """The session's participant, once the caller may act on it (401/403 before 404)."""
    room = request.app[NODE].worker.rooms.get(request.match_info["room"])
    participant = room.participants.get(request.match_info["session"]) if room else None
    if participant is not None and anonymous_viewer(request, participant):
        return participant
    claims = bearer_claims(request)
    if participant is None:
        raise ApiError(404, "not_found", "no such session")
    if claims.sub != participant.identity and not claims.grant.room_admin:
        raise ApiError(403, "permission_denied", "not your session")
    return participant


def relay_status(exc: RelayError) -> int:
    if isinstance(exc, RoomFullError | NodeFullError):
        return 503
    if isinstance(exc, SdpError):
        return 400
    return 400


def created(request: web.Request, kind: str, participant: Participant, answer: str) -> web.Response:
    location = f"/{kind}/{request.match_info['room']}/{participant.sid}"
    response = web.Response(status=201, text=answer, content_type=SDP)
    response.headers["Location"] = location
    response.headers["ETag"] = etag(participant)
    response.headers["Accept-Patch"] = TRICKLE
    for link in ice_server_links(request):
        response.headers.add("Link", link)
    return response


async def place_or_redirect(request: web.Request) -> web.Response | None:
    """WHIP/WHEP sessions land on the room's node: elsewhere answers 307 to that node."""
    try:
        placement = await request.app[NODE].cluster.place(
            request.match_info["room"], request.remote
        )
    except PlacementUnavailable as exc:
        raise ApiError(503, exc.code, str(exc)) from None
    if not placement.local:
        assert placement.decision.node is not None
        target = placement.decision.node.signaling_url.rstrip("/") + request.path_qs
        return web.Response(status=307, headers={"Location": target})
    return None


async def whip_post(request: web.Request) -> web.Response:
    claims = room_claims(request, lambda c: c.grant.can_publish, "publishing")
    redirect = await place_or_redirect(request)
    if redirect is not None:
        return redirect
    offer = await read_sdp(request)
    worker = request.app[NODE].worker
    try:
        participant = await worker.join(
            request.match_info["room"],
            claims.sub,
            Permissions(can_publish=True, can_subscribe=False, can_publish_data=False),
            auto_subscribe=False,
            name=claims.name,
            signaling_leg=False,
        )
    except RelayError as exc:
        raise ApiError(relay_status(exc), exc.code, str(exc)) from None
    try:
        answer = await worker.publish(participant, offer)
        if not participant.published:
            raise SdpError("the offer has no audio or video the relay can forward")
    except RelayError as exc:
        await worker.leave(participant, "rejected")
        raise ApiError(relay_status(exc), exc.code, str(exc)) from None
    return created(request, "whip", participant, answer)


def anonymous_viewer(request: web.Request, participant: Participant) -> bool:
    """A tokenless WHEP viewer of a public room: its session URL is its only credential."""
    room = request.app[NODE].worker.rooms.get(request.match_info["room"])
    return (
        "Authorization" not in request.headers
        and room is not None
        and room.public_viewing
        and participant.follow is not None
    )


async def session_delete(request: web.Request) -> web.Response:
    participant = session_participant(request)
    await request.app[NODE].worker.leave(participant, "left")
    return web.Response(status=200)


async def session_patch(request: web.Request) -> web.Response:
    participant = session_participant(request)
    if request.content_type != TRICKLE:
        raise ApiError(415, "unsupported_media_type", f"Content-Type must be {TRICKLE}")
    if_match = request.headers.get("If-Match")
    if if_match not in (None, "*", etag(participant)):
        raise ApiError(412, "etag_mismatch", "the session's ETag does not match")
    body = await request.text()
    if "a=ice-ufrag:" in body or "a=ice-pwd:" in body:
        # An ICE restart would need new credentials on the leg; not supported yet.
        raise ApiError(405, "ice_restart_unsupported", "ICE restarts are not supported")
    return web.Response(status=204)  # ICE-lite: the relay learns addresses from checks


async def options(request: web.Request) -> web.Response:
    response = web.Response(status=204)
    response.headers["Accept-Post"] = SDP
    for link in ice_server_links(request):
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
    app.router.add_delete(f"/{kind}/{{room}}/{{session}}", session_delete)
    app.router.add_patch(f"/{kind}/{{room}}/{{session}}", session_patch)
    app.router.add_route("OPTIONS", f"/{kind}/{{room}}/{{session}}", options)


def add_routes(app: web.Application) -> None:
    add_session_routes(app, "whip", whip_post)
