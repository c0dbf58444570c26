"""An offer with hundreds of media sections (issue 18, item 2) is refused on every path a
client offers on (WHIP, WHEP, the WebSocket's publish_offer), creating no track; it used to
create one track per section, bounded only by the SDP's 64 KB."""

from __future__ import annotations

import aiohttp
import pytest

from bench.loopback_node import RunningNode, token
from relay.sdp_negotiation import MAX_OFFERED_MEDIA
from signaling import protocol as p

pytestmark = pytest.mark.timeout(30)

FINGERPRINT = ":".join(["AB"] * 32)


def offer(sections: int, direction: str) -> str:
    lines = [
        "v=0",
        "o=- 1 1 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE " + " ".join(str(i) for i in range(sections)),
        "a=ice-ufrag:abcd",
        "a=ice-pwd:abcdefghijklmnopqrstuvwx",
        f"a=fingerprint:sha-256 {FINGERPRINT}",
        "a=setup:actpass",
    ]
    for i in range(sections):
        lines += [
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
            "c=IN IP4 0.0.0.0",
            f"a=mid:{i}",
            f"a={direction}",
            "a=rtcp-mux",
            "a=rtpmap:111 opus/48000/2",
        ]
    return "\r\n".join(lines) + "\r\n"


@pytest.mark.parametrize("kind, direction", [("whip", "sendonly"), ("whep", "recvonly")])
async def test_whip_and_whep_refuse_an_offer_with_too_many_sections(
    relay_node: RunningNode, kind: str, direction: str
) -> None:
    headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {token('big', 'x')}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(
            relay_node.http(f"/{kind}/big"), data=offer(500, direction), headers=headers
        ) as resp:
            assert resp.status == 400
            body = await resp.json()
            assert body["code"] == "invalid_sdp" and "500 media sections" in body["message"]
        assert "big" not in relay_node.worker.rooms  # nobody left behind, no track
        # at the limit it is an ordinary offer (answered, or refused for what it lacks)
        async with http.post(
            relay_node.http(f"/{kind}/big"),
            data=offer(MAX_OFFERED_MEDIA, direction),
            headers=headers,
        ) as resp:
            assert "media sections" not in await resp.text()


async def test_publish_offer_refuses_too_many_sections(relay_node: RunningNode) -> None:
    client = await relay_node.join("big", "host")
    await client._send(p.PublishOffer(type="publish_offer", sdp=offer(500, "sendonly"), tracks=[]))
    error = await client.wait_for(p.Error, timeout=10)
    assert error.code == "invalid_sdp" and "500 media sections" in error.message
    room = relay_node.worker.rooms["big"]
    assert not room.tracks()
