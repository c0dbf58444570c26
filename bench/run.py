"""``make bench``: the standard scenarios of ``eurelay bench`` plus the other benchmarks,
written to docs/BENCHMARKS.md.

The forwarding scenarios (``bench/loadgen.py``) run a real server in its own process and
non-decoding peers in this one. Results go to stdout (table and JSON) and, with
``--write``, to docs/BENCHMARKS.md and a PNG plot next to it.

    python -m bench.run --duration 5 --write docs/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import (
    cascade,
    fastpath,
    glass,
    join_video,
    loss,
    placement,
    plot,
    receive_path,
    rooms,
    weak_networks,
    whip_latency,
)
from .doc_sections import replace_section, write_keeping_sections
from .loadgen import KEY, SECRET, Result, as_json, held, run_all, server_process, table
from .redis_server import redis_server

# (publishers, subscribers) per standard scenario; one publisher = video + audio
FAN_OUT = [1, 10, 50, 150, 500]
GROUP_CALL = (4, 10)
IDLE_ROOMS = 200  # the 10-subscriber scenario again, beside this many idle rooms


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
noisy shared machine: compare rows of one run, not runs of different days. The
forwarding rows are `eurelay bench` scenarios (see the README).

## Forwarding: publishers of ~1 Mbit/s VP8 + an Opus-sized stream, N subscribers ({date})

Machine: {machine}. Server: `eurelay serve` (uvloop) in its own process; load
client (publishers and non-decoding subscribers, `bench/raw_peer.py`) in another, on
loopback inside a private network namespace. Measured over {duration} s of steady state.
Both processes share the machine's two cores, so at hundreds of subscribers the load
client competes with the server for CPU.

{summary}

- *CPU µs / fwd pkt*: server process CPU time (all threads, /proc schedstat) divided by RTP
  packets it sent in the window; it includes receiving the publisher's packets, RTCP, STUN.
- *CPU µs / received pkt*: server CPU with the publishers alone (nobody subscribed) for
  2 s, minus the idle server's CPU over 2 s, per packet received; in brackets, over the
  forwarding floor.
- *receive floor*: in the same run, while the same publishers send, a bare uvloop
  receiver in a process of its own (`bench/floor.py`) fed the same publishers' packet
  schedule (four video packets 30 times a second, an audio packet 50 times a second),
  doing nothing but SRTP unprotect and a header read; in brackets, eurelay over it.
  At a few hundred packets a second the process sleeps between packets and each wake-up
  finds its caches cold: that, not the relay's bookkeeping, is most of the cost of a
  received packet (the fast-path section below shows the same in one process).
- *floor*: in the same run, a bare Python loop doing per subscriber a header rewrite,
  SRTP protect (`pylibsrtp.Session.protect`, AEAD_AES_256_GCM: the profile the bench's
  aiortc-based peers negotiate with the relay) and `sendto` (`bench/floor.py`), fed the
  publishers' packet schedule and sending to as many loopback sockets, which another
  process reads with uvloop: the cost of the plain Python loop under the same conditions
  (cold caches at each wake-up; loopback charges waking each reader to the sender).
  *x floor* is eurelay's cost over it. eurelay calls libsrtp through pylibsrtp's binding
  without the wrapper's per-call work (`relay/srtp_fast.py`), which is how it can go
  below the floor. The JSON also has `burst_floor_us_per_packet`: the same loop back to
  back with caches hot, to sockets it drains itself, which no relay fed by a real
  publisher sees. A py-spy profile (`--native`) of the server at 50 subscribers puts
  60 % of its samples in the kernel's `sendmsg` (loopback delivery to the reader
  included) and about 4 % in SRTP protect.
- *relay fwd*: the relay's own histogram, datagram received to last `sendto`
  (`eurelay_relay_forward_duration_seconds`), as the bucket bound holding the quantile.
- *one-way*: publisher send time (in the payload) to subscriber receive, same clock.
- *load client CPU %*: the load client's own process (all subscribers and publishers, one
  Python process). Near 100 % it, not the server, limits the row: loss and latency
  there are partly the client falling behind.
- *KiB / subscriber*: growth of the server's resident memory while the subscribers joined,
  divided by their number (each is one participant with a data channel and a video leg).
- *join*: WebSocket connect to the first RTP packet at the subscriber (the audio usually),
  and to its first video packet. Subscribers join 10 at a time, each holding its place
  until its first video packet. Video starts at a keyframe: the latest one replayed from
  the packet cache when it is at most `rtc.keyframe_replay_age` (0.5 s) old, else the next
  one, requested (requests per track throttled to one per `rtc.keyframe_interval`, 0.5 s,
  like LiveKit's PLI throttle). *keyframe requests in joins*: PLIs the publisher received
  from the first join to the last subscriber's first video packet, and the most in any
  one second of that.

{table}

![cost per forwarded packet and latency p99 against subscribers](bench-forwarding.png)

```json
{json}
```

{fastpath}
## WHIP to first frame: Chromium publishes, an aiortc WHEP viewer decodes ({date})

The viewer is connected and waiting; the clock starts just before Chromium's page POSTs its
WHIP offer (camera already open) and stops at the viewer's first decoded video frame. It
covers the HTTP exchange, ICE, DTLS, Chromium's first keyframe, forwarding and decoding.

{whip}

## Placement with 1,000 registered nodes ({date})

Per join: read the room's hosts, its residency policy and the RTTs learned for the
client's prefix from the registry, score the node snapshot, add the chosen node to the room's
hosts. The snapshot (every live node record) is refreshed once per heartbeat, timed apart.
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
    fastpath_text: str = "Not measured.",
) -> str:
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    return DOC.format(
        date=date,
        machine=machine(),
        duration=f"{duration:.0f}",
        summary=summary(results),
        table=table(results),
        json=as_json(results),
        whip=(
            f"p50 {whip['p50_ms']:.0f} ms over {whip['runs']:.0f} runs "
            f"(min {whip['min_ms']:.0f}, max {whip['max_ms']:.0f} ms)."
            if whip
            else "Not measured in this run (needs Debian's chromium)."
        ),
        placement=placement.render(placement_rows) if placement_rows else "Not measured.",
        loss=loss_text,
        fastpath=fastpath.render_section(fastpath_text, date),
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
) -> tuple[list[Result], dict[str, float] | None, list[dict[str, Any]], str, str]:
    results = await run_all(args.subscribers, 1, args.duration, concurrency=10)
    publishers, subscribers = GROUP_CALL
    results += await run_all([subscribers], publishers, args.duration, concurrency=10)
    results += await run_all([10], 1, args.duration, concurrency=10, idle_rooms=IDLE_ROOMS)
    rows = await placement_rows()
    loss_rows = await loss.measure()
    fast = [fastpath.measure(n) for n in (10, 50, 150, 500)]
    print(fastpath.table(fast), flush=True)
    return (
        results,
        await whip_to_first_frame(args.whip_runs),
        rows,
        loss.render(loss_rows, loss.cache_cost_ns()),
        fastpath.table(fast),
    )


def summary(results: list[Result]) -> str:
    """The statements the targets ask for: slope, the 50- and 500-subscriber rows."""
    fan_out = [r for r in held(results) if r.publishers == 1 and r.subscribers >= 10]
    fan_out = [r for r in fan_out if not r.idle_rooms]
    lines = []
    if len(fan_out) >= 2:
        first, last = fan_out[0], fan_out[-1]
        # server CPU seconds per second against subscribers: the marginal cost per subscriber
        slope = (last.server_cpu_percent - first.server_cpu_percent) / (
            last.subscribers - first.subscribers
        )
        lines.append(
            f"- Cost grows linearly with subscribers: {slope:.2f} % of a core per added "
            f"subscriber between {first.subscribers} and {last.subscribers} "
            "(server CPU % column)."
        )
    plain = [r for r in held(results) if r.publishers == 1 and r.subscribers == 10]
    plain = [r for r in plain if not r.idle_rooms]
    idle = [r for r in held(results) if r.idle_rooms]
    if plain and idle:
        lines.append(
            f"- Idle rooms: 10 subscribers cost {plain[0].cpu_us_per_forwarded_packet:.1f} µs "
            f"per forwarded packet alone and {idle[0].cpu_us_per_forwarded_packet:.1f} µs "
            f"beside {idle[0].idle_rooms} idle rooms (one silent participant each); "
            f"the idle rooms alone kept the server at {idle[0].server_idle_cpu_percent:.1f} % "
            f"of a core (without them: {plain[0].server_idle_cpu_percent:.1f} %)."
        )
    for r in results:
        if r.not_held and r.publishers == 1:
            lines.append(f"- {r.subscribers} subscribers: not held on this machine ({r.not_held}).")
            continue
        if r.publishers == 1 and r.subscribers in (50, 500):
            burst = r.cpu_us_per_forwarded_packet / max(1e-9, r.burst_floor_us_per_packet)
            lines.append(
                f"- {r.subscribers} subscribers: {r.cpu_us_per_forwarded_packet:.1f} µs per "
                f"forwarded packet, {r.ratio_to_floor:.2f}x the floor "
                f"(burst floor {burst:.2f}x); "
                f"received packets {r.cpu_us_per_received_packet:.0f} µs, "
                f"{r.received_ratio_to_receive_floor:.2f}x the receive floor; "
                f"loss {r.loss_percent:.2f} %; "
                f"relay forwarding p99 ≤{r.relay_forward_p99_us / 1000:.1f} ms; server CPU "
                f"{r.server_cpu_percent:.0f} % of one core; join p95 {r.join_time_p95_ms:.0f} ms "
                f"(to video {r.join_video_p95_ms:.0f} ms)."
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, nargs="+", default=FAN_OUT)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--write", type=Path)
    parser.add_argument("--whip-runs", type=int, default=10)
    parser.add_argument("--weak-runs", type=int, default=5, help="runs per weak-network scenario")
    args = parser.parse_args()
    import uvloop

    results, whip, rows, loss_text, fast = uvloop.run(main_async(args))
    text = render(results, args.duration, whip, rows, loss_text, fast)
    print(text)
    many = uvloop.run(rooms.run_scenarios(args.duration))
    joins = uvloop.run(join_video.measure())
    pieces = receive_path.measure()
    whole = fastpath.receiving(1.0, 3)
    cascaded = uvloop.run(cascade.run(cascade.STEPS, cascade.EGRESS_VIEWERS, args.duration))
    glassed = uvloop.run(glass.measure(10.0))
    weak = uvloop.run(weak_networks.measure(runs=args.weak_runs))
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    rooms_text = rooms.render(many, today, machine())
    joins_text = join_video.render(joins, today)
    pieces_text = receive_path.render(pieces, whole, today)
    weak_text = weak_networks.render(weak, today, machine())
    print(rooms_text, joins_text, cascade.render(cascaded, today), glass.render(glassed, today))
    print(weak_text, json.dumps(weak), flush=True)
    if args.write:
        write_keeping_sections(args.write, text)
        replace_section(args.write, rooms.HEADING, rooms_text)
        replace_section(args.write, join_video.HEADING, joins_text)
        replace_section(args.write, receive_path.HEADING, pieces_text)
        replace_section(args.write, cascade.HEADING, cascade.render(cascaded, today))
        replace_section(args.write, glass.HEADING, glass.render(glassed, today))
        replace_section(args.write, weak_networks.HEADING, weak_text)
        fan_out = [r for r in held(results) if r.publishers == 1 and not r.idle_rooms]
        plot.plot(fan_out, args.write.with_name("bench-forwarding.png"))


if __name__ == "__main__":
    main()
