"""Viewers that join a Chromium publisher in its first second see it move at once (issue 21).

A Chromium publisher probes its link with padding-only packets between frames and ramps
its encoder in its first seconds; the relay drops that padding. An aiortc viewer, whose
jitter buffer waits for every sequence number, used to decode its first frame and then
nothing for about 2 s whenever a number went missing in that window. Each run here is a
fresh publisher (every publisher probes at its start) with a viewer joining as its first
packets arrive: from its first frame on, the viewer's frame count must advance in every
0.5 s window, and the relay must never have filled a hole (on loopback nothing is lost).
The same with a Chromium viewer; and when the relay does lose a packet of Chromium's for
good, the aiortc viewer stalls for the few hundred ms the relay takes to give up on it.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from bench.loopback_node import RunningNode, token
from relay.track import UpTrack

from ..helpers import eventually, eventually_async
from ..interop.http_sessions import whep_view

pytestmark = [pytest.mark.timeout(150), pytest.mark.slow]

RUNS = 10
WINDOWS = 4  # 0.5 s windows after the first frame: the 2 s the issue measures
WINDOW = 0.5


async def _publish(relay_node: RunningNode, browser: object, room: str) -> tuple[object, UpTrack]:
    """A Chromium WHIP publisher of its fake camera, and its video track once it flows."""
    page = await browser.new_page()  # type: ignore[attr-defined]
    await page.goto(relay_node.http("/"))
    await page.evaluate(
        """async ([url, token]) => {
            const {whipPublish} = await import("/static/eurelay.js");
            const stream = await navigator.mediaDevices.getUserMedia({video: true});
            window.whip = await whipPublish(url, token, stream);
        }""",
        [relay_node.http(f"/whip/{room}"), token(room, "chromium", subscribe=False)],
    )

    def video() -> UpTrack | None:
        current = relay_node.worker.rooms.get(room)
        tracks = [t for t in current.tracks() if t.kind == "video"] if current else []
        return tracks[0] if tracks and tracks[0].packets > 0 else None

    await eventually(lambda: video() is not None, 20, interval=0.01)
    track = video()
    assert track is not None
    return page, track


async def _frame_times(relay_node: RunningNode, room: str, seconds: float) -> list[float]:
    """An aiortc WHEP viewer of ``room``: when it decoded each frame, from its first one
    until ``seconds`` after it."""
    pc, tracks, _ = await whep_view(relay_node, f"/whep/{room}", token(room, "py", publish=False))
    try:
        await eventually(lambda: "video" in tracks, 10)
        await asyncio.wait_for(tracks["video"].recv(), 20)
        times = [time.monotonic()]
        while times[-1] < times[0] + seconds:
            await asyncio.wait_for(tracks["video"].recv(), 5)
            times.append(time.monotonic())
        return times
    finally:
        await pc.close()


def _windows(times: list[float]) -> list[int]:
    first = times[0]
    return [
        sum(1 for t in times if first + i * WINDOW <= t < first + (i + 1) * WINDOW)
        for i in range(WINDOWS)
    ]


async def test_aiortc_viewers_joining_while_chromium_probes_never_stall(
    relay_node: RunningNode, browser: object
) -> None:
    stats = relay_node.worker.stats
    results: list[tuple[list[int], int]] = []  # (frames per window, padding dropped meanwhile)
    for run in range(RUNS):
        room = f"probe{run}"
        page, _ = await _publish(relay_node, browser, room)
        padding_before = stats.dropped["padding"]
        try:
            times = await _frame_times(relay_node, room, WINDOWS * WINDOW)
        finally:
            await page.close()  # type: ignore[attr-defined]
        results.append((_windows(times), stats.dropped["padding"] - padding_before))
    print("frames per 0.5 s after the first, padding dropped meanwhile:", results)
    stalled = [r for r in results if 0 in r[0]]
    assert not stalled, f"a viewer stalled after its first frame: {results}"
    assert stats.holes_filled == 0, (stats.holes_filled, results)
    # the premise: viewers did join while Chromium was probing (padding was dropped)
    assert sum(padding for _, padding in results) > 0, results


async def test_a_packet_chromium_never_resends_stalls_an_aiortc_viewer_briefly(
    relay_node: RunningNode, browser: object
) -> None:
    """The relay loses one of Chromium's packets, and every retransmission of it, while a
    new viewer decodes its first frames: the viewer's NACK finds the packet still awaited
    from Chromium, and aiortc does not NACK that hole again. The relay fills it once it
    gives up on Chromium (a few hundred ms), not after aiortc's jitter buffer overflows
    (about 2 s, the stall of the issue)."""
    stats = relay_node.worker.stats
    page, track = await _publish(relay_node, browser, "lossy")
    chromium = relay_node.worker.rooms["lossy"].by_identity("chromium")
    assert chromium is not None and chromium.publisher_leg is not None
    leg = chromium.publisher_leg
    forward = leg.on_srtp
    lost: list[int] = []

    def lose_one(data: bytes, arrival: float) -> None:
        if 127 < data[0] < 192 and len(data) > 12 and not 64 <= data[1] & 0x7F <= 95:
            seq = int.from_bytes(data[2:4], "big")
            ssrc = int.from_bytes(data[8:12], "big")
            # media, not padding (its P bit), and the last packet of a frame
            started = any(d.packets_sent > 3 for d in track.down_tracks)
            last_of_frame = data[1] & 0x80 and not data[0] & 0x20
            if ssrc == track.ssrc and not lost and started and last_of_frame:
                lost.append(seq)
            if lost and seq == lost[0] and ssrc == track.ssrc:
                return  # lost, and so is each retransmission of it
        forward(data, arrival)

    leg.on_srtp = lose_one  # type: ignore[method-assign]
    try:
        times = await _frame_times(relay_node, "lossy", 3.0)
    finally:
        await page.close()  # type: ignore[attr-defined]
    assert lost, "no packet was lost: the test did not test anything"
    longest = max(b - a for a, b in itertools.pairwise(times))
    print(f"lost {lost}, longest gap between frames {longest:.2f} s, fillers {stats.holes_filled}")
    assert longest < 1.0, longest
    assert stats.holes_filled <= 2  # the lost packet (and at most a repeat of it)


async def test_a_chromium_viewer_joining_while_chromium_probes_never_stalls(
    relay_node: RunningNode, browser: object
) -> None:
    stats = relay_node.worker.stats
    publisher, _ = await _publish(relay_node, browser, "probe-c")
    viewer = await browser.new_page()  # type: ignore[attr-defined]
    try:
        await viewer.goto(relay_node.http("/"))
        await viewer.evaluate(
            """async ([url, token]) => {
                const {whepPlay} = await import("/static/eurelay.js");
                window.whep = await whepPlay(url, token);
            }""",
            [relay_node.http("/whep/probe-c"), token("probe-c", "viewer", publish=False)],
        )
        decoded_js = """async () => {
            let frames = 0;
            (await window.whep.pc.getStats()).forEach((s) => {
                if (s.type === "inbound-rtp" && s.kind === "video") frames = s.framesDecoded || 0;
            });
            return frames;
        }"""

        async def first_frame() -> bool:
            return bool(await viewer.evaluate(decoded_js))

        await eventually_async(first_frame, 20, interval=0.02)
        counts = [await viewer.evaluate(decoded_js)]
        for _ in range(WINDOWS):
            await asyncio.sleep(WINDOW)  # sampling at a fixed rate, not waiting for a state
            counts.append(await viewer.evaluate(decoded_js))
        assert all(b > a for a, b in itertools.pairwise(counts)), counts
        assert stats.holes_filled == 0
    finally:
        await viewer.close()
        await publisher.close()  # type: ignore[attr-defined]
