"""Video under loss on the subscriber leg, with and without retransmission from the cache.

One aiortc publisher (320x240 VP8, 30 fps) and one decoding aiortc subscriber whose media
goes through the UDP impairment proxy; frames decoded / frames sent and the longest freeze
over a fixed window. Also the CPU cost of the packet cache per packet.
"""

from __future__ import annotations

import asyncio
import timeit
from typing import Any

from relay.netem import Impairment, UdpImpairmentProxy
from relay.packet_cache import PacketCache
from signaling.client import restrict_ice_host_addresses

from .decoded_call import measure_decoding, start_call
from .loopback_node import node_settings, running_node


async def one(loss: float, retransmit: bool, seconds: float) -> dict[str, Any]:
    async with running_node(node_settings(rtc={"nack_repair": retransmit})) as rn:
        proxy = UdpImpairmentProxy(("127.0.0.1", rn.worker.port), seed=3)
        await proxy.start()
        try:
            source, decoded, task = await start_call(rn, "loss", None, ("127.0.0.1", proxy.port))
            proxy.set(down=Impairment(loss=loss))  # once decoding has started
            ratio, freeze = await measure_decoding(source, decoded, seconds)
            task.cancel()
        finally:
            proxy.close()
    return {
        "loss_percent": loss * 100,
        "retransmit": retransmit,
        "decoded_ratio": round(ratio, 3),
        "longest_freeze_s": round(freeze, 2),
    }


def cache_cost_ns() -> dict[str, float]:
    cache = PacketCache()
    packet = bytes(1100)
    runs = 200_000
    put = timeit.timeit(lambda: cache.put(12345, packet, 1.0), number=runs) / runs * 1e9
    empty = timeit.timeit(lambda: None, number=runs) / runs * 1e9
    return {"put_ns": round(put - empty, 1), "call_overhead_ns": round(empty, 1)}


async def measure(seconds: float = 6.0) -> list[dict[str, Any]]:
    restrict_ice_host_addresses(["127.0.0.1"])
    rows = []
    for loss in (0.0, 0.02, 0.05, 0.10, 0.20):
        for retransmit in (True, False):
            row = await one(loss, retransmit, seconds)
            print(row, flush=True)
            rows.append(row)
    return rows


def render(rows: list[dict[str, Any]], cost: dict[str, float]) -> str:
    lines = [
        "| loss % | retransmission | frames decoded / sent | longest freeze (s) |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['loss_percent']:.0f} | {'on' if r['retransmit'] else 'off'} "
            f"| {r['decoded_ratio']:.3f} | {r['longest_freeze_s']:.2f} |"
        )
    lines.append("")
    lines.append(
        f"Packet cache: {cost['put_ns']:.0f} ns per stored packet (a list slot write "
        f"of the already-decrypted packet; call overhead {cost['call_overhead_ns']:.0f} ns "
        "not included)."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(asyncio.run(measure()), cache_cost_ns()))
