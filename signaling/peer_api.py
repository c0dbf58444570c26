"""Node-to-node routes, under ``/v1/cluster/``: what one node of a cluster asks of another
to carry a room across them. A bridge is asked for by the node that has the viewers (it
initiates the media connection); data messages are pushed by the sender's node.

Only nodes may call these: the cluster secret authenticates them (``authz.require_peer``),
and the room's residency policy must allow the asking node, so no client can open a bridge
and no bridge leaves the room's jurisdictions.
"""

from __future__ import annotations

from typing import TypeVar

from aiohttp import web

from relay.control import Relayed
from relay.errors import RelayError

from .app_keys import NODE
from .authz import AccessDenied, require_peer
from .errors import ApiError, parse_body, relay_status
from .errors import read_body as receive_body
from .peer_wire import (
    MAX_BODY,
    BridgeOpen,
    BridgeTrackAsk,
    DataPush,
    PeerBody,
    endpoint_adapter,
    track_adapter,
)

M = TypeVar("M", bound=PeerBody)


async def read_body(request: web.Request, model: type[M]) -> M:
    require_peer(request)
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(413, "invalid_message", f"body larger than {MAX_BODY} bytes")
    body = parse_body(model, await receive_body(request))
    refusal = await request.app[NODE].cascade.check_peer(body.room, body.node)
    if refusal is not None:
        raise AccessDenied(*refusal)
    return body


async def open_bridge(request: web.Request) -> web.Response:
    body = await read_body(request, BridgeOpen)
    relay = request.app[NODE].relay
    try:
        endpoint = relay.bridge_out(body.room, body.node, tuple(body.fingerprints))
    except RelayError as exc:
        raise ApiError(relay_status(exc), exc.code, str(exc)) from None
    return web.json_response(endpoint_adapter.dump_python(endpoint, mode="json"))


async def send_track(request: web.Request) -> web.Response:
    body = await read_body(request, BridgeTrackAsk)
    relay = request.app[NODE].relay
    try:
        bridged = relay.bridge_send(body.room, body.node, body.track_sid, tuple(body.rids))
    except RelayError as exc:
        raise ApiError(relay_status(exc), exc.code, str(exc)) from None
    return web.json_response(track_adapter.dump_python(bridged, mode="json"))


async def push_data(request: web.Request) -> web.Response:
    body = await read_body(request, DataPush)
    relayed = Relayed(body.delivered, tuple(body.destinations))
    request.app[NODE].relay.deliver_data(body.room, body.sender_sid, body.lossy, relayed)
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/cluster/bridges", open_bridge)
    app.router.add_post("/v1/cluster/bridges/tracks", send_track)
    app.router.add_post("/v1/cluster/data", push_data)
