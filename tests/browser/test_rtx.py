"""Chromium as a lossy WHEP viewer gets its retransmissions over RTX (RFC 4588, issue 14)."""

from __future__ import annotations

import pytest

from bench.flat_color_track import FlatColorTrack
from bench.loopback_node import RunningNode, token
from relay.netem import Impairment, UdpImpairmentProxy

from ..helpers import eventually_async
from ..interop.http_sessions import whip_publish

pytestmark = pytest.mark.timeout(90)

# A WHEP viewer written here, not eurelay.js: the answer's candidates point at the proxy.
VIEW_JS = """async ([url, token, port]) => {
    const pc = new RTCPeerConnection({iceServers: []});
    pc.addTransceiver("video", {direction: "recvonly"});
    await pc.setLocalDescription(await pc.createOffer());
    const response = await fetch(url, {
        method: "POST",
        headers: {"Content-Type": "application/sdp", "Authorization": `Bearer ${token}`},
        body: pc.localDescription.sdp,
    });
    const answer = (await response.text()).replace(
        /^(a=candidate:\\S+ 1 udp \\d+ \\S+ )\\d+( typ host)/gm, `$1${port}$2`);
    await pc.setRemoteDescription({type: "answer", sdp: answer});
    window.viewer = pc;
    return answer;
}"""
STATS_JS = """async () => {
    let out = null;
    (await window.viewer.getStats()).forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "video") out = {
            frames: s.framesDecoded || 0,
            nacks: s.nackCount || 0,
            retransmitted: s.retransmittedPacketsReceived || 0,
        };
    });
    return out;
}"""


async def test_a_lossy_chromium_viewer_is_repaired_over_rtx(
    relay_node: RunningNode, browser: object
) -> None:
    publisher, _ = await whip_publish(
        relay_node, "rtx", token("rtx", "host"), FlatColorTrack(640, 480)
    )
    proxy = UdpImpairmentProxy(("127.0.0.1", relay_node.worker.port), seed=4)
    await proxy.start()
    try:
        page = await browser.new_page()  # type: ignore[attr-defined]
        await page.goto(relay_node.http("/"))
        url, tok = relay_node.http("/whep/rtx"), token("rtx", "chromium", publish=False)
        answer = await page.evaluate(VIEW_JS, [url, tok, proxy.port])
        assert "rtx/90000" in answer and "a=ssrc-group:FID" in answer

        async def stats() -> dict[str, int]:
            got: dict[str, int] | None = await page.evaluate(STATS_JS)
            return got or {"frames": 0, "nacks": 0, "retransmitted": 0}

        async def decoding() -> bool:
            return (await stats())["frames"] > 10

        await eventually_async(decoding, timeout=20)
        proxy.set(down=Impairment(loss=0.05))
        before = await stats()

        async def repaired() -> bool:
            now = await stats()
            return now["retransmitted"] > 5 and now["frames"] > before["frames"] + 60

        await eventually_async(repaired, timeout=30)
        assert proxy.down.dropped > 0
    finally:
        proxy.close()
        await publisher.close()
