"""Keyframe requests toward a publisher stay few however many subscribers want one.

50 subscribers asking for a keyframe at once make one upstream request per interval
(issue 5 test 4): the publisher is a real aiortc peer; the 50 subscriber legs are the
relay's own objects fed real PLI packets (SRTCP stripped) through their RTCP handler.
A keyframe that arrives while requests wait answers them (issue 15): they are not sent.
"""

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
    # The other 49 wait: answered by the keyframe the first asked for, if it comes within
    # the interval (issue 15), else by one deferred request at the end of the interval.
    await eventually(lambda: not up.keyframes.pending, timeout=5)
    elapsed = time.monotonic() - started
    sent = worker.stats.keyframe_requests_sent - before
    allowed = 1 + int(elapsed / up.keyframes.interval)
    assert sent <= allowed, (sent, allowed)
    assert sent == (1 if up.keyframes.answered else 2), (sent, up.keyframes.answered)
    assert up.keyframes.requested >= 50
