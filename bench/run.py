"""``make bench``: one ~1 Mbit/s video publisher, N non-decoding subscribers, a real server.

The server runs as its own process (``eurelay serve``, uvloop) so its CPU time can be read
from /proc; the load client runs in this process. Results go to stdout (table and JSON) and,
with ``--write``, to docs/BENCHMARKS.md.

    python -m bench.run --subscribers 1 10 50 --duration 5 --write docs/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from signaling.node_process import NodeProcess, spawn_node
from signaling.tokens import Grant, mint
from tests.redis_server import redis_server

from . import floor, loss, placement, plot, whip_latency
from .raw_peer import RawPeer, VideoSender

KEY, SECRET = "bench", "bench-secret-" + "0" * 32
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    subscribers: int
    forwarded_packets: int
    cpu_us_per_forwarded_packet: float
    relay_forward_p50_us: float
    relay_forward_p99_us: float
    one_way_latency_p50_ms: float
    one_way_latency_p99_ms: float
    loss_percent: float
    join_time_p50_ms: float
    join_time_p95_ms: float
    server_cpu_percent: float
    server_kib_per_subscriber: float = 0.0
    floor_us_per_packet: float = 0.0
    ratio_to_floor: float = 0.0


@contextlib.asynccontextmanager
async def server_process() -> AsyncIterator[NodeProcess]:
    config = Path(tempfile.mkdtemp()) / "bench.yaml"
    config.write_text(
        f"keys: {{{KEY}: {SECRET}}}\nrooms: {{max_participants: 0}}\n"
        "capacity: {max_participants: 0}\nsignaling: {messages_per_second: 1000}\n"
    )
    async with spawn_node(config, "--log-level", "warning") as node:
        yield node


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of ``pid``: schedstat's nanoseconds, not stat's 10 ms ticks
    (a short run of a light server would otherwise read as zero)."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            total += int((task / "schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        total = 0
    if total:
        return total / 1e9
    # kernels without schedstat accounting: fall back to clock ticks
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


async def scrape(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with http.get(base + "/metrics") as resp:
        text = await resp.text()
    values: dict[str, Any] = {"buckets": {}}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "eurelay_relay_rtp_sent_packets_total":
                values["sent"] = s.value
            elif s.name == "eurelay_relay_forward_duration_seconds_bucket":
                values["buckets"][float(s.labels["le"])] = s.value
    return values


def bucket_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    bounds = sorted(after)
    total = after[bounds[-1]] - before.get(bounds[-1], 0)
    if total <= 0:
        return float("nan")
    for bound in bounds:
        if after[bound] - before.get(bound, 0) >= q * total:
            return bound
    return bounds[-1]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Signaling:
    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def join(self, room: str, identity: str, publish: bool) -> None:
        grant = Grant(room=room, can_publish=publish, can_subscribe=not publish)
        self.ws = await self.http.ws_connect(self.url)
        await self.ws.send_json({"type": "join", "token": mint(KEY, SECRET, identity, grant)})

    async def expect(self, kind: str) -> dict[str, Any]:
        assert self.ws is not None
        while True:
            message: dict[str, Any] = json.loads((await self.ws.receive(timeout=10)).data)
            if message["type"] == kind:
                return message
            if message["type"] == "error":
                raise RuntimeError(message)


async def run_scenario(subscribers: int, duration: float) -> Result:
    async with server_process() as node, aiohttp.ClientSession() as http:
        pid, url, base = node.pid, node.ws_url, node.http_url
        room = "bench-" + secrets.token_hex(3)
        pub_sig = Signaling(http, url)
        await pub_sig.join(room, "publisher", publish=True)
        publisher = RawPeer()
        await publisher.open()
        ssrc = secrets.randbits(32)
        assert pub_sig.ws is not None
        await pub_sig.ws.send_json(
            {"type": "publish_offer", "sdp": publisher.publisher_offer(ssrc)}
        )
        answer = await pub_sig.expect("publish_answer")
        await publisher.connect(answer["sdp"])
        sender = VideoSender(publisher, ssrc)
        sender.start()
        rss_before = rss_kib(pid)

        peers: list[RawPeer] = []
        sigs: list[Signaling] = []
        join_ms: list[float] = []
        for i in range(subscribers):
            started = time.perf_counter()
            sig = Signaling(http, url)
            await sig.join(room, f"viewer{i}", publish=False)
            peer = RawPeer()
            await peer.open()
            offer = await sig.expect("subscriber_offer")
            assert sig.ws is not None
            await sig.ws.send_json(
                {"type": "subscriber_answer", "sdp": peer.subscriber_answer(offer["sdp"])}
            )
            await peer.connect(offer["sdp"])
            while peer.counters.first_packet_at is None:
                await asyncio.sleep(0.002)
            join_ms.append((peer.counters.first_packet_at - started) * 1000)
            peers.append(peer)
            sigs.append(sig)

        await asyncio.sleep(1.0)  # settle
        rss_after = rss_kib(pid)
        for peer in peers:
            peer.counters.latencies_ns.clear()
            peer.counters.packets = peer.counters.lost = 0
        before = await scrape(http, base)
        cpu_before, wall_before = cpu_seconds(pid), time.perf_counter()
        await asyncio.sleep(duration)
        cpu_after, wall_after = cpu_seconds(pid), time.perf_counter()
        after = await scrape(http, base)

        await sender.stop()
        latencies = [ns / 1e6 for p in peers for ns in p.counters.latencies_ns]
        received = sum(p.counters.packets for p in peers)
        lost = sum(p.counters.lost for p in peers)
        forwarded = int(after["sent"] - before["sent"])
        cpu = cpu_after - cpu_before
        for peer in [*peers, publisher]:
            await peer.close()
        for sig in [*sigs, pub_sig]:
            if sig.ws is not None:
                await sig.ws.close()
        return Result(
            subscribers=subscribers,
            forwarded_packets=forwarded,
            cpu_us_per_forwarded_packet=cpu * 1e6 / max(1, forwarded),
            relay_forward_p50_us=bucket_quantile(before["buckets"], after["buckets"], 0.5) * 1e6,
            relay_forward_p99_us=bucket_quantile(before["buckets"], after["buckets"], 0.99) * 1e6,
            one_way_latency_p50_ms=pct(latencies, 0.5),
            one_way_latency_p99_ms=pct(latencies, 0.99),
            loss_percent=100.0 * lost / max(1, received + lost),
            join_time_p50_ms=statistics.median(join_ms) if join_ms else float("nan"),
            join_time_p95_ms=pct(join_ms, 0.95),
            server_cpu_percent=100.0 * cpu / (wall_after - wall_before),
            server_kib_per_subscriber=max(0, rss_after - rss_before) / max(1, subscribers),
        )


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"
    )


DOC = """# Benchmarks

