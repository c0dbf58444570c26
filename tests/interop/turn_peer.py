"""A WHIP publisher or WHEP viewer that gathers with the ICE servers the server hands out in
``Link`` headers (RFC 9725 section 4.4); run inside a network namespace that reaches the
relay only through TURN.

    python -m tests.interop.turn_peer whip|whep URL TOKEN [--transport udp|tcp|tls|none]

``tls`` takes the ``turns:`` URL (RFC 7065: TURN over TLS over TCP); aioice verifies the
server's certificate against OpenSSL's default CA file, which the test points at its
throwaway CA with ``SSL_CERT_FILE``: verification stays on, nothing is patched.

Prints ``gathered`` and the candidate types (and stops there with ``--gather-only``),
``connected``, then (a viewer) ``frame WxH`` per decoded frame; runs until stdin closes.
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


def carried_over(url: str) -> str:
    """How a TURN URL reaches its server: udp, tcp or tls (RFC 7065: ``turn`` defaults to
    UDP, ``turns`` is TLS over TCP)."""
    scheme, _, rest = url.partition(":")
    _, _, transport = rest.partition("?transport=")
    if scheme == "turns":
        return "tls" if transport in ("", "tcp") else f"turns-{transport}"
    return transport or "udp"


def ice_servers(links: list[str], transport: str) -> list[RTCIceServer]:
    servers = []
    for header in links:
        for link in header.split(","):
            match = LINK.match(link.strip())
            if match is None:
                continue
            url, params = match[1], dict(PARAM.findall(match[2]))
            if params.get("rel") != "ice-server" or carried_over(url) != transport:
                continue
            servers.append(RTCIceServer(url, params.get("username"), params.get("credential")))
    return servers


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["whip", "whep"])
    parser.add_argument("url")
    parser.add_argument("token")
    parser.add_argument("--transport", default="udp", choices=["udp", "tcp", "tls", "none"])
    parser.add_argument("--gather-only", action="store_true", help="stop after gathering")
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
        await pc.setLocalDescription(await pc.createOffer())  # gathers
        types = re.findall(r"^a=candidate:.* typ (\w+)", pc.localDescription.sdp, re.M)
        print("gathered", *sorted(set(types)), flush=True)
        if args.gather_only:
            await pc.close()
            return
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
