"""A synthetic video track at a chosen size that counts the frames it produced."""

from __future__ import annotations

from aiortc.mediastreams import VideoStreamTrack
from av import VideoFrame


class FlatColorTrack(VideoStreamTrack):
    """aiortc's synthetic video track at a chosen resolution."""

    def __init__(self, width: int = 320, height: int = 240) -> None:
        super().__init__()
        self.width = width
        self.height = height
        self.sent = 0  # frames produced, to compare with frames decoded downstream

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        self.sent += 1
        frame = VideoFrame(width=self.width, height=self.height)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.pts = pts
        frame.time_base = time_base
        return frame
