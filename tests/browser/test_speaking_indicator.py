"""The demo page's speaking indicator in Chromium: the relay reads the audio level Chromium
writes into each packet, and the other page lights up the speaker's tile. Chromium's fake
microphone beeps (loud, about 100 ms in every 500 ms), which counts as speaking."""

from __future__ import annotations

import pytest

from bench.loopback_node import RunningNode

from .demo_page import join_demo, sees_video_of

pytestmark = pytest.mark.timeout(120)


def lit(identity: str) -> str:
    return f"""() => {{
        const video = document.querySelector("video.remote[data-identity='{identity}']");
        return video !== null && video.parentElement.classList.contains("speaking");
    }}"""


async def test_the_other_page_sees_who_is_speaking(
    relay_node: RunningNode, browser: object
) -> None:
    ann = await join_demo(browser, relay_node, "ann")
    bob = await join_demo(browser, relay_node, "bob")
    await sees_video_of(ann, 1)
    await sees_video_of(bob, 1)
    await bob.click("#mic")  # type: ignore[attr-defined]  # bob listens
    assert await bob.inner_text("#mic") == "Unmute mic"  # type: ignore[attr-defined]

    await bob.wait_for_function(lit("ann"), timeout=10000)  # type: ignore[attr-defined]
    await ann.wait_for_function(  # type: ignore[attr-defined]
        "document.getElementById('local-tile').classList.contains('speaking')", timeout=10000
    )
    await ann.wait_for_function(f"!({lit('bob')})()", timeout=10000)  # type: ignore[attr-defined]
    speakers = await bob.evaluate(  # type: ignore[attr-defined]
        "window.eurelayDemo.client.activeSpeakers.map((s) => s.identity)"
    )
    assert speakers == ["ann"]

    await ann.click("#mic")  # type: ignore[attr-defined]  # ann stops: the tile goes dark
    await bob.wait_for_function(f"!({lit('ann')})()", timeout=10000)  # type: ignore[attr-defined]
    await bob.click("#mic")  # type: ignore[attr-defined]  # bob speaks
    await ann.wait_for_function(lit("bob"), timeout=10000)  # type: ignore[attr-defined]
