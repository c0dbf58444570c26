"""Chromium against eurelay: WHIP, WHEP and the demo page (issue 3 tests 1-3, 6)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiortc.mediastreams import AudioStreamTrack

from bench.flat_color_track import FlatColorTrack
from bench.loopback_node import RunningNode, token

from ..interop.http_sessions import whep_view, whip_publish
from .demo_page import chat, join_demo, sees_video_of

pytestmark = pytest.mark.timeout(90)
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
RISEN = 600_000  # bit/s


async def test_chromium_whip_to_aiortc_whep(relay_node: RunningNode, browser: object) -> None:
    page = await browser.new_page()  # type: ignore[attr-defined]
    await page.goto(relay_node.http("/"))
    tok = token("cam", "chromium", subscribe=False)
    await page.evaluate(
        """async ([url, token]) => {
            const {whipPublish} = await import("/static/eurelay.js");
            const stream = await navigator.mediaDevices.getUserMedia({video: true, audio: true});
            window.whip = await whipPublish(url, token, stream);
        }""",
        [relay_node.http("/whip/cam"), tok],
    )
    pc, tracks, _ = await whep_view(relay_node, "/whep/cam", token("cam", "py", publish=False))
    try:
        # Chromium's fake camera is 640x480; with no bandwidth feedback yet it may scale down
        frames = [await asyncio.wait_for(tracks["video"].recv(), 20) for _ in range(10)]
        assert all(f.width * 3 == f.height * 4 and f.width >= 160 for f in frames), [
            (f.width, f.height) for f in frames
        ]
        await asyncio.wait_for(tracks["audio"].recv(), 10)
    finally:
        await pc.close()


async def test_aiortc_whip_to_chromium_whep(relay_node: RunningNode, browser: object) -> None:
    publisher, _ = await whip_publish(
        relay_node, "show", token("show", "py-host"), FlatColorTrack(320, 240), AudioStreamTrack()
    )
    page = await browser.new_page()  # type: ignore[attr-defined]
    try:
        await page.goto(relay_node.http("/?view=show"))
        stats_js = """async () => {
            const viewer = window.eurelayDemo.viewer;
            if (!viewer) return null;
            const out = {frames: 0, audio: 0};
            (await viewer.pc.getStats()).forEach((s) => {
                if (s.type !== "inbound-rtp") return;
                if (s.kind === "video") out.frames = s.framesDecoded || 0;
                if (s.kind === "audio") out.audio = s.packetsReceived || 0;
            });
            return out;
        }"""
        first = None
        for _ in range(100):
            first = await page.evaluate(stats_js)
            if first and first["frames"] > 0 and first["audio"] > 0:
                break
            await asyncio.sleep(0.2)
        assert first and first["frames"] > 0 and first["audio"] > 0, first
        await asyncio.sleep(1.0)
        later = await page.evaluate(stats_js)
        assert later["frames"] > first["frames"], (first, later)
    finally:
        await publisher.close()


async def test_two_browsers_call_and_chat_through_the_demo_page(
    relay_node: RunningNode, browser: object
) -> None:
    ann = await join_demo(browser, relay_node, "ann")
    bob = await join_demo(browser, relay_node, "bob")
    await sees_video_of(ann, 1)
    await sees_video_of(bob, 1)

    await chat(ann, bob, "ann", "hello from ann")
    await chat(bob, ann, "bob", "hi ann, bob here")
    room = relay_node.worker.rooms["duo"]
    assert sorted(p.identity for p in room.participants.values()) == ["ann", "bob"]
    assert len(room.tracks()) == 4

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "demo-call.png"
    await ann.screenshot(path=str(shot), full_page=True)  # type: ignore[attr-defined]
    assert shot.stat().st_size > 10_000


async def test_chromium_publisher_gets_congestion_feedback(
    relay_node: RunningNode, browser: object
) -> None:
    """With transport-wide feedback Chromium's estimate rises instead of decaying."""
    page = await browser.new_page()  # type: ignore[attr-defined]
    await page.goto(relay_node.http("/"))
    await page.evaluate(
        """async ([url, token]) => {
            const {whipPublish} = await import("/static/eurelay.js");
            const stream = await navigator.mediaDevices.getUserMedia({video: true});
            window.whip = await whipPublish(url, token, stream);
        }""",
        [relay_node.http("/whip/bwe"), token("bwe", "chromium", subscribe=False)],
    )
    estimate_js = """async () => {
        let out = 0;
        (await window.whip.pc.getStats()).forEach((s) => {
            if (s.type === "candidate-pair" && s.state === "succeeded") {
                out = s.availableOutgoingBitrate || 0;
            }
        });
        return out;
    }"""
    estimate = 0
    # Twice Chromium's start (300 kbit/s): risen, where without feedback it decays to well
    # under 100 kbit/s. Past 1 Mbit/s in seconds on an idle machine, but a loaded one makes
    # its delay-based estimator hold (a clean-clone run stopped at 829 kbit/s in 30 s).
    for _ in range(150):
        estimate = await page.evaluate(estimate_js)
        if estimate > RISEN:
            break
        await asyncio.sleep(0.2)
    assert estimate > RISEN, f"Chromium's send estimate stayed at {estimate} bit/s"
    assert relay_node.worker.stats.twcc_feedback_sent > 0
