"""REST admin API under ``/v1/rooms``: list, create, delete rooms; list, update (grants) and
remove participants.

Every call needs a bearer token with ``room_admin``; a token whose grant names a room is
limited to that room, and listing every room needs an operator token (``signaling.authz``).
"""

from __future__ import annotations

import dataclasses

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from regions.models import RoomPolicy
from regions.registry import RegistryError
from relay.control import ParticipantKind, Permissions, RoomInfo
from relay.errors import RelayError

from . import protocol as p
from .app_keys import NODE
from .authz import OnCluster, OnRoom, authenticate, require
from .cascade import describe_member
from .errors import ApiError, parse_body, read_body, relay_status
from .node import describe_grants, describe_participant


class CreateRoom(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=256)
    max_participants: int | None = Field(default=None, ge=0)
    max_viewers: int | None = Field(default=None, ge=0)  # WHEP viewers; 0: no limit
    audio_top_n: int | None = Field(default=None, ge=0)  # the N loudest audio only; 0: all
    public_viewing: bool = False  # WHEP playback without a token
    allowed_jurisdictions: list[str] = Field(default_factory=list, max_length=32)
    allowed_regions: list[str] = Field(default_factory=list, max_length=64)


def _room_json(room: RoomInfo) -> dict[str, object]:
    return dataclasses.asdict(room)


def _room(request: web.Request) -> RoomInfo:
    name = request.match_info["room"]
    room = request.app[NODE].relay.room(name)
    if room is None:
        raise ApiError(404, "not_found", f"room {name} does not exist")
    return room


async def list_rooms(request: web.Request) -> web.Response:
    require(request, OnCluster())
    rooms = request.app[NODE].relay.rooms()
    return web.json_response({"rooms": [_room_json(r) for r in rooms]})


async def create_room(request: web.Request) -> web.Response:
    authenticate(request)  # 401 before 400; what the token allows is decided on the body
    body = parse_body(CreateRoom, await read_body(request))
    require(request, OnRoom(body.name, "admin"))
    node = request.app[NODE]
    policy = RoomPolicy(
        allowed_jurisdictions=body.allowed_jurisdictions,
        allowed_regions=body.allowed_regions,
        public_viewing=body.public_viewing,
        max_participants=body.max_participants,
        max_viewers=body.max_viewers,
        audio_top_n=body.audio_top_n,
    )
    try:
        await node.cluster.set_policy(body.name, policy)
    except RegistryError as exc:
        raise ApiError(503, "registry_unavailable", str(exc)) from None
    room = node.relay.create_room(
        body.name, body.max_participants, body.public_viewing, body.max_viewers, body.audio_top_n
    )
    return web.json_response(_room_json(room), status=201)


async def get_room(request: web.Request) -> web.Response:
    require(request, OnRoom(request.match_info["room"], "admin"))
    return web.json_response(_room_json(_room(request)))


async def delete_room(request: web.Request) -> web.Response:
    require(request, OnRoom(request.match_info["room"], "admin"))
    room = _room(request)
    await request.app[NODE].relay.delete_room(room.name)
    return web.Response(status=204)


async def list_participants(request: web.Request) -> web.Response:
    """The whole room as this node knows it: its own participants, and those on the other
    nodes the room lives on (from the room directory), each with its node."""
    require(request, OnRoom(request.match_info["room"], "admin"))
    room = _room(request)
    node = request.app[NODE]
    here = node.settings.node_id
    people = [
        {
            **describe_participant(p).model_dump(),
            "node": here,
            "receiving": dataclasses.asdict(p.receiving),
        }
        for p in node.relay.participants(room.name)
        if p.kind is not ParticipantKind.REMOTE  # a stand-in: listed below, on its node
    ]
    people += [
        {**describe_member(m).model_dump(), "node": m.node}
        for m in node.cascade.remote_members(room.name)
    ]
    return web.json_response({"participants": people})


class UpdateParticipant(BaseModel):
    model_config = ConfigDict(extra="forbid")

    permissions: p.PermissionGrants


async def update_participant(request: web.Request) -> web.Response:
    """New grants for a participant, in place: ``permissions_changed`` reaches it, tracks it
    may no longer publish are unpublished at once (the others see ``track_unpublished``)."""
    require(request, OnRoom(request.match_info["room"], "admin"))
    room = _room(request)
    body = parse_body(UpdateParticipant, await read_body(request))
    grants = body.permissions
    permissions = Permissions(
        can_publish=grants.can_publish,
        can_subscribe=grants.can_subscribe,
        can_publish_data=grants.can_publish_data,
        sources=frozenset(grants.sources) if grants.sources is not None else None,
    )
    node = request.app[NODE]
    try:
        info = node.relay.set_permissions(room.name, request.match_info["identity"], permissions)
    except RelayError as exc:
        raise ApiError(relay_status(exc), exc.code, str(exc)) from None
    described = describe_participant(info).model_dump()
    grants_json = describe_grants(info.permissions).model_dump()
    return web.json_response(
        {**described, "node": node.settings.node_id, "permissions": grants_json}
    )


async def remove_participant(request: web.Request) -> web.Response:
    require(request, OnRoom(request.match_info["room"], "admin"))
    room = _room(request)
    await request.app[NODE].relay.remove(room.name, request.match_info["identity"], "removed")
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/rooms", list_rooms)
    app.router.add_post("/v1/rooms", create_room)
    app.router.add_get("/v1/rooms/{room}", get_room)
    app.router.add_delete("/v1/rooms/{room}", delete_room)
    app.router.add_get("/v1/rooms/{room}/participants", list_participants)
    app.router.add_delete("/v1/rooms/{room}/participants/{identity}", remove_participant)
    app.router.add_patch("/v1/rooms/{room}/participants/{identity}", update_participant)
