"""50 subscribers asking for a keyframe at once make one upstream request per interval
(issue 5 test 4). The publisher is a real aiortc peer; the 50 subscriber legs are the
relay's own objects fed real PLI packets (SRTCP stripped) through their RTCP handler."""

from __future__ import annotations

import asyncio
import time

import pytest

from bench.flat_color_track import FlatColorTrack
from bench.loopback_node import RunningNode
from relay import rtcp
from relay.rate_limiter import TokenBucket
from relay.room import Participant, Permissions
from relay.subscriber_leg import SubscriberLeg
from relay.track import DownTrack

from ..helpers import eventually

pytestmark = pytest.mark.timeout(60)


class _PlainRtcp:
    """SRTCP already removed: the RTCP handler sees plain packets."""

    @staticmethod
    def unprotect_rtcp(data: bytes) -> bytes:
        return data


async def test_fifty_plis_make_one_upstream_request_per_interval(relay_node: RunningNode) -> None:
    publisher = await relay_node.join("kf", "host")
    await publisher.publish(FlatColorTrack(160, 120))
    worker = relay_node.worker
    up = worker.rooms["kf"].tracks()[0]
    leg_pub = worker.rooms["kf"].by_identity("host").publisher_leg  # type: ignore[union-attr]
    await eventually(lambda: leg_pub.tx_srtp is not None and up.packets > 10)

    legs = []
    for i in range(50):
        viewer = Participant(
            room="kf", identity=f"v{i}", permissions=Permissions(), data_limiter=TokenBucket(1, 1)
        )
        leg = SubscriberLeg(worker.transports.env, viewer, "server", time.perf_counter())
        leg.rx_srtp = _PlainRtcp()  # type: ignore[assignment]
        down = DownTrack(up=up, subscriber_sid=viewer.sid, mid="0", payload_type=96, sink=leg)
        leg.by_ssrc[down.ssrc] = down
        legs.append((leg, down))

    await asyncio.sleep(up.keyframes.interval)  # start from a quiet interval
    before = worker.stats.keyframe_requests_sent
    started = time.monotonic()
    for leg, down in legs:
        leg.on_srtp(rtcp.pli(leg.rtcp_ssrc, down.ssrc), 0.0)
    assert worker.stats.pli_received >= 50
    assert worker.stats.keyframe_requests_sent == before + 1  # one goes up at once
    await asyncio.sleep(up.keyframes.interval * 2.5)
    elapsed = time.monotonic() - started
    sent = worker.stats.keyframe_requests_sent - before
    allowed = 1 + int(elapsed / up.keyframes.interval)
    assert 2 <= sent <= allowed, (sent, allowed)  # the deferred one went out; no more
    assert up.keyframes.requested >= 50