Written by `make bench` (`python -m bench.run`); rerun it to refresh. Numbers from a
noisy shared machine: compare rows of one run, not runs of different days.

## Forwarding: one ~1 Mbit/s VP8 publisher, N subscribers ({date})

Machine: {machine}. Server: `eurelay serve` (uvloop) in its own process; load
client (publisher and non-decoding subscribers, `bench/raw_peer.py`) in another, on
loopback inside a private network namespace. Measured over {duration} s of steady state.

- *CPU µs / fwd pkt*: server process CPU time (all threads, /proc schedstat) divided by RTP
  packets it sent in the window; it includes receiving the publisher's packets, RTCP, STUN.
- *floor*: in the same run, a bare Python loop doing per subscriber a header rewrite,
  SRTP protect (pylibsrtp) and `sendto` to a loopback socket (`bench/floor.py`): the
  cost no Python forwarder can go below. *x floor* is eurelay's cost over it.
- *relay fwd*: the relay's own histogram, datagram received to last `sendto`
  (`eurelay_relay_forward_duration_seconds`), as the bucket bound holding the quantile.
- *one-way*: publisher send time (in the payload) to subscriber receive, same clock.
- *KiB / subscriber*: growth of the server's resident memory while the subscribers joined,
  divided by their number (each is one participant with a data channel and a video leg).
- *join*: WebSocket connect to the first RTP packet at the subscriber. A subscriber
  starts at a keyframe, and keyframe requests per track are throttled to one per
  `rtc.keyframe_interval` (0.5 s, like LiveKit's PLI throttle): subscribers that join
  in quick succession wait for the next allowed request, hence ~0.5 s at 10 and 50.

{table}

![cost per forwarded packet and latency p99 against subscribers](bench-forwarding.png)

```json
{json}
```

## WHIP to first frame: Chromium publishes, an aiortc WHEP viewer decodes ({date})

The viewer is connected and waiting; the clock starts just before Chromium's page POSTs its
WHIP offer (camera already open) and stops at the viewer's first decoded video frame. It
covers the HTTP exchange, ICE, DTLS, Chromium's first keyframe, forwarding and decoding.

{whip}

## Placement with 1,000 registered nodes ({date})

Per join: read the room's owner, its residency policy and the RTTs learned for the
client's prefix from the registry, score the node snapshot, claim the room (Lua script on
Redis). The snapshot (every live node record) is refreshed once per heartbeat, timed apart.
Redis is a local `redis-server` on loopback.

