"""A publisher in its own process, so a test can freeze it (SIGSTOP) like a vanished peer."""

from __future__ import annotations

import asyncio
import sys

from aiortc.mediastreams import AudioStreamTrack

from bench.flat_color_track import FlatColorTrack
from signaling.client import EurelayClient


async def main(url: str, token: str) -> None:
    client = EurelayClient(url, token, host_addresses=["127.0.0.1"])
    joined = await client.connect()
    await client.publish(FlatColorTrack(160, 120), AudioStreamTrack())
    print(f"ready {joined.participant.sid}", flush=True)
    await asyncio.sleep(120)  # the test stops or kills this process long before


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
