"""Dev mode only: the demo page mints its own tokens, room admin ones too (its host invites
viewers on stage through the admin API). Never registered outside dev mode."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from .app_keys import NODE
from .errors import parse_body, read_body
from .tokens import Grant, mint


class DevTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    room: str = Field(min_length=1, max_length=256)
    identity: str = Field(min_length=1, max_length=256)
    publish: bool = False
    subscribe: bool = True
    data: bool = False
    admin: bool = False  # room_admin: the admin API on this room (the demo's host)


async def dev_token(request: web.Request) -> web.Response:
    body = parse_body(DevTokenRequest, await read_body(request))
    key, secret = next(iter(request.app[NODE].settings.keys.items()))
    grant = Grant(
        room=body.room,
        can_publish=body.publish,
        can_subscribe=body.subscribe,
        can_publish_data=body.data,
        room_admin=body.admin,
    )
    return web.json_response({"token": mint(key, secret, body.identity, grant, ttl=3600)})


def add_routes(app: web.Application) -> None:
    if app[NODE].settings.dev_mode:
        app.router.add_post("/dev/token", dev_token)
