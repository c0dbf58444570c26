"""Room isolation: every route that names a room or a session refuses a token for another room.

The route walk reads docs/SECURITY.md's table, so a route added later without a row there, or
with a row whose check it does not make, fails here.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection
from aiortc.mediastreams import AudioStreamTrack, MediaStreamTrack

from bench.flat_color_track import FlatColorTrack
from bench.loopback_node import RunningNode, token
from signaling.authz import AccessDenied, OnCluster, OnRoom, OnSession, authorize
from signaling.tokens import Claims, Grant, TokenError

from ..interop.http_sessions import whep_view, whip_publish

pytestmark = pytest.mark.timeout(60)

SECURITY_MD = Path(__file__).resolve().parents[2] / "docs" / "SECURITY.md"
TRICKLE = {"Content-Type": "application/trickle-ice-sdpfrag", "If-Match": "*"}
FRAGMENT = "a=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n"


def claims(room: str = "", sub: str = "alice", **grant: bool) -> Claims:
    return Claims(iss="k", sub=sub, exp=0, grant=Grant(room=room, **grant))


# the rule itself -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "who, target, code",
    [
        (claims("a", room_admin=True), OnRoom("b", "admin"), "token_wrong_room"),
        (claims("a", can_publish=True), OnRoom("b", "publish"), "token_wrong_room"),
        (claims("a", "host", room_admin=True), OnSession("b", "host"), "token_wrong_room"),
        (claims("a", "host"), OnSession("b", "host"), "token_wrong_room"),
        (claims("a"), OnSession("a", "host"), "permission_denied"),
        (claims("a", can_publish=False), OnRoom("a", "publish"), "permission_denied"),
        (claims("a", can_subscribe=False), OnRoom("a", "subscribe"), "permission_denied"),
        (claims("a"), OnRoom("a", "admin"), "permission_denied"),
        (claims("a", room_admin=True), OnCluster(), "permission_denied"),
        (claims("", can_publish=True), OnCluster(), "permission_denied"),
    ],
)
def test_refused(who: Claims, target: Any, code: str) -> None:
    with pytest.raises(AccessDenied) as refused:
        authorize(who, target)
    assert refused.value.code == code


@pytest.mark.parametrize(
    "who, target",
    [
        (claims("", room_admin=True), OnCluster()),
        (claims("", room_admin=True), OnSession("b", "host")),
        (claims("b", room_admin=True), OnSession("b", "host")),
        (claims("b", "host"), OnSession("b", "host")),
        (claims("b"), OnSession("b", None)),  # no such session: the route answers 404
        (claims("", can_publish=True), OnRoom("b", "publish")),
        (claims("b"), OnRoom("b", "join")),
        (None, OnRoom("b", "subscribe", public=True)),
        (None, OnSession("b", "viewer-1", public=True)),
    ],
)
def test_allowed(who: Claims | None, target: Any) -> None:
    assert authorize(who, target) is who


def test_no_token_for_a_private_target() -> None:
    for target in (OnCluster(), OnRoom("b", "join"), OnSession("b", "host")):
        with pytest.raises(TokenError) as missing:
            authorize(None, target)
        assert missing.value.code == "token_missing"


# a live victim ---------------------------------------------------------------------------


@dataclass
class Victim:
    publisher: RTCPeerConnection
    whip_location: str
    viewer: RTCPeerConnection
    video: MediaStreamTrack
    whep_location: str

    def session(self, kind: str) -> str:
        location = self.whip_location if kind == "whip" else self.whep_location
        return location.rsplit("/", 1)[1]


@pytest.fixture
async def victim(relay_node: RunningNode) -> AsyncIterator[Victim]:
    """Room ``victim``: a WHIP publisher ``host`` and a WHEP viewer ``fan``, media flowing."""
    publisher, whip_location = await whip_publish(
        relay_node, "victim", token("victim", "host"), FlatColorTrack(160, 120), AudioStreamTrack()
    )
    viewer, tracks, whep_location = await whep_view(
        relay_node, "/whep/victim", token("victim", "fan", publish=False)
    )
    try:
        await asyncio.wait_for(tracks["video"].recv(), 15)
        yield Victim(publisher, whip_location, viewer, tracks["video"], whep_location)
    finally:
        await viewer.close()
        await publisher.close()


async def still_playing(relay_node: RunningNode, victim: Victim) -> None:
    room = relay_node.worker.rooms["victim"]
    assert victim.session("whip") in room.participants
    assert victim.session("whep") in room.participants
    for _ in range(5):  # frames keep arriving after the attempts
        await asyncio.wait_for(victim.video.recv(), 5)


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


# the reproductions of the issue ----------------------------------------------------------


@pytest.mark.parametrize(
    "attacker",
    [
        token("attacker", "mallory", admin=True),  # admin of another room
        token("attacker", "host"),  # another room's token with the victim's identity
    ],
)
async def test_another_rooms_token_cannot_end_or_patch_a_stream(
    relay_node: RunningNode, victim: Victim, attacker: str
) -> None:
    async with aiohttp.ClientSession() as http:
        for location in (victim.whip_location, victim.whep_location):
            url = relay_node.http(location)
            async with http.delete(url, headers=bearer(attacker)) as resp:
                assert resp.status == 403
                assert (await resp.json())["code"] == "token_wrong_room"
            headers = {**bearer(attacker), **TRICKLE}
            async with http.patch(url, data=FRAGMENT, headers=headers) as resp:
                assert resp.status == 403
    await still_playing(relay_node, victim)


async def test_same_room_sessions_need_their_owner_or_an_admin(
    relay_node: RunningNode, victim: Victim
) -> None:
    async with aiohttp.ClientSession() as http:
        url = relay_node.http(victim.whip_location)
        async with http.delete(url, headers=bearer(token("victim", "mallory"))) as resp:
            assert resp.status == 403
            assert (await resp.json())["code"] == "permission_denied"
        # a session is only reachable under its own kind
        wrong_kind = relay_node.http(f"/whip/victim/{victim.session('whep')}")
        async with http.delete(wrong_kind, headers=bearer(token("victim", "fan"))) as resp:
            assert resp.status == 404
        async with http.patch(
            url, data=FRAGMENT, headers={**bearer(token("victim", "host")), **TRICKLE}
        ) as resp:
            assert resp.status == 204
        await still_playing(relay_node, victim)
        admin = bearer(token("victim", "moderator", admin=True))
        async with http.delete(url, headers=admin) as resp:
            assert resp.status == 200
    assert victim.session("whip") not in relay_node.worker.rooms["victim"].participants


async def test_cluster_routes_need_an_operator_token(relay_node: RunningNode) -> None:
    room_admin = bearer(token("mine", "ops", admin=True))
    operator = bearer(token("", "ops", admin=True))
    async with aiohttp.ClientSession() as http:
        for path in ("/v1/nodes", "/v1/rooms"):
            async with http.get(relay_node.http(path), headers=room_admin) as resp:
                assert resp.status == 403, path
            async with http.get(relay_node.http(path), headers=operator) as resp:
                assert resp.status == 200, path
        async with http.get(relay_node.http("/v1/route?room=theirs"), headers=room_admin) as r:
            assert r.status == 403
        async with http.get(relay_node.http("/v1/route?room=mine"), headers=room_admin) as r:
            assert r.status == 200


BAD_BODIES = [
    ("application/sdp", b"v=0\r\no=- 1 1 IN IP4 \xff\xfe\r\n", 400),
    ("application/sdp; charset=x-bogus", b"v=0\r\n", 415),
    ("application/sdp; charset=latin-1", b"v=0\r\n", 415),
]


@pytest.mark.parametrize("kind", ["whip", "whep"])
@pytest.mark.parametrize("content_type, body, status", BAD_BODIES)
async def test_bytes_that_are_not_text_are_client_errors(
    relay_node: RunningNode,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    content_type: str,
    body: bytes,
    status: int,
) -> None:
    headers = {"Content-Type": content_type, **bearer(token("w", "pub"))}
    with caplog.at_level(logging.DEBUG):
        async with (
            aiohttp.ClientSession() as http,
            http.post(relay_node.http(f"/{kind}/w"), data=body, headers=headers) as resp,
        ):
            assert resp.status == status
            assert (await resp.json())["code"] in ("invalid_sdp", "unsupported_media_type")
            assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert relay_node.worker.rooms == {}
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_a_trickle_patch_that_is_not_text_is_a_400(
    relay_node: RunningNode, victim: Victim, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {**bearer(token("victim", "host")), **TRICKLE}
    with caplog.at_level(logging.DEBUG):
        async with (
            aiohttp.ClientSession() as http,
            http.patch(
                relay_node.http(victim.whip_location), data=b"a=\xc3\x28\r\n", headers=headers
            ) as resp,
        ):
            assert resp.status == 400
            assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    await still_playing(relay_node, victim)


async def test_an_unexpected_failure_is_a_logged_500_without_traceback(
    relay_node: RunningNode,
    victim: Victim,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(relay_node.worker, "leave", broken)
    headers = bearer(token("victim", "host"))
    with caplog.at_level(logging.DEBUG, logger="signaling.errors"):
        async with aiohttp.ClientSession() as http:
            for _ in range(3):
                async with http.delete(relay_node.http(victim.whip_location), headers=headers) as r:
                    assert r.status == 500
                    body = await r.json()
                    assert body["code"] == "internal_error"
                    assert "Traceback" not in body["message"] and "bug" not in body["message"]
                    assert r.headers["Access-Control-Allow-Origin"] == "*"
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1  # once per route and exception type, not per request
    monkeypatch.undo()
    await still_playing(relay_node, victim)


# the route walk --------------------------------------------------------------------------


def documented_routes() -> dict[tuple[str, str], str]:
    """(method, path) -> target, from the routes table of docs/SECURITY.md."""
    table: dict[tuple[str, str], str] = {}
    for line in SECURITY_MD.read_text().splitlines():
        match = re.match(r"\| `([A-Z]+)` \| `([^`]+)` \| `([^`]+)` \|", line)
        if match:
            table[(match[1], match[2])] = match[3]
    return table


# Routes whose room is not a path parameter: how the request names it.
ROOM_OUTSIDE_THE_PATH = {
    ("GET", "/v1/route"): "query",
    ("POST", "/v1/rooms"): "body",
    ("GET", "/v1/rtc"): "join",
}


async def test_every_route_is_documented_and_refuses_another_rooms_token(
    relay_node: RunningNode, victim: Victim
) -> None:
    documented = documented_routes()
    # Everything a token could carry, for another room, with the victim's identity.
    attacker = bearer(token("attacker", "host", admin=True))
    checked = 0
    async with aiohttp.ClientSession() as http:
        for route in relay_node.server.app.router.routes():
            method, resource = route.method, route.resource
            assert resource is not None
            path = resource.canonical
            if method == "HEAD":
                continue  # answered by the GET handler
            target = documented.get((method, path))
            assert target is not None, f"{method} {path} is missing from docs/SECURITY.md"
            if target in ("public", "dev"):
                continue
            if target == "peer":
                # No client token opens a bridge or injects data, an operator's neither.
                body = {"room": "victim", "node": "x"}
                for who in (attacker, bearer(token("", "ops", admin=True))):
                    async with http.request(
                        method, relay_node.http(path), headers=who, json=body
                    ) as resp:
                        assert resp.status == 403, f"{method} {path}: {resp.status}"
                        assert (await resp.json())["code"] == "permission_denied"
                checked += 1
                continue
            if target == "operator":
                url = relay_node.http(path)
                room_admin = bearer(token("victim", "host", admin=True))
                async with http.request(method, url, headers=room_admin) as resp:
                    assert resp.status == 403, f"{method} {path}: {resp.status}"
                checked += 1
                continue
            assert target.startswith(("room:", "session")), f"unknown target {target}"
            how = ROOM_OUTSIDE_THE_PATH.get((method, path), "path")
            if how == "path":
                assert "{room}" in path, f"{method} {path}: how does it name its room?"
            if how == "join":
                code = await ws_join_code(relay_node, "victim", attacker["Authorization"][7:])
                assert code == "token_wrong_room"
                checked += 1
                continue
            url = path.replace("{room}", "victim").replace("{identity}", "host")
            url = url.replace("{session}", victim.session(path.split("/")[1]))
            assert "{" not in url, f"{method} {path}: fill in its parameters here"
            kwargs: dict[str, Any] = {"headers": attacker}
            if how == "query":
                url += "?room=victim"
            elif how == "body":
                kwargs["json"] = {"name": "victim"}
            elif path.startswith(("/whip/", "/whep/")):
                kind = "application/sdp" if method == "POST" else TRICKLE["Content-Type"]
                kwargs["headers"] = {**attacker, "Content-Type": kind}
                kwargs["data"] = "v=0\r\n" if method == "POST" else FRAGMENT
            async with http.request(method, relay_node.http(url), **kwargs) as resp:
                assert resp.status == 403, f"{method} {path}: {resp.status}"
                assert (await resp.json())["code"] == "token_wrong_room", f"{method} {path}"
            checked += 1
    assert checked >= 12  # the walk really reached the room, session and operator routes
    assert "victim" in relay_node.worker.rooms
    await still_playing(relay_node, victim)


async def ws_join_code(relay_node: RunningNode, room: str, tok: str) -> str:
    async with aiohttp.ClientSession() as http, http.ws_connect(relay_node.url) as ws:
        await ws.send_json({"type": "join", "version": 1, "room": room, "token": tok})
        reply = await ws.receive_json(timeout=5)
        assert reply["type"] == "error"
        return str(reply["code"])