{placement}

## Video under loss on the subscriber leg ({date})

One aiortc VP8 publisher (320x240, 30 fps) and one decoding aiortc subscriber behind the
UDP impairment proxy (`relay/netem.py`, random loss relay to subscriber, switched on once
decoding runs), 6 s per row, with the relay's NACK handling on and off ("off" answers no
NACK at all, so there is no keyframe fallback either: aiortc's receiver then stalls at the
first lost packet, which is what rows near 0 show).

{loss}
"""


def render(
    results: list[Result],
    duration: float,
    whip: dict[str, float] | None = None,
    placement_rows: list[dict[str, Any]] | None = None,
    loss_text: str = "Not measured.",
) -> str:
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    rows = [
        "| subscribers | forwarded pkts | CPU µs / fwd pkt | floor µs | x floor "
        "| relay fwd p50 / p99 (µs, bucket) | one-way p50 / p99 (ms) | loss % "
        "| join p50 / p95 (ms) | server CPU % | server KiB / subscriber |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        rows.append(
            f"| {r.subscribers} | {r.forwarded_packets} | {r.cpu_us_per_forwarded_packet:.1f} "
            f"| {r.floor_us_per_packet:.1f} | {r.ratio_to_floor:.2f} "
            f"| ≤{r.relay_forward_p50_us:.0f} / ≤{r.relay_forward_p99_us:.0f} "
            f"| {r.one_way_latency_p50_ms:.2f} / {r.one_way_latency_p99_ms:.2f} "
            f"| {r.loss_percent:.2f} | {r.join_time_p50_ms:.0f} / {r.join_time_p95_ms:.0f} "
            f"| {r.server_cpu_percent:.0f} | {r.server_kib_per_subscriber:.0f} |"
        )
    return DOC.format(
        date=date,
        machine=machine(),
        duration=f"{duration:.0f}",
        table="\n".join(rows),
        json=json.dumps([asdict(r) for r in results], indent=1),
        whip=(
            f"p50 {whip['p50_ms']:.0f} ms over {whip['runs']:.0f} runs "
            f"(min {whip['min_ms']:.0f}, max {whip['max_ms']:.0f} ms)."
            if whip
            else "Not measured in this run (needs Debian's chromium)."
        ),
        placement=placement.render(placement_rows) if placement_rows else "Not measured.",
        loss=loss_text,
    )


async def whip_to_first_frame(runs: int) -> dict[str, float] | None:
    if shutil.which("chromium") is None:
        return None
    async with server_process() as node:
        values = await whip_latency.measure(node, KEY, SECRET, runs)
    result = whip_latency.summary(values)
    print(json.dumps({"whip_to_first_frame": result, "runs_ms": values}), flush=True)
    return result


async def placement_rows() -> list[dict[str, Any]]:
    rows = [await placement.measure("memory://")]
    if shutil.which("redis-server"):
        async with redis_server() as redis:
            rows.append(await placement.measure(redis.url))
    for row in rows:
        print(json.dumps(row), flush=True)
    return rows


async def main_async(
    args: argparse.Namespace,
) -> tuple[list[Result], dict[str, float] | None, list[dict[str, Any]], str]:
    results = []
    for n in args.subscribers:
        result = await run_scenario(n, args.duration)
        result.floor_us_per_packet = floor.floor_us_per_packet(n)
        result.ratio_to_floor = result.cpu_us_per_forwarded_packet / result.floor_us_per_packet
        print(json.dumps(asdict(result)), flush=True)
        results.append(result)
    rows = await placement_rows()
    loss_rows = await loss.measure()
    return (
        results,
        await whip_to_first_frame(args.whip_runs),
        rows,
        loss.render(loss_rows, loss.cache_cost_ns()),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--write", type=Path)
    parser.add_argument("--whip-runs", type=int, default=10)
    args = parser.parse_args()
    import uvloop

    results, whip, rows, loss_text = uvloop.run(main_async(args))
    text = render(results, args.duration, whip, rows, loss_text)
    print(text)
    if args.write:
        args.write.write_text(text)
        plot.plot(results, args.write.with_name("bench-forwarding.png"))


if __name__ == "__main__":
    main()
