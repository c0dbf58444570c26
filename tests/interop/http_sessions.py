"""WHIP and WHEP as a standard client does them: one HTTP POST with an SDP offer."""

from __future__ import annotations

import asyncio

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from bench.loopback_node import RunningNode
from signaling.client import candidates_via


def url_of(node: RunningNode | str, path: str) -> str:
    """A path on an in-process node, or on a node given by its base URL (another process)."""
    return node.rstrip("/") + path if isinstance(node, str) else node.http(path)


async def post_offer(
    http: aiohttp.ClientSession, url: str, sdp: str, headers: dict[str, str]
) -> aiohttp.ClientResponse:
    """POST an offer, following a 307 with the same token as WHIP clients do (aiohttp
    itself drops ``Authorization`` on a redirect to another host:port)."""
    for _ in range(3):
        resp = await http.post(url, data=sdp, headers=headers, allow_redirects=False)
        if resp.status != 307:
            return resp
        url = str(resp.url.join(aiohttp.client.URL(resp.headers["Location"])))
        resp.release()
    raise AssertionError(f"redirected more than twice, last to {url}")


async def whip_publish(
    relay_node: RunningNode | str, room: str, tok: str, *tracks: object, query: str = ""
) -> tuple[RTCPeerConnection, str]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    for track in tracks:
        pc.addTransceiver(track, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {tok}"}
    url = url_of(relay_node, f"/whip/{room}{query}")
    async with (
        aiohttp.ClientSession() as http,
        await post_offer(http, url, pc.localDescription.sdp, headers) as resp,
    ):
        assert resp.status == 201, await resp.text()
        assert resp.content_type == "application/sdp"
        assert resp.headers["ETag"]
        location = resp.headers["Location"]
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        await pc.setRemoteDescription(RTCSessionDescription(await resp.text(), "answer"))
    return pc, location


async def whep_view(
    relay_node: RunningNode | str,
    path: str,
    tok: str | None,
    media_via: tuple[str, int] | None = None,
) -> tuple[RTCPeerConnection, dict[str, MediaStreamTrack], str]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    tracks: dict[str, MediaStreamTrack] = {}
    pc.on("track", lambda t: tracks.__setitem__(t.kind, t))
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    headers = {"Content-Type": "application/sdp"}
    if tok:
        headers["Authorization"] = f"Bearer {tok}"
    async with (
        aiohttp.ClientSession() as http,
        await post_offer(http, url_of(relay_node, path), pc.localDescription.sdp, headers) as resp,
    ):
        assert resp.status == 201, await resp.text()
        location = resp.headers["Location"]
        answer = await resp.text()
        if media_via is not None:
            answer = candidates_via(answer, media_via)
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    return pc, tracks, location


async def whep_refused(relay_node: RunningNode | str, path: str, tok: str | None) -> str:
    """POST a viewer's offer that the node must refuse with 503; the error code."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    try:
        await pc.setLocalDescription(await pc.createOffer())
        headers = {"Content-Type": "application/sdp"}
        if tok:
            headers["Authorization"] = f"Bearer {tok}"
        url = url_of(relay_node, path)
        async with (
            aiohttp.ClientSession() as http,
            await post_offer(http, url, pc.localDescription.sdp, headers) as resp,
        ):
            assert resp.status == 503, await resp.text()
            code: str = (await resp.json())["code"]
            return code
    finally:
        await pc.close()


async def frame_of_size(
    track: MediaStreamTrack, want: tuple[int, int], timeout: float = 10
) -> None:
    async def wait() -> None:
        while True:
            frame = await track.recv()
            if (frame.width, frame.height) == want:
                return

    await asyncio.wait_for(wait(), timeout)
