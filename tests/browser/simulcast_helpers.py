"""Chromium publishing simulcast, and aiortc viewers that record the widths they decode."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from bench.loopback_node import RunningNode, token
from relay.track import UpTrack
from signaling.client import EurelayClient

from ..helpers import eventually

# Chromium turns its upper layers on as its bandwidth estimate grows: seconds on an idle
# machine, longer on a loaded one (a clean-clone CI run once needed more than 20 s).
RAMP_UP = 40
WIDTHS = {"q": 240, "h": 480, "f": 960}


@dataclass
class Frames:
    widths: list[tuple[float, int]] = field(default_factory=list)

    def since(self, start: float) -> list[int]:
        return [w for t, w in self.widths if t >= start]


async def decode(track: object, frames: Frames) -> None:
    while True:
        frame = await track.recv()  # type: ignore[attr-defined]
        frames.widths.append((time.monotonic(), frame.width))


async def viewer(
    relay_node: RunningNode,
    name: str,
    tasks: list[asyncio.Task[None]],
    via: tuple[str, int] | None = None,
) -> tuple[EurelayClient, str, Frames]:
    """An aiortc viewer (closed by the fixture) decoding the room's video into ``Frames``."""
    client = relay_node.client(token("sim", name, publish=False), media_via=via)
    await client.connect()
    frames = Frames()
    while True:  # the room's audio track may come first
        sid, track = await client.next_track(20)
        if track.kind == "video":
            break
    tasks.append(asyncio.create_task(decode(track, frames)))
    return client, sid, frames


def layer_of(relay_node: RunningNode, identity: str) -> str:
    subscriber = relay_node.worker.rooms["sim"].by_identity(identity)
    assert subscriber is not None
    downs = [d for d in subscriber.subscriptions.values() if d.up.kind == "video"]
    return downs[0].up.rid if downs else ""


def settled_on(frames: Frames, width: int) -> bool:
    """The last few decoded frames all have ``width`` (earlier layers have drained)."""
    last = [w for _, w in frames.widths[-5:]]
    return len(last) == 5 and set(last) == {width}


async def publish_simulcast(relay_node: RunningNode, browser: object) -> UpTrack:
    page = await browser.new_page()  # type: ignore[attr-defined]
    await page.goto(relay_node.http("/"))
    await page.evaluate(
        """async ([url, token]) => {
            const {whipPublish} = await import("/static/eurelay.js");
            const stream = await navigator.mediaDevices.getUserMedia(
                {video: {width: 960, height: 540, frameRate: 15}, audio: true});
            window.whip = await whipPublish(url, token, stream, {simulcast: true});
        }""",
        [relay_node.http("/whip/sim"), token("sim", "chromium", subscribe=False)],
    )
    await eventually(lambda: "sim" in relay_node.worker.rooms, 10)
    room = relay_node.worker.rooms["sim"]
    track = next(t for t in room.tracks() if t.kind == "video")
    assert [layer.rid for layer in track.layers] == ["q", "h", "f"]
    return track


@dataclass
class TwoViewers:
    """``top`` keeps the top layer; ``low`` asked for the lowest at ``lowered``."""

    top: Frames
    low: Frames
    low_client: EurelayClient
    low_sid: str
    lowered: float


async def top_and_lowered_viewer(node: RunningNode, tasks: list[asyncio.Task[None]]) -> TwoViewers:
    """Two viewers of the room's video on ``node`` (published there, or bridged from another
    node): both reach the top layer, then one lowers its ceiling and decodes the lowest."""
    _, _, top = await viewer(node, "top", tasks)
    low_client, sid, low = await viewer(node, "low", tasks)
    track = next(t for t in node.worker.rooms["sim"].tracks() if t.kind == "video")
    await eventually(lambda: all(layer.rate_bps > 0 for layer in track.layers), RAMP_UP)
    await eventually(lambda: layer_of(node, "top") == "f", 30)
    # frames of the layer it started on may still be in its decoder: wait them out
    await eventually(lambda: settled_on(top, WIDTHS["f"]), 15)
    await low_client.set_quality(sid, "low")
    lowered = time.monotonic()
    await eventually(lambda: layer_of(node, "low") == "q", 15)
    await eventually(lambda: low.since(lowered).count(WIDTHS["q"]) >= 15, 20)
    return TwoViewers(top, low, low_client, sid, lowered)
