"""A call whose frames are counted as decoded: the yardstick for video under loss.

One aiortc publisher (a ``FlatColorTrack``) and one decoding aiortc subscriber on a loopback
node, either leg's media optionally sent through a proxy (``media_via``); then the share of
the frames sent that were decoded over a window, and the longest freeze in it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field

from .flat_color_track import FlatColorTrack
from .loopback_node import RunningNode, token


@dataclass
class Decoded:
    times: list[float] = field(default_factory=list)
    pts: list[int] = field(default_factory=list)  # each frame's RTP timestamp as received

    def frames_in_media_span(self, start: float, ticks: int) -> int | None:
        """Frames decoded of the ``ticks`` of media (RTP clock) that begin with the first
        frame shown at or after ``start``; None until a frame past that span was shown.

        Counted in media time, not by arrival: a receiver that is behind (aiortc releases
        one frame per packet that arrives, so frames held behind a repaired hole drain
        slowly) shows late what it did not lose."""
        first = next((i for i, t in enumerate(self.times) if t >= start), None)
        if first is None:
            return None
        origin = self.pts[first]
        offsets = [(pts - origin) & 0xFFFFFFFF for pts in self.pts[first:]]
        if not any(ticks <= offset < 0x80000000 for offset in offsets):
            return None
        return len({offset for offset in offsets if offset < ticks})

    def count_between(self, start: float, end: float) -> int:
        return sum(1 for t in self.times if start <= t < end)

    def longest_gap(self, start: float, end: float) -> float:
        inside = [start] + [t for t in self.times if start <= t < end] + [end]
        return max(b - a for a, b in itertools.pairwise(inside))


async def decode_forever(track: object, decoded: Decoded) -> None:
    while True:
        frame = await track.recv()  # type: ignore[attr-defined]
        decoded.times.append(time.monotonic())
        decoded.pts.append(frame.pts or 0)


async def start_call(
    relay_node: RunningNode,
    room: str,
    pub_via: tuple[str, int] | None,
    sub_via: tuple[str, int] | None,
) -> tuple[FlatColorTrack, Decoded, asyncio.Task[None]]:
    """Publish, subscribe and decode until cancelled; returns once frames are decoded."""
    publisher = relay_node.client(token(room, "pub"), media_via=pub_via)
    await publisher.connect()
    source = FlatColorTrack(320, 240)
    await publisher.publish(source)
    viewer = relay_node.client(token(room, "sub", publish=False), media_via=sub_via)
    await viewer.connect()
    _, track = await viewer.next_track(15)
    decoded = Decoded()
    task = asyncio.create_task(decode_forever(track, decoded))
    await asyncio.sleep(2.0)  # settle: connected and decoding
    if not decoded.times:
        task.cancel()
        raise RuntimeError("nothing decoded before impairment")
    return source, decoded, task


async def measure_decoding(
    source: FlatColorTrack, decoded: Decoded, seconds: float
) -> tuple[float, float]:
    """Frames decoded / frames sent over ``seconds``, and the longest freeze (s) in them."""
    sent_before, started = source.sent, time.monotonic()
    await asyncio.sleep(seconds)
    ended = time.monotonic()
    await asyncio.sleep(0.3)  # frames in flight at the end still count
    ratio = decoded.count_between(started, ended + 0.3) / max(1, source.sent - sent_before)
    return ratio, decoded.longest_gap(started, ended)
