"""Independent aiortc WHEP viewers on a lossy, 100 ms network keep decoding (issue 14).

aiortc asks for a missing packet once, when its gap appears; a retransmission lost in turn
used to leave a hole until the next new gap, 0.6-1.8 s of frozen picture. Twenty viewers,
each behind its own impairment proxy with its own random losses, watch one WHIP publisher
over the same window: twenty runs at once, measured against a direct viewer of the same
stream (which also sees any stall of this machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

import pytest
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack

from bench.decoded_call import Decoded, decode_forever
from bench.flat_color_track import FlatColorTrack
from bench.loopback_node import RunningNode, token
from relay.netem import Impairment, UdpImpairmentProxy
from tests.helpers import eventually

from .http_sessions import whep_view, whip_publish

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

VIEWERS = int(os.environ.get("EURELAY_LOSSY_VIEWERS", "20"))
WINDOW = 10.0  # seconds of 5% loss
HALF_RTT = Impairment(delay_ms=50.0)
# The 300 ms holds in bench.weak_networks (frames matched by number: 20 of 20 runs).
# Here gaps are timed as 21 peers decode in one process, and the worst of twenty seeded loss
# patterns (two packets in a row, and a resend, lost) lands at 0.30-0.34 s; the freezes this
# test is for lasted 0.6-2.2 s.
FREEZE = 0.35


async def _decoding(
    relay_node: RunningNode, room: str, identity: str, via: tuple[str, int] | None
) -> tuple[RTCPeerConnection, Decoded, asyncio.Task[None]]:
    tok = token(room, identity, publish=False)
    pc, tracks, _ = await whep_view(relay_node, f"/whep/{room}", tok, media_via=via)
    await eventually(lambda: "video" in tracks, timeout=10)
    video: MediaStreamTrack = tracks["video"]
    decoded = Decoded()
    return pc, decoded, asyncio.create_task(decode_forever(video, decoded))


async def test_independent_viewers_do_not_freeze_at_five_percent_loss(
    relay_node: RunningNode,
) -> None:
    room = "lossy"
    source = FlatColorTrack(320, 240)
    publisher, _ = await whip_publish(relay_node, room, token(room, "host"), source)
    proxies: list[UdpImpairmentProxy] = []
    peers: list[tuple[RTCPeerConnection, Decoded, asyncio.Task[None]]] = []
    try:
        for seed in range(VIEWERS):
            proxy = UdpImpairmentProxy(
                ("127.0.0.1", relay_node.worker.port), HALF_RTT, HALF_RTT, seed=seed
            )
            await proxy.start()
            proxies.append(proxy)
        direct = await _decoding(relay_node, room, "direct", None)
        peers.append(direct)
        for i, proxy in enumerate(proxies):
            peers.append(await _decoding(relay_node, room, f"v{i}", ("127.0.0.1", proxy.port)))
        await eventually(lambda: all(d.times for _, d, _ in peers), timeout=20)
        # aiortc offers RTX: resends reach it on a stream of their own, which it unwraps
        assert all("a=ssrc-group:FID" in pc.remoteDescription.sdp for pc, _, _ in peers)
        for proxy in proxies:
            proxy.set(down=Impairment(loss=0.05, delay_ms=50.0))
        start = time.monotonic()
        await asyncio.sleep(WINDOW)  # the measurement window, not a wait for a condition
        end = time.monotonic()
        for proxy in proxies:
            proxy.set(down=HALF_RTT)
        span = int(WINDOW * 90000)  # the video clock
        with contextlib.suppress(AssertionError):  # one still frozen is reported below
            await eventually(
                lambda: all(d.frames_in_media_span(start, span) is not None for _, d, _ in peers),
                timeout=10,
            )
        counts = [d.frames_in_media_span(start, span) or 0 for _, d, _ in peers]
        shown = counts[0]
        stall = direct[1].longest_gap(start, end)  # this machine's own hiccups
        results = [
            (count / shown, d.longest_gap(start, end), p.down.dropped)
            for count, (_, d, _), p in zip(counts[1:], peers[1:], proxies, strict=True)
        ]
        assert shown > 0.8 * 30 * WINDOW, f"the direct viewer decoded only {shown} frames"
        assert all(dropped > 0 for _, _, dropped in results)  # every one lost packets
        bad = [
            f"viewer {i}: {ratio:.1%} of the frames, froze {freeze:.2f} s"
            for i, (ratio, freeze, _) in enumerate(results)
            if ratio < 0.97 or freeze > max(FREEZE, stall + 0.2)
        ]
        assert not bad, f"direct viewer's longest gap {stall:.2f} s; " + "; ".join(bad)
        assert relay_node.worker.stats.resends_again > 0  # what repaired the lost resends
    finally:
        for pc, _, task in peers:
            task.cancel()
            await pc.close()
        await publisher.close()
        for proxy in proxies:
            proxy.close()
