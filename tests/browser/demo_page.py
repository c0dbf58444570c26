"""Driving the demo page (signaling/static/index.html) in Chromium, as a user would."""

from __future__ import annotations

from bench.loopback_node import RunningNode


async def join_demo(
    browser: object, relay_node: RunningNode, name: str, room: str = "duo"
) -> object:
    page = await browser.new_page()  # type: ignore[attr-defined]
    await page.goto(relay_node.http(f"/?room={room}&name={name}"))
    await click_join(page)
    return page


async def click_join(page: object) -> None:
    await page.click("#join")  # type: ignore[attr-defined]
    await page.wait_for_function(  # type: ignore[attr-defined]
        "document.getElementById('status').textContent.startsWith('in ')"
    )


async def sees_video_of(page: object, count: int) -> None:
    """``count`` remote tiles show moving video."""
    await page.wait_for_function(  # type: ignore[attr-defined]
        f"""() => [...document.querySelectorAll('video.remote')]
              .filter((v) => v.videoWidth > 0 && v.currentTime > 0).length >= {count}""",
        timeout=20000,
    )


async def keeps_playing(page: object, identity: str, seconds: float = 1.0) -> None:
    """The tile of ``identity`` advances by ``seconds`` of video from now."""
    selector = f"video.remote[data-identity='{identity}']"
    start = await page.eval_on_selector(selector, "v => v.currentTime")  # type: ignore[attr-defined]
    await page.wait_for_function(  # type: ignore[attr-defined]
        f"document.querySelector(`{selector}`).currentTime > {start + seconds}",
        timeout=15000,
    )


async def chat(sender: object, receiver: object, sender_name: str, text: str) -> None:
    await sender.fill("#chat-input", text)  # type: ignore[attr-defined]
    await sender.click("#chat-send")  # type: ignore[attr-defined]
    await receiver.wait_for_function(  # type: ignore[attr-defined]
        f"document.getElementById('chat-log').textContent.includes('{sender_name}: {text}')"
    )
