"""Placement decision time with 1,000 registered nodes, on both registry backends.

A join's decision reads the room's owner, policy and the learned RTTs of the client's
prefix from the registry, then scores the node snapshot; the snapshot itself is refreshed
once per heartbeat, so it is timed apart.
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

from regions.models import NodeLoad, NodeRecord
from regions.placement import PlacementInput, client_prefix, place
from regions.registry import Registry, create_registry

REGIONS = ["eu-west", "eu-central", "eu-north", "eu-south", "eu-east"]


def _nodes(count: int) -> list[NodeRecord]:
    rng = random.Random(7)
    return [
        NodeRecord(
            id=f"node-{i:04d}",
            region=REGIONS[i % len(REGIONS)],
            jurisdiction="eu",
            signaling_url=f"http://10.0.{i // 250}.{i % 250}:7880",
            capacity=1000,
            load=NodeLoad(sessions=rng.randrange(0, 900), cpu=rng.random()),
        )
        for i in range(count)
    ]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(url: str, nodes: int = 1000, decisions: int = 300) -> dict[str, Any]:
    registry: Registry = create_registry(url, node_ttl=60)
    try:
        for record in _nodes(nodes):
            await registry.register(record)
        refresh_ms = []
        for _ in range(20):
            started = time.perf_counter()
            snapshot = await registry.live_nodes()
            refresh_ms.append((time.perf_counter() - started) * 1000)
        assert len(snapshot) == nodes
        decide_ms = []
        for i in range(decisions):
            room = f"room-{i % 50}"
            started = time.perf_counter()
            hosts = await registry.room_hosts(room)
            policy = await registry.room_policy(room)
            learned = await registry.learned_rtts(client_prefix(f"198.51.100.{i % 200}"))
            decision = place(
                PlacementInput(
                    nodes=snapshot,
                    policy=policy,
                    room_hosts=hosts,
                    probes={"eu-west": 20 + i % 7, "eu-central": 25.0},
                    learned=learned,
                    mapped_region=None,
                    default_region="eu-central",
                )
            )
            assert decision.node is not None
            await registry.add_room_host(room, decision.node.id)
            decide_ms.append((time.perf_counter() - started) * 1000)
        return {
            "backend": url.split(":", 1)[0],
            "nodes": nodes,
            "decision_p50_ms": statistics.median(decide_ms),
            "decision_p99_ms": _pct(decide_ms, 0.99),
            "snapshot_refresh_p50_ms": statistics.median(refresh_ms),
            "snapshot_refresh_p99_ms": _pct(refresh_ms, 0.99),
        }
    finally:
        await registry.close()


def render(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| backend | nodes | decision p50 / p99 (ms) | snapshot refresh p50 / p99 (ms) |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['backend']} | {r['nodes']} | {r['decision_p50_ms']:.2f} / "
            f"{r['decision_p99_ms']:.2f} | {r['snapshot_refresh_p50_ms']:.2f} / "
            f"{r['snapshot_refresh_p99_ms']:.2f} |"
        )
    return "\n".join(lines)
