"""The browser client reconnects by itself (issue 13, Failures), seen through the demo page:
its socket dropped by the server, or its node SIGKILLed in a three-node cascade, the page
joins again through the node it was loaded from, publishes its camera again and shows the
other participant's video again in the same tile."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from bench.flat_color_track import FlatColorTrack
from bench.loopback_node import RunningNode, token
from signaling import protocol as p

from ..e2e.test_cascade import NEAR, three_regions, ws_client
from ..e2e.test_reconnect import events_until
from ..helpers import eventually_async, require_binary

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

# Every remote tile: whose it is, which MediaStream it shows (numbered as first seen), whether
# that has a live video track, and the frames the element has shown.
TILES_JS = """() => [...document.querySelectorAll("video.remote")].map((v) => ({
    sid: v.dataset.sid,
    stream: v.srcObject ? (v.srcObject.serial ??= (window.streams = (window.streams || 0) + 1)) : 0,
    width: v.videoWidth,
    frames: v.getVideoPlaybackQuality().totalVideoFrames,
    live: !!v.srcObject && v.srcObject.getVideoTracks().some((t) => t.readyState === "live"),
}))"""

# The demo's client events, kept by the page from the moment this runs.
LOG_JS = """() => {
    window.reconnectLog = [];
    const client = window.eurelayDemo.client;
    for (const type of ["resumed", "reconnecting", "reconnected", "closed"]) {
        client.addEventListener(type, (e) => window.reconnectLog.push(
            {type, reason: e.detail.reason || null,
             node: e.detail.joined ? e.detail.joined.node_id : null}));
    }
}"""


async def join_demo(page: Any, url: str, tok: str) -> None:
    """Join through the demo page with a pasted token (the nodes are not in dev mode)."""
    await page.goto(url)
    # The field shows once /dev/token has refused; it is read then, so it can be set now.
    await page.evaluate("(t) => { document.getElementById('token').value = t; }", tok)
    await page.click("#join")
    await page.wait_for_function(
        "document.getElementById('status').textContent.startsWith('in ')", timeout=20000
    )
    await page.evaluate(LOG_JS)


async def playing(page: Any, sid: str, not_stream: int = 0, timeout: float = 30) -> int:
    """The tile of participant ``sid`` plays a live track (another stream than
    ``not_stream``), ten frames more and more; the stream's number."""
    tile: dict[str, Any] = {}

    async def shows(stream: int = 0, past: int = 0) -> bool:
        tiles = {t["sid"]: t for t in await page.evaluate(TILES_JS)}
        tile.clear()
        tile.update(tiles.get(sid, {}))
        if not tile or not tile["live"] or tile["width"] == 0:
            return False
        if stream and tile["stream"] != stream:
            raise AssertionError(f"the tile changed streams while playing: {tile}")
        return bool(tile["stream"] != not_stream and tile["frames"] > past)

    await eventually_async(shows, timeout, 0.2)
    stream, frames = tile["stream"], tile["frames"]
    await eventually_async(lambda: shows(stream, frames + 10), timeout, 0.2)
    return int(stream)


async def reconnect_log(page: Any, timeout: float = 30) -> list[dict[str, Any]]:
    """The page's reconnect events once it has resumed, reconnected (or given up)."""

    async def done() -> bool:
        log = await page.evaluate("window.reconnectLog")
        return any(e["type"] in ("resumed", "reconnected", "closed") for e in log)

    await eventually_async(done, timeout, 0.1)
    log: list[dict[str, Any]] = await page.evaluate("window.reconnectLog")
    return log


async def test_the_demo_page_resumes_or_rejoins_when_the_server_drops_its_socket(
    relay_node: RunningNode, browser: object
) -> None:
    host = await relay_node.join("duo", "host")
    await host.publish(FlatColorTrack(320, 240))
    page = await browser.new_page()  # type: ignore[attr-defined]
    try:
        await join_demo(page, relay_node.http("/?room=duo&name=ann"), token("duo", "ann"))
        before = await playing(page, host.sid)
        ann = relay_node.worker.rooms["duo"].by_identity("ann")
        assert ann is not None
        while not host.events.empty():
            host.events.get_nowait()

        # Dropped: the page resumes the same session; the host hears nothing of it.
        await relay_node.node.sessions[ann.sid].ws.close()  # no ``closed`` message first
        log = await reconnect_log(page)
        assert [e["type"] for e in log] == ["resumed"], log
        assert await page.text_content("#status") == "in duo as ann (resumed)"
        assert relay_node.worker.rooms["duo"].by_identity("ann") is ann
        assert await playing(page, host.sid) == before  # the same stream plays on
        assert relay_node.node.counters()["sessions_resumed"] == 1
        seen = [host.events.get_nowait() for _ in range(host.events.qsize())]
        assert not [e for e in seen if isinstance(e, p.ParticipantLeft | p.ParticipantJoined)]

        # Its resume refused (as past signaling.resume_timeout): it joins again.
        await page.evaluate("window.reconnectLog = []")
        await page.evaluate("window.eurelayDemo.client.resumeToken = 'stale'")
        await relay_node.node.sessions[ann.sid].ws.close()
        log = await reconnect_log(page)
        assert [e["type"] for e in log] == ["reconnecting", "reconnected"], log
        assert log[0]["reason"] == "connection_lost"
        status = await page.text_content("#status")
        assert status == "in duo as ann (reconnected)"
        # The host's tile (same participant) plays the new session's track.
        await playing(page, host.sid, not_stream=before)
        assert len(await page.evaluate(TILES_JS)) == 1
        # ann's camera is published again, and the host sees it as a new participant.
        again = relay_node.worker.rooms["duo"].by_identity("ann")
        assert again is not None and again.sid != ann.sid
        assert sorted(t.kind for t in relay_node.worker.rooms["duo"].tracks()) == [
            "audio",
            "video",
            "video",
        ]
    finally:
        await page.close()
        await host.close()


