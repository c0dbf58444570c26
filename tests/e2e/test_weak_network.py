"""Loss on either leg, recovered by NACKs and keyframes (issue 5 tests 1-3)."""

from __future__ import annotations

import asyncio
import time

import pytest

from bench.decoded_call import measure_decoding, start_call
from bench.loopback_node import RunningNode
from relay.netem import Impairment, UdpImpairmentProxy

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]


async def _proxy(relay_node: RunningNode, up: Impairment, down: Impairment) -> UdpImpairmentProxy:
    proxy = UdpImpairmentProxy(("127.0.0.1", relay_node.worker.port), up, down, seed=11)
    await proxy.start()
    return proxy


@pytest.mark.parametrize(
    "leg, counter",
    [("subscriber", "retransmitted_packets"), ("publisher", "nack_sent")],
    ids=["subscriber-leg-repaired-from-cache", "publisher-leg-repaired-by-upstream-nacks"],
)
async def test_five_percent_loss_is_repaired(
    relay_node: RunningNode, leg: str, counter: str
) -> None:
    lossy = Impairment(loss=0.05)
    on_publisher = leg == "publisher"
    proxy = await _proxy(
        relay_node, lossy if on_publisher else Impairment(), Impairment() if on_publisher else lossy
    )
    via = ("127.0.0.1", proxy.port)
    try:
        source, decoded, task = await start_call(
            relay_node, f"lossy-{leg}", via if on_publisher else None, None if on_publisher else via
        )
        ratio, gap = await measure_decoding(source, decoded, 8.0)
        task.cancel()
        assert (proxy.up if on_publisher else proxy.down).dropped > 0
        assert getattr(relay_node.worker.stats, counter) > 0
        if not on_publisher:  # the project's client answers the relay's RTX offer with RTX
            room = relay_node.worker.membership.get(f"lossy-{leg}")
            downs = [d for p in room.participants.values() for d in p.subscriptions.values()]
            assert [d.rtx_payload_type for d in downs if d.up.kind == "video"] == [97]
        assert ratio >= 0.95, f"decoded {ratio:.1%} of the frames sent"
        assert gap < 1.0, f"froze for {gap:.2f} s"
    finally:
        proxy.close()


async def test_decoding_resumes_quickly_after_heavy_loss(relay_node: RunningNode) -> None:
    proxy = await _proxy(relay_node, Impairment(), Impairment())
    try:
        _source, decoded, task = await start_call(
            relay_node, "storm", None, ("127.0.0.1", proxy.port)
        )
        proxy.set(down=Impairment(loss=0.20))
        await asyncio.sleep(3.0)  # the storm, then a window to watch: not a condition
        proxy.set(down=Impairment())
        calm = time.monotonic()
        await asyncio.sleep(3.0)
        task.cancel()
        after = [t for t in decoded.times if t >= calm]
        # issue 14: within 1 s of the loss ending (a lost retransmission is sent again
        # a round trip later; it used to wait for the receiver's next new gap)
        assert after and after[0] - calm < 1.0, "no frame decoded within 1 s after the loss"
        steady = decoded.count_between(calm + 2.0, calm + 3.0)
        assert steady >= 20, f"only {steady} frames/s once recovered"  # resumed, not a blip
    finally:
        proxy.close()
