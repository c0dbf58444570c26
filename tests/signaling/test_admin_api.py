"""REST admin API under /v1/rooms."""

from __future__ import annotations

import aiohttp
import pytest
from aiortc.mediastreams import AudioStreamTrack

from bench.loopback_node import RunningNode, token
from signaling import protocol as p

pytestmark = pytest.mark.timeout(30)


def _auth(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


ADMIN = {"room": "", "identity": "ops", "publish": False, "data": False, "admin": True}


async def test_room_lifecycle_through_the_api(relay_node: RunningNode) -> None:
    admin = _auth(token(**ADMIN))  # type: ignore[arg-type]
    async with aiohttp.ClientSession() as http:
        url = relay_node.http
        async with http.post(
            url("/v1/rooms"), json={"name": "town", "max_participants": 2}, headers=admin
        ) as resp:
            assert resp.status == 201
            assert (await resp.json())["max_participants"] == 2
        async with http.get(url("/v1/rooms"), headers=admin) as resp:
            assert [r["name"] for r in (await resp.json())["rooms"]] == ["town"]

        alice = await relay_node.join("town", "alice")
        bob = await relay_node.join("town", "bob")
        await alice.publish(AudioStreamTrack())
        with pytest.raises(Exception) as full:
            await relay_node.join("town", "carol")
        assert getattr(full.value, "code", "") == "room_full"

        async with http.get(url("/v1/rooms/town/participants"), headers=admin) as resp:
            people = (await resp.json())["participants"]
        assert sorted(x["identity"] for x in people) == ["alice", "bob"]
        assert [len(x["tracks"]) for x in people if x["identity"] == "alice"] == [1]

        async with http.delete(url("/v1/rooms/town/participants/bob"), headers=admin) as resp:
            assert resp.status == 204
        closed = await bob.wait_for(p.Closed, timeout=5)
        assert closed.reason == "removed"
        await alice.wait_for(p.ParticipantLeft, lambda e: e.identity == "bob", timeout=5)

        async with http.delete(url("/v1/rooms/town"), headers=admin) as resp:
            assert resp.status == 204
        await alice.wait_for(p.Closed, timeout=5)
        assert "town" not in relay_node.worker.rooms
        async with http.get(url("/v1/rooms/town"), headers=admin) as resp:
            assert resp.status == 404
            assert (await resp.json())["code"] == "not_found"


async def test_api_needs_an_admin_token(relay_node: RunningNode) -> None:
    async with aiohttp.ClientSession() as http:
        url = relay_node.http("/v1/rooms")
        async with http.get(url) as resp:
            assert resp.status == 401
            assert (await resp.json())["code"] == "token_missing"
        async with http.get(url, headers=_auth(token("r", "user"))) as resp:
            assert resp.status == 403
        scoped = _auth(token("mine", "ops", admin=True))
        async with http.post(url, json={"name": "theirs"}, headers=scoped) as resp:
            assert resp.status == 403
        async with http.post(url, json={"name": ""}, headers=scoped) as resp:
            assert resp.status == 400
        async with http.post(url, data=b"{oops", headers=scoped) as resp:
            assert resp.status == 400
            assert (await resp.json())["message"] == "the body is not valid JSON"
        typo = {"name": "mine", "max_particpants": 3}
        async with http.post(url, json=typo, headers=scoped) as resp:
            assert resp.status == 400  # the answer names the key, not just the model
            assert (await resp.json())["message"].startswith("max_particpants: Extra inputs")
        assert relay_node.worker.rooms == {}
