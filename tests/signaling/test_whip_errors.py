"""WHIP protocol errors get the status codes RFC 9725 names and leave no session behind."""

from __future__ import annotations

import aiohttp
import pytest

from bench.loopback_node import RunningNode, node_settings, running_node, token

pytestmark = pytest.mark.timeout(30)

SDP = {"Content-Type": "application/sdp"}


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


@pytest.mark.parametrize(
    "headers, body, status, code",
    [
        (
            {"Content-Type": "text/plain", **bearer(token("w", "pub"))},
            "v=0\r\n",
            415,
            "unsupported_media_type",
        ),
        ({**SDP, **bearer(token("w", "pub"))}, "", 400, "invalid_sdp"),
        ({**SDP, **bearer(token("w", "pub"))}, "garbage\r\n", 400, "invalid_sdp"),
        (
            {**SDP, **bearer(token("w", "pub"))},
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n",
            400,
            "invalid_sdp",
        ),
        (SDP, "v=0\r\n", 401, "token_missing"),
        ({**SDP, **bearer("nonsense")}, "v=0\r\n", 401, "token_malformed"),
        (
            {**SDP, **bearer(token("w", "viewer", publish=False))},
            "v=0\r\n",
            403,
            "permission_denied",
        ),
        ({**SDP, **bearer(token("elsewhere", "pub"))}, "v=0\r\n", 403, "token_wrong_room"),
    ],
)
async def test_post_errors(
    relay_node: RunningNode, headers: dict[str, str], body: str, status: int, code: str
) -> None:
    await _refused(relay_node, "/whip/w", headers, body, status, code)


async def _refused(
    relay_node: RunningNode, path: str, headers: dict[str, str], body: str, status: int, code: str
) -> None:
    """POST, expect ``status`` with error ``code`` (and CORS), and no room state left."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(relay_node.http(path), data=body, headers=headers) as resp,
    ):
        assert resp.status == status
        assert (await resp.json())["code"] == code
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert relay_node.worker.rooms == {}


async def test_session_errors_and_preflight(relay_node: RunningNode) -> None:
    auth = bearer(token("w", "pub"))
    async with aiohttp.ClientSession() as http:
        async with http.delete(relay_node.http("/whip/w/PA_unknown"), headers=auth) as resp:
            assert resp.status == 404
        async with http.patch(relay_node.http("/whip/w/PA_unknown"), headers=auth) as resp:
            assert resp.status == 404
        async with http.delete(relay_node.http("/whip/w/PA_unknown")) as resp:
            assert resp.status == 401
        async with http.options(relay_node.http("/whip/w")) as resp:
            assert resp.status == 204
            assert "POST" in resp.headers["Access-Control-Allow-Methods"]
            assert resp.headers["Accept-Post"] == "application/sdp"


async def test_draining_and_ice_server_links() -> None:
    settings = node_settings(
        rtc={
            "ice_servers": [
                {"urls": ["stun:stun.example.test:3478"]},
                {"urls": "turn:turn.example.test", "username": "u", "credential": "c"},
            ]
        }
    )
    async with running_node(settings) as rn, aiohttp.ClientSession() as http:
        async with http.options(rn.http("/whip/w")) as resp:
            links = resp.headers.getall("Link")
        assert '<stun:stun.example.test:3478>; rel="ice-server"' in links
        assert any(
            link.startswith("<turn:turn.example.test>") and 'username="u"' in link for link in links
        )
        await rn.node.drain(grace=0)
        async with http.post(
            rn.http("/whip/w"), data="v=0\r\n", headers={**SDP, **bearer(token("w", "pub"))}
        ) as resp:
            assert resp.status == 503
        assert rn.worker.rooms == {}


@pytest.mark.parametrize(
    "headers, body, status, code",
    [
        (
            {"Content-Type": "text/plain", **bearer(token("w", "v", publish=False))},
            "v=0\r\n",
            415,
            "unsupported_media_type",
        ),
        ({**SDP, **bearer(token("w", "v", publish=False))}, "", 400, "invalid_sdp"),
        ({**SDP, **bearer(token("w", "v", publish=False))}, "garbage\r\n", 400, "invalid_sdp"),
        (SDP, "v=0\r\n", 401, "token_missing"),
        (
            {**SDP, **bearer(token("w", "v", publish=True, subscribe=False))},
            "v=0\r\n",
            403,
            "permission_denied",
        ),
    ],
)
async def test_whep_post_errors(
    relay_node: RunningNode, headers: dict[str, str], body: str, status: int, code: str
) -> None:
    await _refused(relay_node, "/whep/w", headers, body, status, code)


async def test_whep_unknown_session(relay_node: RunningNode) -> None:
    auth = bearer(token("w", "v", publish=False))
    async with aiohttp.ClientSession() as http:
        async with http.delete(relay_node.http("/whep/w/PA_unknown"), headers=auth) as resp:
            assert resp.status == 404
        async with http.options(relay_node.http("/whep/w")) as resp:
            assert resp.status == 204
