"""Cascading benchmarks: one room's viewers spread over several nodes (one process each, one
core each), bridged from the publisher's node by the nodes themselves, on a real
redis-server.

- Capacity: viewers held at loss < 0.5% with one node versus two (viewers split evenly,
  each joining its node directly with probes that place it there), by ramping the viewer
  count. The load client (non-decoding peers, ``bench/raw_peer.py``) shares the machine's
  cores with the nodes, so each node's CPU per viewer is reported too: the figure to
  extrapolate from when the client saturates first.
- Latency added by one bridge hop: one-way latency (send timestamp in the payload) of
  viewers on the publisher's node versus viewers on the other node, in the same run.
- Publisher-node egress: bytes the publisher's node sends per second with all viewers on it
  versus the same viewers spread over three nodes.

    python -m bench.cascade --write docs/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from signaling.tokens import Grant, mint

from .doc_sections import replace_section
from .loadgen import KEY, SECRET, Signaling, _publish, _subscribe, cpu_seconds, pct, scrape
from .node_process import NodeProcess, spawn_node
from .raw_peer import RawPeer
from .redis_server import redis_server

HEADING = "## Cascading: one room over several nodes"
CLUSTER_SECRET = "bench-cluster-secret-" + "0" * 16
LOSS_LIMIT = 0.5  # percent
# A viewer a second behind is not held, whatever the loss: one-way p99 (worst of the viewers
# on the origin and a bridge away) must stay under this for a step to count.
LATENCY_LIMIT_MS = 200.0
STEPS = [100, 200, 300, 400]  # viewers, ramped until one is not held
EGRESS_VIEWERS = 90


@dataclass
class Spread:
    """One measurement: ``viewers`` of one publisher spread over ``nodes`` nodes."""

    nodes: int
    viewers: int
    loss_percent: float = 0.0
    joined: int = 0
    not_held: str = ""
    node_cpu_percent: list[float] = field(default_factory=list)  # per node, origin first
    node_viewers: list[int] = field(default_factory=list)
    cpu_us_per_viewer_second: list[float] = field(default_factory=list)  # per node
    local_latency_p50_ms: float = 0.0  # viewers on the publisher's node
    local_latency_p99_ms: float = 0.0
    bridged_latency_p50_ms: float = 0.0  # viewers one bridge hop away
    bridged_latency_p99_ms: float = 0.0
    origin_egress_kbps: float = 0.0
    client_cpu_percent: float = 0.0


def _config(directory: Path, index: int, redis_url: str) -> Path:
    path = directory / f"node-{index}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "node_id": f"bench-{index}",
                "region": f"r{index}",
                "keys": {KEY: SECRET},
                "registry": {"url": redis_url},
                "cluster": {"secret": CLUSTER_SECRET},
                "heartbeat_interval": 0.5,
                "node_ttl": 3,
                "rooms": {"max_participants": 0},
                "capacity": {"max_participants": 0},
                "signaling": {"messages_per_second": 1000},
            }
        )
    )
    return path


@contextlib.asynccontextmanager
async def nodes_on_redis(count: int) -> AsyncIterator[list[NodeProcess]]:
    directory = Path(tempfile.mkdtemp())
    async with redis_server() as redis, contextlib.AsyncExitStack() as stack:
        nodes = [
            await stack.enter_async_context(
                spawn_node(_config(directory, i, redis.url), "--log-level", "warning")
            )
            for i in range(count)
        ]
        await _wait_for_each_other(nodes)
        yield nodes


async def _wait_for_each_other(nodes: list[NodeProcess], timeout: float = 20) -> None:
    operator = mint(KEY, SECRET, "bench-ops", Grant(room="", room_admin=True))
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        for node in nodes:
            while True:
                async with http.get(
                    node.http_url + "/v1/nodes", headers={"Authorization": f"Bearer {operator}"}
                ) as resp:
                    if len((await resp.json())["nodes"]) == len(nodes):
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{node.http_url} never saw {len(nodes)} nodes")
                await asyncio.sleep(0.1)


def _near(index: int, count: int) -> dict[str, float]:
    """Probes that place a client in region ``r{index}``."""
    return {f"r{i}": (1.0 if i == index else 50.0) for i in range(count)}


async def measure(nodes: list[NodeProcess], viewers: int, duration: float) -> Spread:
    """One publisher on the first node; ``viewers`` split evenly over ``nodes``."""
    count = len(nodes)
    result = Spread(nodes=count, viewers=viewers)
    room = "cascade-" + secrets.token_hex(3)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        pub = await _publish(http, nodes[0].ws_url, room, 0, rtts=_near(0, count))
        gate = asyncio.Semaphore(10)
        placed = [i % count for i in range(viewers)]

        async def admitted(i: int) -> tuple[Signaling, RawPeer, float, float]:
            async with gate:
                node = placed[i]
                return await _subscribe(http, nodes[node].ws_url, room, i, _near(node, count))

        # The first viewer that cannot join ends the step (an overloaded machine would
        # otherwise time every remaining join out, one by one).
        joining = [asyncio.create_task(admitted(i)) for i in range(viewers)]
        await asyncio.wait(joining, return_when=asyncio.FIRST_EXCEPTION)
        for task in joining:
            task.cancel()
        await asyncio.gather(*joining, return_exceptions=True)
        joined = [
            (i, t.result())
            for i, t in enumerate(joining)
            if not t.cancelled() and not t.exception()
        ]
        result.joined = len(joined)
        failed = [t.exception() for t in joining if not t.cancelled() and t.exception()]
        if len(joined) < viewers:
            why = failed[0] if failed else "cancelled"
            result.not_held = f"{len(joined)} of {viewers} viewers joined; then: {why}"
        try:
            await asyncio.sleep(1.0)  # settle
            for _, (_, peer, _, _) in joined:
                peer.counters.reset()
            before = [await scrape(http, n.http_url) for n in nodes]
            egress_before = await _sent_bytes(http, nodes[0])
            cpu_before = [cpu_seconds(n.pid) for n in nodes]
            wall, client = time.perf_counter(), time.process_time()
            await asyncio.sleep(duration)
            elapsed = time.perf_counter() - wall
            result.client_cpu_percent = 100 * (time.process_time() - client) / elapsed
            cpu = [cpu_seconds(n.pid) - c for n, c in zip(nodes, cpu_before, strict=True)]
            result.origin_egress_kbps = (
                (await _sent_bytes(http, nodes[0]) - egress_before) * 8 / elapsed / 1000
            )
            del before
        finally:
            for sender in pub.senders:
                await sender.stop()
        got = sum(peer.counters.packets for _, (_, peer, _, _) in joined)
        lost = sum(peer.counters.lost for _, (_, peer, _, _) in joined)
        result.loss_percent = 100.0 * lost / max(1, got + lost)
        local = [
            ns / 1e6
            for i, (_, p, _, _) in joined
            if placed[i] == 0
            for ns in p.counters.latencies_ns
        ]
        bridged = [
            ns / 1e6
            for i, (_, p, _, _) in joined
            if placed[i] != 0
            for ns in p.counters.latencies_ns
        ]
        result.local_latency_p50_ms, result.local_latency_p99_ms = pct(local, 0.5), pct(local, 0.99)
        result.bridged_latency_p50_ms = pct(bridged, 0.5)
        result.bridged_latency_p99_ms = pct(bridged, 0.99)
        result.node_viewers = [sum(1 for i, _ in joined if placed[i] == n) for n in range(count)]
        result.node_cpu_percent = [round(100 * c / elapsed, 1) for c in cpu]
        result.cpu_us_per_viewer_second = [
            round(c * 1e6 / elapsed / max(1, v), 1)
            for c, v in zip(cpu, result.node_viewers, strict=True)
        ]
        for _, (sig, peer, _, _) in joined:
            await peer.close()
            await sig.close()
        await pub.peer.close()
        await pub.sig.close()
    return result


async def _sent_bytes(http: aiohttp.ClientSession, node: NodeProcess) -> float:
    async with http.get(node.http_url + "/metrics") as resp:
        for line in (await resp.text()).splitlines():
            if line.startswith("eurelay_relay_rtp_sent_bytes_total "):
                return float(line.split()[1])
    return 0.0


def is_held(s: dict[str, Any]) -> bool:
    latencies = [
        v for v in (s["local_latency_p99_ms"], s["bridged_latency_p99_ms"]) if v == v
    ]  # nan: nobody there
    if not latencies:
        return False
    worst = max(latencies)
    return not s["not_held"] and s["loss_percent"] < LOSS_LIMIT and worst < LATENCY_LIMIT_MS


def held(spreads: list[Spread]) -> int:
    """The most viewers held: every one joined, loss and latency under the limits."""
    return max((s.viewers for s in spreads if is_held(asdict(s))), default=0)


async def ramp(count: int, steps: list[int], duration: float) -> list[Spread]:
    """Fresh nodes per step (a step's leftovers must not load the next); stop at the first
    step that is not held."""
    spreads = []
    for viewers in steps:
        async with nodes_on_redis(count) as nodes:
            spread = await measure(nodes, viewers, duration)
        spreads.append(spread)
        if not is_held(asdict(spread)):
            break
    return spreads


async def run(steps: list[int], egress_viewers: int, duration: float) -> dict[str, Any]:
    one = await ramp(1, steps, duration)
    two = await ramp(2, steps, duration)
    async with nodes_on_redis(1) as nodes:
        alone = await measure(nodes, egress_viewers, duration)
    async with nodes_on_redis(3) as nodes:
        spread = await measure(nodes, egress_viewers, duration)
    return {
        "one_node": [asdict(s) for s in one],
        "two_nodes": [asdict(s) for s in two],
        "held_one": held(one),
        "held_two": held(two),
        "egress_one_node": asdict(alone),
        "egress_three_nodes": asdict(spread),
    }


def hop_line(spreads: list[dict[str, Any]]) -> str:
    """What one bridge hop adds, one way, at the lightest two-node step (the least queueing
    in a loaded process, so the hop itself shows)."""
    if not spreads:
        return "- One bridge hop: not measured."
    s = spreads[0]
    p50 = s["bridged_latency_p50_ms"] - s["local_latency_p50_ms"]
    p99 = s["bridged_latency_p99_ms"] - s["local_latency_p99_ms"]
    return (
        f"- One bridge hop adds {p50:.2f} ms one way at p50 and {p99:.2f} ms at p99 "
        f"({s['viewers']} viewers over two nodes; viewers on the origin against viewers a hop "
        "away, same run)."
    )


def render(result: dict[str, Any], date: str) -> str:
    lines = [
        f"{HEADING} ({date})",
        "",
        "`python -m bench.cascade` (part of `make bench`): one publisher (~1 Mbit/s VP8 + an",
        "Opus-sized stream) on the first node, non-decoding viewers split evenly over the",
        "nodes, each joining its node directly with probes that place it there; the other",
        "nodes bridge the room from the first by themselves (real redis-server). Each node is",
        "its own process; the load client is another and shares the two cores.",
        "",
        "| nodes | viewers | joined | loss % | node CPU % (origin first) | CPU µs per viewer-second"
        " | one-way p50 / p99 ms, on the origin | via one bridge | client CPU % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key in ("one_node", "two_nodes"):
        for s in result[key]:
            lines.append(
                f"| {s['nodes']} | {s['viewers']} | {s['joined']} | {s['loss_percent']:.2f} | "
                f"{' / '.join(f'{c:.0f}' for c in s['node_cpu_percent'])} | "
                f"{' / '.join(f'{c:.0f}' for c in s['cpu_us_per_viewer_second'])} | "
                f"{s['local_latency_p50_ms']:.2f} / {s['local_latency_p99_ms']:.2f} | "
                f"{s['bridged_latency_p50_ms']:.2f} / {s['bridged_latency_p99_ms']:.2f} | "
                f"{s['client_cpu_percent']:.0f} |"
            )
    one, two = result["held_one"], result["held_two"]
    ratio = f"{two / one:.2f}x" if one else "n/a"
    client = max((s["client_cpu_percent"] for s in result["two_nodes"]), default=0.0)
    over = next((s for s in result["two_nodes"] if not is_held(s)), None)
    machine = (
        f"at {over['viewers']} viewers the two nodes and the client together used "
        f"{sum(over['node_cpu_percent']) + over['client_cpu_percent']:.0f} % of the two cores"
        if over
        else "no two-node step failed"
    )
    both = [
        (a, b)
        for a in result["one_node"]
        for b in result["two_nodes"]
        if a["viewers"] == b["viewers"] and is_held(a) and is_held(b)
    ]
    if both:
        costs, ratios = [], []
        for a, b in both:
            one_cost = a["cpu_us_per_viewer_second"][0]
            two_cost = sum(b["cpu_us_per_viewer_second"]) / len(b["cpu_us_per_viewer_second"])
            costs.append(f"{a['viewers']}: {one_cost:.0f} vs {two_cost:.0f}")
            ratios.append(2 * one_cost / two_cost)
        extrapolated = (
            "- Capacity, from CPU per viewer (µs per viewer-second, one node vs the mean of "
            f"two, at the viewer counts held both ways: {'; '.join(costs)}): a viewer costs a "
            "node about the same either way, so two nodes, a core each, carry "
            f"{sum(ratios) / len(ratios):.2f}x one node's viewers (from "
            f"{min(ratios):.2f}x to {max(ratios):.2f}x across those counts). The origin's "
            "extra work for the second node is one bridge: one copy of each stream."
        )
    else:
        extrapolated = "- Capacity: no viewer count was held both ways."
    alone, spread = result["egress_one_node"], result["egress_three_nodes"]
    egress = spread["origin_egress_kbps"] / max(1.0, alone["origin_egress_kbps"])
    lines += [
        "",
        extrapolated,
        f"- Held on this machine (all joined, loss < {LOSS_LIMIT}%, one-way p99 < "
        f"{LATENCY_LIMIT_MS:.0f} ms): one node {one}, two nodes {two} ({ratio}). This measures "
        "the machine, not the nodes: the load client needs a core of its own (up to "
        f"{client:.0f} % here), so two nodes and the client are three busy processes on two "
        f"cores ({machine}); one node and the client are two. Rows vary by up to 2x between "
        "runs on this VM.",
        hop_line(result["two_nodes"]),
        f"- Publisher-node egress with {alone['viewers']} viewers: all on it "
        f"{alone['origin_egress_kbps']:.0f} kbit/s; spread over three nodes "
        f"{spread['origin_egress_kbps']:.0f} kbit/s ({egress:.2f}x): a third of the viewers "
        "plus one copy per other node.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=STEPS)
    parser.add_argument("--egress-viewers", type=int, default=EGRESS_VIEWERS)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--write", type=Path, help="refresh this section of BENCHMARKS.md")
    args = parser.parse_args()
    result = asyncio.run(run(args.steps, args.egress_viewers, args.duration))
    print(json.dumps(result, indent=2))
    text = render(result, time.strftime("%Y-%m-%d"))
    print(text)
    if args.write:
        replace_section(args.write, HEADING, text)


if __name__ == "__main__":
    main()
