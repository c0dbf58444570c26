"""Glass to glass through a bridge versus direct: an aiortc WHIP publisher paints the time
into each frame (32 black or white blocks), one aiortc WHEP viewer on the publisher's node
and one on another node (bridged) decode the frames and read the time back; same process,
same clock. What is measured is capture to decoded frame: encode, relay (one node, or two
and the bridge), the viewer's jitter buffer and decode.

    python -m bench.glass --write docs/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack, VideoStreamTrack
from av import VideoFrame

from signaling.client import restrict_ice_host_addresses
from signaling.tokens import Grant, mint

from .cascade import nodes_on_redis
from .doc_sections import replace_section
from .loadgen import KEY, SECRET, pct

HEADING = "## Glass to glass, direct and through one bridge"
WIDTH, HEIGHT = 320, 240
COLUMNS, ROWS = 8, 4  # 32 blocks: milliseconds modulo 2**32
BLOCK_W, BLOCK_H = WIDTH // COLUMNS, HEIGHT // ROWS


def now_ms() -> int:
    return int(time.monotonic() * 1000) & 0xFFFFFFFF


class ClockTrack(VideoStreamTrack):
    """Frames that show when they were made, in blocks large enough to survive VP8."""

    async def recv(self) -> VideoFrame:
        import numpy  # av's frames need it; only this benchmark does (a dev dependency)

        pts, time_base = await self.next_timestamp()
        stamp = now_ms()
        image = numpy.zeros((HEIGHT, WIDTH, 3), numpy.uint8)
        for bit in range(32):
            if stamp >> bit & 1:
                row, column = divmod(bit, COLUMNS)
                image[
                    row * BLOCK_H : (row + 1) * BLOCK_H, column * BLOCK_W : (column + 1) * BLOCK_W
                ] = 255
        frame = VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        return frame


def read_stamp(frame: VideoFrame) -> int:
    luma = frame.to_ndarray(format="gray")
    stamp = 0
    for bit in range(32):
        row, column = divmod(bit, COLUMNS)
        if luma[row * BLOCK_H + BLOCK_H // 2, column * BLOCK_W + BLOCK_W // 2] > 128:
            stamp |= 1 << bit
    return stamp


async def _post(url: str, token: str, pc: RTCPeerConnection) -> None:
    await pc.setLocalDescription(await pc.createOffer())
    headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=pc.localDescription.sdp, headers=headers) as resp,
    ):
        if resp.status != 201:
            raise RuntimeError(f"{url}: {resp.status} {await resp.text()}")
        await pc.setRemoteDescription(RTCSessionDescription(await resp.text(), "answer"))


async def _watch(track: MediaStreamTrack, delays: list[float], warmup_until: float) -> None:
    while True:
        frame = await track.recv()
        arrived = now_ms()
        if time.monotonic() >= warmup_until and isinstance(frame, VideoFrame):
            delays.append(float((arrived - read_stamp(frame)) & 0xFFFFFFFF))


async def measure(seconds: float, warmup: float = 3.0) -> dict[str, Any]:
    restrict_ice_host_addresses(["127.0.0.1"])  # aioice leaves loopback out otherwise
    room = "glass"
    async with nodes_on_redis(2) as nodes:
        publisher = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        publisher.addTransceiver(ClockTrack(), direction="sendonly")
        grant = Grant(room=room, can_publish=True, can_subscribe=False)
        await _post(nodes[0].http_url + f"/whip/{room}", mint(KEY, SECRET, "cam", grant), publisher)
        viewers, tasks = [], []
        results: dict[str, list[float]] = {"direct": [], "bridged": []}
        warmup_until = time.monotonic() + warmup
        try:
            for name, node in (("direct", nodes[0]), ("bridged", nodes[1])):
                pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
                arrived: asyncio.Future[MediaStreamTrack] = (
                    asyncio.get_running_loop().create_future()
                )
                pc.on("track", lambda t, f=arrived: f.done() or f.set_result(t))
                pc.addTransceiver("video", direction="recvonly")
                viewer_grant = Grant(room=room, can_publish=False, can_subscribe=True)
                token = mint(KEY, SECRET, f"viewer-{name}", viewer_grant)
                await _post(node.http_url + f"/whep/{room}", token, pc)
                viewers.append(pc)
                track = await asyncio.wait_for(arrived, 20)
                tasks.append(asyncio.create_task(_watch(track, results[name], warmup_until)))
            await asyncio.sleep(warmup + seconds)
        finally:
            for task in tasks:
                task.cancel()
            for pc in [*viewers, publisher]:
                with contextlib.suppress(Exception):
                    await pc.close()
    return {
        name: {
            "frames": len(values),
            "p50_ms": pct(values, 0.5),
            "p99_ms": pct(values, 0.99),
        }
        for name, values in results.items()
    }


def render(result: dict[str, Any], date: str) -> str:
    direct, bridged = result["direct"], result["bridged"]
    return (
        f"{HEADING} ({date})\n\n"
        "`python -m bench.glass`: an aiortc WHIP publisher paints the capture time into each "
        "320x240 frame; an aiortc WHEP viewer on the publisher's node and one on a second node "
        "(bridged by the nodes) decode the frames and read it back (one process, one clock): "
        "encode, relay, jitter buffer, decode. Two node processes on a real redis-server.\n\n"
        "| viewer | frames | p50 ms | p99 ms |\n|---|---|---|---|\n"
        f"| on the publisher's node | {direct['frames']} | {direct['p50_ms']:.0f} | "
        f"{direct['p99_ms']:.0f} |\n"
        f"| on another node, one bridge hop | {bridged['frames']} | {bridged['p50_ms']:.0f} | "
        f"{bridged['p99_ms']:.0f} |\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--write", type=Path, help="refresh this section of BENCHMARKS.md")
    args = parser.parse_args()
    result = asyncio.run(measure(args.seconds))
    print(json.dumps(result, indent=2))
    text = render(result, time.strftime("%Y-%m-%d"))
    print(text)
    if args.write:
        replace_section(args.write, HEADING, text)


if __name__ == "__main__":
    main()
