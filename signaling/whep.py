"""WHEP playback (IETF WHEP draft): ``POST /whep/{room}`` with a recvonly offer.

The viewer receives the room's current publisher, or the one named by ``?participant=``;
when that publisher goes away it stays connected and receives the next one, on the same
m-lines and SSRCs. A room created with ``public_viewing`` needs no token.
"""

from __future__ import annotations

import secrets

from aiohttp import web

from relay.control import ParticipantKind, Permissions
from relay.errors import RelayError

from .app_keys import NODE
from .authz import OnRoom, require
from .client_address import limit_joins
from .errors import ApiError, relay_status
from .whip import (
    add_session_routes,
    created,
    place_or_redirect,
    read_sdp,
)


async def whep_post(request: web.Request) -> web.Response:
    limit_joins(request)
    node = request.app[NODE]
    room_name = request.match_info["room"]
    room = node.relay.room(room_name)
    # public viewing is a setting of the room everywhere, not only where it was created
    public = (room is not None and room.public_viewing) or (
        await node.cluster.policy(room_name)
    ).public_viewing
    claims = require(request, OnRoom(room_name, "subscribe", public=public))
    if claims is None:
        identity, name = "viewer-" + secrets.token_hex(4), ""
    else:
        identity, name = claims.sub, claims.name
    placed = await place_or_redirect(request)
    if isinstance(placed, web.Response):
        return placed
    offer = await read_sdp(request)
    try:
        participant = await node.relay.join(
            room_name,
            identity,
            Permissions(can_publish=False, can_subscribe=True, can_publish_data=False),
            kind=ParticipantKind.VIEWER,
            auto_subscribe=False,
            name=name,
            room_config=placed,
        )
    except RelayError as exc:
        raise ApiError(relay_status(exc), exc.code, str(exc)) from None
    try:
        follow = request.query.get("participant", "")
        answer = await node.relay.view(room_name, participant.sid, offer, follow)
    except RelayError as exc:
        await node.relay.leave(room_name, participant.sid, "rejected")
        raise ApiError(relay_status(exc), exc.code, str(exc)) from None
    return created(request, "whep", participant, answer)


def add_routes(app: web.Application) -> None:
    add_session_routes(app, "whep", whep_post)
