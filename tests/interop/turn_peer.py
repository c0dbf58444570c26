"""A WHIP publisher or WHEP viewer that gathers with the ICE servers the server hands out in
``Link`` headers (RFC 9725 section 4.4); run inside a network namespace that reaches the
relay only through TURN.

    python -m tests.interop.turn_peer whip|whep URL TOKEN [--transport udp|tcp|none]

Prints ``connected``, then (a viewer) ``frame WxH`` per decoded frame; runs until stdin
closes.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys

import aiohttp
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from bench.flat_color_track import FlatColorTrack

LINK = re.compile(r"<([^>]+)>\s*;(.*)")
PARAM = re.compile(r'([\w-]+)="([^"]*)"')


def ice_servers(links: list[str], transport: str) -> list[RTCIceServer]:
    servers = []
    for header in links:
        for link in header.split(","):
            match = LINK.match(link.strip())
            if match is None:
                continue
            url, params = match[1], dict(PARAM.findall(match[2]))
            if params.get("rel") != "ice-server" or f"transport={transport}" not in url:
                continue
            servers.append(RTCIceServer(url, params.get("username"), params.get("credential")))
    return servers


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["whip", "whep"])
    parser.add_argument("url")
    parser.add_argument("token")
    parser.add_argument("--transport", default="udp", choices=["udp", "tcp", "none"])
    args = parser.parse_args()

    # The servers are needed before the offer (candidates are gathered for it): an OPTIONS
    # request with the token gets them, TURN credential included (as MediaMTX's client does).
    headers = {"Authorization": f"Bearer {args.token}", "Content-Type": "application/sdp"}
    kinds = ["video"] if args.kind == "whip" else ["video", "audio"]
    async with aiohttp.ClientSession() as http:
        async with http.options(args.url, headers=headers) as resp:
            assert resp.status == 204, await resp.text()
            servers = ice_servers(resp.headers.getall("Link", []), args.transport)
        assert servers or args.transport == "none", f"no TURN over {args.transport} offered"

        pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        frames: asyncio.Queue[MediaStreamTrack] = asyncio.Queue()
        pc.on("track", lambda t: frames.put_nowait(t) if t.kind == "video" else None)
        pc.on(
            "connectionstatechange",
            lambda: print(pc.connectionState, flush=True),
        )
        if args.kind == "whip":
            pc.addTransceiver(FlatColorTrack(320, 240), direction="sendonly")
        else:
            for kind in kinds:
                pc.addTransceiver(kind, direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        async with http.post(args.url, data=pc.localDescription.sdp, headers=headers) as resp:
            assert resp.status == 201, await resp.text()
            await pc.setRemoteDescription(RTCSessionDescription(await resp.text(), "answer"))
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    done = asyncio.ensure_future(reader.read())
    if args.kind == "whep":
        track = await frames.get()
        while not done.done():
            frame = await track.recv()
            print(f"frame {frame.width}x{frame.height}", flush=True)
    await done
    await pc.close()


if __name__ == "__main__":
    asyncio.run(main())
