"""Keyframe requests toward a publisher stay few however many subscribers want one.

50 subscribers asking for a keyframe at once make one upstream request per interval
(issue 5 test 4): the publisher is a real aiortc peer; the 50 subscriber legs are the
relay's own objects fed real PLI packets (SRTCP stripped) through their RTCP handler.
Subscribers joining in a burst (real aiortc peers) cost the publisher one request in all
(issue 15): those that start while it is answered share its keyframe, later ones are
started from the cache.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from bench.flat_color_track import FlatColorTrack
from bench.loopback_node import RunningNode, node_settings, running_node
from relay import rtcp
from relay.rate_limiter import TokenBucket
from relay.room import Participant, Permissions
from relay.rtp_header import is_keyframe_start, payload_offset
from relay.subscriber_leg import SubscriberLeg
from relay.track import DownTrack, UpTrack

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


async def _join_and_decode(node: RunningNode, room: str, names: list[str]) -> None:
    viewers = await asyncio.gather(*(node.join(room, name, publish=False) for name in names))
    for viewer in viewers:
        _, track = await viewer.next_track(10)
        frame = await asyncio.wait_for(track.recv(), 10)
        assert (frame.width, frame.height) == (160, 120)


def _replayable(up: UpTrack, max_age: float) -> bool:
    """Whether the track's cache holds a keyframe start younger than ``max_age``."""
    assert up.cache is not None

    def starts(rtp: bytes) -> bool:
        offset = payload_offset(rtp)
        return offset >= 0 and is_keyframe_start(up.codec.mime, rtp[offset:])

    since = time.perf_counter() - max_age
    return bool(up.cache.run_from(up.stats.max_seq, since, starts))


async def test_a_burst_of_joiners_costs_the_publisher_one_keyframe_request() -> None:
    # The replay age spans both waves here (the cache keeps 1.5 s): on a busy machine the
    # handshakes of a wave can spread over more than the default 0.5 s.
    async with running_node(node_settings(rtc={"keyframe_replay_age": 1.5})) as node:
        publisher = await node.join("burst", "host")
        await publisher.publish(FlatColorTrack(160, 120))
        worker = node.worker
        up = worker.rooms["burst"].tracks()[0]
        await eventually(lambda: up.packets > 10)
        # aiortc sends one keyframe at its start and then only when asked: once that one
        # is too old to replay, the first joiner has to ask for a new one.
        await eventually(lambda: not _replayable(up, 1.5), timeout=5)
        before = worker.stats.keyframe_requests_sent
        # The first wave starts while the keyframe its first member asked for is on its way;
        # the second, once that keyframe is there, from the cache.
        await _join_and_decode(node, "burst", [f"a{i}" for i in range(3)])
        await _join_and_decode(node, "burst", [f"b{i}" for i in range(3)])
        await eventually(lambda: not up.keyframes.pending)  # nothing deferred is left
        assert worker.stats.keyframe_requests_sent - before == 1
        assert worker.stats.keyframe_replays >= 3
