"""The demo page's stage in Chromium: someone joins in the audience, the host invites them
on stage (the admin API, with the room admin token dev mode gives whoever joins on stage),
they publish without rejoining, go back to the audience, and come up again."""

from __future__ import annotations

import pytest

from bench.loopback_node import RunningNode

from .demo_page import click_join, join_demo, sees_video_of

pytestmark = pytest.mark.timeout(120)

FAN_BUTTON = "#people li[data-identity='fan'] button.stage"
FAN_TILE = "video.remote[data-identity='fan']"


def status_says(text: str) -> str:
    return f"document.getElementById('status').textContent.includes('{text}')"


async def test_the_host_invites_the_audience_on_stage_and_back(
    relay_node: RunningNode, browser: object
) -> None:
    host = await join_demo(browser, relay_node, "host", room="live")
    fan = await browser.new_page()  # type: ignore[attr-defined]
    await fan.goto(relay_node.http("/?room=live&name=fan"))
    await fan.check("#audience")
    await click_join(fan)
    assert await fan.is_hidden("#local-tile")  # no camera in the audience
    assert await fan.locator("button.stage").count() == 0  # nor any say over seats
    await sees_video_of(fan, 1)  # it watches the host
    await fan.wait_for_selector("#people li[data-identity='host']")

    for _ in range(2):  # on stage, back, and on stage again on the same session
        await host.wait_for_selector(FAN_BUTTON)  # type: ignore[attr-defined]
        assert await host.inner_text(FAN_BUTTON) == "Invite on stage"  # type: ignore[attr-defined]
        await host.click(FAN_BUTTON)  # type: ignore[attr-defined]
        await fan.wait_for_function(status_says("(on stage)"), timeout=15000)
        assert await fan.is_visible("#local-tile")
        await host.wait_for_function(  # type: ignore[attr-defined]
            f"(() => {{ const v = document.querySelector(`{FAN_TILE}`);"
            " return v !== null && v.videoWidth > 0 && v.currentTime > 0; })()",
            timeout=20000,
        )
        await host.wait_for_function(  # type: ignore[attr-defined]
            f"document.querySelector(`{FAN_BUTTON}`)?.textContent === 'Back to audience'"
        )
        await host.click(FAN_BUTTON)  # type: ignore[attr-defined]
        await fan.wait_for_function(status_says("(audience)"), timeout=10000)
        assert await fan.is_hidden("#local-tile")
        await host.wait_for_function(  # type: ignore[attr-defined]
            f"document.querySelector(`{FAN_TILE}`) === null", timeout=10000
        )
    room = relay_node.worker.rooms["live"]
    joined = {p.identity for p in room.participants.values()}
    assert joined == {"host", "fan"}  # nobody rejoined: one session each throughout
