"""Time from Chromium's WHIP POST to the first decoded frame at an aiortc WHEP viewer.

The viewer connects first and waits; the clock starts just before the page POSTs its
offer (camera already open) and stops when the viewer decodes its first video frame.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
import time

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from signaling.client import restrict_ice_host_addresses
from signaling.tokens import Grant, mint

from .chromium import CHROMIUM_FLAGS
from .node_process import NodeProcess

PREPARE_JS = """async () => {
    window.stream = await navigator.mediaDevices.getUserMedia({video: true});
    window.lib = await import("/static/eurelay.js");
}"""
PUBLISH_JS = """async ([url, token]) => {
    window.whip = await window.lib.whipPublish(url, token, window.stream);
}"""


async def _viewer(
    node: NodeProcess, room: str, tok: str
) -> tuple[RTCPeerConnection, asyncio.Future[None]]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    decoded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    tasks: set[asyncio.Future[None]] = set()

    def on_track(track: object) -> None:
        if getattr(track, "kind", "") == "video":

            async def first() -> None:
                await track.recv()  # type: ignore[attr-defined]
                if not decoded.done():
                    decoded.set_result(None)

            tasks.add(asyncio.ensure_future(first()))

    pc.on("track", on_track)
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{node.http_url}/whep/{room}",
            data=pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {tok}"},
        ) as resp,
    ):
        assert resp.status == 201, await resp.text()
        await pc.setRemoteDescription(RTCSessionDescription(await resp.text(), "answer"))
    return pc, decoded


async def measure(node: NodeProcess, key: str, secret: str, runs: int = 10) -> list[float]:
    """Milliseconds per run; needs Debian's chromium."""
    from playwright.async_api import async_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        raise RuntimeError("chromium is not installed")
    restrict_ice_host_addresses(["127.0.0.1"])
    results = []
    async with async_playwright() as pw:
        with tempfile.TemporaryDirectory() as profile:
            context = await pw.chromium.launch_persistent_context(
                profile, executable_path=chromium, headless=True, args=CHROMIUM_FLAGS
            )
            try:
                for run in range(runs):
                    room = f"latency-{run}"
                    viewer_token = mint(key, secret, f"viewer{run}", Grant(room=room))
                    pub_token = mint(
                        key, secret, f"chromium{run}", Grant(room=room, can_publish=True)
                    )
                    page = await context.new_page()
                    await page.goto(node.http_url + "/")
                    await page.evaluate(PREPARE_JS)
                    pc, decoded = await _viewer(node, room, viewer_token)
                    started = time.perf_counter()
                    await page.evaluate(PUBLISH_JS, [f"{node.http_url}/whip/{room}", pub_token])
                    await asyncio.wait_for(decoded, 20)
                    results.append((time.perf_counter() - started) * 1000)
                    await pc.close()
                    await page.close()
            finally:
                await context.close()
    return results


def summary(values: list[float]) -> dict[str, float]:
    return {
        "runs": len(values),
        "p50_ms": statistics.median(values),
        "min_ms": min(values),
        "max_ms": max(values),
    }
