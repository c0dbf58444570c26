"""The demo page's flows in Chromium, as a newcomer tries them (issue 17): the landing page,
a call that goes live without losing the call, leave and join again, a tile that stalls, and
a page whose session the server ends."""

from __future__ import annotations

import aiohttp
import pytest

from bench.loopback_node import RunningNode, token

from ..helpers import eventually_async
from .demo_page import chat, click_join, join_demo, keeps_playing, sees_video_of

pytestmark = pytest.mark.timeout(120)

PLAYS_JS = """async () => {
    const viewer = window.eurelayDemo.viewer;
    if (!viewer) return false;
    let frames = 0;
    (await viewer.pc.getStats()).forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "video") frames = s.framesDecoded || 0;
    });
    return frames > 10;
}"""


async def test_landing_page_says_what_to_do_and_loads_cleanly(
    relay_node: RunningNode, browser: object
) -> None:
    page = await browser.new_page()  # type: ignore[attr-defined]
    failed: list[str] = []
    page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
    await page.goto(relay_node.http("/"))
    intro = await page.inner_text("#intro")
    assert "second tab" in intro and "Go live" in intro and "Join" in intro
    assert failed == []  # no favicon 404 or other missing resource


async def test_going_live_keeps_the_call(relay_node: RunningNode, browser: object) -> None:
    """The headline live-commerce flow: host and guest in a call, the host goes live, a
    viewer plays the host, and the host still sees and chats with the guest."""
    ann = await join_demo(browser, relay_node, "ann")
    bob = await join_demo(browser, relay_node, "bob")
    await sees_video_of(ann, 1)
    room = relay_node.worker.rooms["duo"]
    ann_sid = next(p.sid for p in room.participants.values() if p.identity == "ann")

    await ann.click("#golive")  # type: ignore[attr-defined]
    assert await ann.is_disabled("#golive")  # type: ignore[attr-defined]
    link = await ann.get_attribute("#viewer-link", "href")  # type: ignore[attr-defined]
    assert link is not None and "view=duo" in link
    viewer = await browser.new_page()  # type: ignore[attr-defined]
    await viewer.goto(relay_node.http(link))
    await eventually_async(lambda: viewer.evaluate(PLAYS_JS), timeout=20)

    # the host's session is the one it joined with, and it still sees and hears the guest
    assert ann_sid in room.participants
    await keeps_playing(ann, "bob")
    await chat(ann, bob, "ann", "we are live")
    await chat(bob, ann, "bob", "great")
    assert "in duo as ann" in await ann.inner_text("#status")  # type: ignore[attr-defined]
    # the viewer watches the host, not the guest
    whep = [p for p in room.participants.values() if p.kind.value == "whep"]
    assert len(whep) == 1
    assert {d.up.publisher_sid for d in whep[0].subscriptions.values()} == {ann_sid}


async def test_leave_then_join_again_shows_video(relay_node: RunningNode, browser: object) -> None:
    ann = await join_demo(browser, relay_node, "ann")
    bob = await join_demo(browser, relay_node, "bob")
    await sees_video_of(ann, 1)

    await ann.click("#leave")  # type: ignore[attr-defined]
    status = await ann.inner_text("#status")  # type: ignore[attr-defined]
    assert status.startswith("you left")
    # nothing of the call keeps running: camera and mic off, no stale tiles, Join usable
    assert await ann.evaluate("document.getElementById('local').srcObject === null")  # type: ignore[attr-defined]
    assert await ann.evaluate("document.querySelectorAll('video.remote').length") == 0  # type: ignore[attr-defined]
    assert not await ann.is_disabled("#join")  # type: ignore[attr-defined]
    await bob.wait_for_function(  # type: ignore[attr-defined]
        "document.querySelectorAll('video.remote').length === 0"
    )

    await click_join(ann)
    assert await ann.is_disabled("#join")  # type: ignore[attr-defined]
    await sees_video_of(ann, 1)
    await keeps_playing(ann, "bob")
    await sees_video_of(bob, 1)
    await keeps_playing(bob, "ann")


async def test_a_stalled_tile_says_so(relay_node: RunningNode, browser: object) -> None:
    """A participant whose video stops (its network broke; here its camera track ends) is
    shown as reconnecting on the others' pages, and the mark goes when video comes back."""
    ann = await join_demo(browser, relay_node, "ann")
    bob = await join_demo(browser, relay_node, "bob")
    await sees_video_of(ann, 1)
    stalled = "document.querySelectorAll('figure.stalled').length"
    assert await ann.evaluate(stalled) == 0  # type: ignore[attr-defined]
    await bob.evaluate(  # type: ignore[attr-defined]
        "document.getElementById('local').srcObject.getVideoTracks()[0].stop()"
    )
    await ann.wait_for_function(f"{stalled} === 1", timeout=10000)  # type: ignore[attr-defined]
    caption = await ann.inner_text("figure.stalled figcaption")  # type: ignore[attr-defined]
    assert caption == "bob"  # the "reconnecting" mark is CSS, on the figure


async def test_a_session_the_server_ends_cleans_up_the_page(
    relay_node: RunningNode, browser: object
) -> None:
    ann = await join_demo(browser, relay_node, "ann")
    await join_demo(browser, relay_node, "bob")
    await sees_video_of(ann, 1)
    await ann.evaluate("window.oldClient = window.eurelayDemo.client")  # type: ignore[attr-defined]
    admin = {"Authorization": f"Bearer {token('duo', 'ops', admin=True)}"}
    async with (
        aiohttp.ClientSession() as http,
        http.delete(relay_node.http("/v1/rooms/duo/participants/ann"), headers=admin) as resp,
    ):
        assert resp.status == 204
    await ann.wait_for_function(  # type: ignore[attr-defined]
        "document.getElementById('status').textContent.startsWith('call ended')"
    )
    assert "operator removed you" in await ann.inner_text("#status")  # type: ignore[attr-defined]
    # its peer connections are closed (the relay would otherwise keep hearing them), the
    # camera is off and Join works again
    states = await ann.evaluate(  # type: ignore[attr-defined]
        "[window.oldClient._sub.connectionState, window.oldClient._pub.connectionState]"
    )
    assert states == ["closed", "closed"]
    assert await ann.evaluate("document.getElementById('local').srcObject === null")  # type: ignore[attr-defined]
    assert not await ann.is_disabled("#join")  # type: ignore[attr-defined]


async def test_closing_a_tab_takes_its_tile_away(relay_node: RunningNode, browser: object) -> None:
    ann = await join_demo(browser, relay_node, "ann")
    bob = await join_demo(browser, relay_node, "bob")
    await sees_video_of(ann, 1)
    await bob.close()  # type: ignore[attr-defined]
    await ann.wait_for_function(  # type: ignore[attr-defined]
        "document.querySelectorAll('video.remote').length === 0"
    )
    room = relay_node.worker.rooms["duo"]
    assert [p.identity for p in room.participants.values()] == ["ann"]