async def test_the_demo_page_resumes_on_another_node_when_its_node_dies(
    tmp_path: Path, browser: object
) -> None:
    if require_binary("redis-server") is None:
        pytest.skip("redis-server is not installed (make test installs it)")
    async with three_regions(tmp_path) as nodes:
        entry = nodes["central-1"]  # the page comes from here, and stays up
        host = await ws_client(entry, "live", "host", "eu-central")
        page = await browser.new_page()  # type: ignore[attr-defined]
        try:
            await host.publish(FlatColorTrack(320, 240))
            url = f"{entry.http_url}/?room=live&name=ann&rtt={NEAR['eu-west'].replace(',', '%2C')}"
            await join_demo(page, url, token("live", "ann"))
            placed = await page.evaluate("window.eurelayDemo.client.joined.node_id")
            assert placed == "west-1"
            before = await playing(page, host.sid)
            joined = await host.wait_for(
                p.ParticipantJoined, lambda e: e.participant.identity == "ann", 10
            )

            os.kill(nodes["west-1"].pid, signal.SIGKILL)
            log = await reconnect_log(page)
            assert [e["type"] for e in log] == ["reconnecting", "reconnected"], log
            assert log[1]["node"] in ("central-1", "north-1")
            await playing(page, host.sid, not_stream=before)  # the host's video, same tile

            # The host saw ann's session on the dead node leave, then ann come back with her
            # camera, and decodes it.
            old = joined.participant.sid
            # ann's new session may join (and publish) before the dead node is declared
            # gone: every event read is kept, so a track_published read early counts.
            seen: list[Any] = []
            left, back = await events_until(
                host,
                lambda e: isinstance(e, p.ParticipantLeft) and e.identity == "ann",
                lambda e: (
                    isinstance(e, p.ParticipantJoined)
                    and e.participant.identity == "ann"
                    and e.participant.sid != old
                ),
                seen=seen,
            )
            assert left.sid == old and left.reason == "node_lost"
            new_sid = back.participant.sid

            def new_video(e: Any) -> bool:
                return (
                    isinstance(e, p.TrackPublished)
                    and e.participant_sid == new_sid
                    and e.track.kind == "video"
                )

            videos = {t.sid for t in back.participant.tracks if t.kind == "video"}
            videos |= {e.track.sid for e in seen if new_video(e)}
            if not videos:
                (published,) = await events_until(host, new_video)
                videos = {published.track.sid}
            while True:
                track_sid, track = await host.next_track(20)
                if track_sid in videos:
                    break
            await asyncio.wait_for(track.recv(), 20)
        finally:
            await page.close()
            await host.close()


async def test_the_demo_page_notices_a_silent_node_and_resumes_elsewhere(
    tmp_path: Path, browser: object
) -> None:
    """SIGSTOP: the page's socket stays open but nothing answers. The client pings a socket
    quiet for 10 s and gives it up when that ping goes unanswered for 15 s."""
    if require_binary("redis-server") is None:
        pytest.skip("redis-server is not installed (make test installs it)")
    async with three_regions(tmp_path) as nodes:
        entry = nodes["central-1"]
        host = await ws_client(entry, "hush", "host", "eu-central")
        page = await browser.new_page()  # type: ignore[attr-defined]
        try:
            await host.publish(FlatColorTrack(320, 240))
            url = f"{entry.http_url}/?room=hush&name=ann&rtt={NEAR['eu-west'].replace(',', '%2C')}"
            await join_demo(page, url, token("hush", "ann"))
            assert await page.evaluate("window.eurelayDemo.client.joined.node_id") == "west-1"
            before = await playing(page, host.sid)

            os.kill(nodes["west-1"].pid, signal.SIGSTOP)
            log = await reconnect_log(page, timeout=45)
            assert [e["type"] for e in log] == ["reconnecting", "reconnected"], log
            assert log[0]["reason"] == "connection_lost"
            assert log[1]["node"] in ("central-1", "north-1")
            await playing(page, host.sid, not_stream=before)
        finally:
            os.kill(nodes["west-1"].pid, signal.SIGKILL)
            await page.close()
            await host.close()
