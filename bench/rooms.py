"""Many rooms that all carry media (``eurelay bench --rooms R --room-size K``): 1:1 calls,
group calls and voice rooms, where every received packet is relayed to a few subscribers
and the cost of receiving decides how many rooms a core holds.

Each room has ``room_size`` participants; ``speakers`` of them (all, by default) publish
~1 Mbit/s VP8 + an Opus-sized stream (``audio_only``: the Opus-sized stream alone), and
every participant receives every other one's streams. Rooms are added in steps on one
server (``eurelay serve`` in its own process); after each step the load is measured over
a window: loss at the subscribers, the relay's forwarding histogram, server CPU per
relayed packet (a copy sent), and in the same run the floor per relayed packet
(``bench/floor.py``: unprotect, then per subscriber rewrite + protect + ``sendto``, fed the
same publishers' schedule while the load pauses). A step is held at loss < 0.5 %, a
relay p99 within the 5 ms bucket and a one-way p99 under 200 ms. The load client is one
Python process; its own CPU says when it, not the server, is the limit: then the server's
CPU per room is the figure to extrapolate from.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import os
import secrets
import struct
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp

from relay.srtp_fast import FastSrtp
from signaling.tokens import Grant, mint

from . import floor
from .loadgen import (
    KEY,
    SECRET,
    bucket_quantile,
    cpu_seconds,
    pct,
    scrape,
    server_process,
    udp_buffer_drops,
)
from .raw_peer import AUDIO_PT, STAMP, VIDEO_PT, RawPeer

MAX_LOSS_PERCENT = 0.5
MAX_RELAY_P99_US = 5000.0
# The relay's histogram covers the time a datagram spends in the relay, not the time it
# waits in a socket buffer for a busy process: queues building show in the one-way delay.
MAX_ONE_WAY_P99_MS = 200.0
CLIENT_BOUND_PERCENT = 90.0  # the load client at this much of its core limits the step
JOIN_CONCURRENCY = 10
JOIN_TIMEOUT = 30.0  # seconds for each of a member's steps (offer, handshake)
VIDEO_FPS = 30
AUDIO_PPS = 50
VIDEO_BITRATE = 1_000_000
MTU = 1100
AUDIO_BYTES = 80


@dataclass
class RoomsResult:
    rooms: int
    room_size: int
    speakers: int
    audio_only: bool
    participants: int = 0
    relayed_packets: int = 0  # copies the server sent in the window
    received_packets: int = 0  # packets the server received from publishers in the window
    cpu_us_per_relayed_packet: float = 0.0  # server CPU (all of it) per copy sent
    floor_us_per_relayed_packet: float = 0.0
    ratio_to_floor: float = 0.0
    server_cpu_percent: float = 0.0
    server_cpu_percent_per_room: float = 0.0
    relay_forward_p50_us: float = 0.0
    relay_forward_p99_us: float = 0.0
    one_way_latency_p50_ms: float = 0.0
    one_way_latency_p99_ms: float = 0.0
    loss_percent: float = 0.0
    udp_buffer_drops: int = 0
    client_cpu_percent: float = 0.0
    held: bool = False
    limit: str = ""  # why the step is not held, or what limits it


@dataclass
class _Stream:
    """One synthetic RTP stream of a publishing member, sent by the ``Pacer``."""

    peer: RawPeer
    protect: Callable[[bytes], bytes]
    ssrc: int
    video: bool
    seq: int = field(default_factory=lambda: secrets.randbits(16))
    count: int = 0  # frames (video) or packets (audio) sent


class Pacer:
    """Sends every publishing member's packets on schedule from one task (a task per
    stream would wake the loop thousands of times a second for nothing)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Stream]] = []
        self._order = 0
        self.paused = False
        self._task: asyncio.Task[None] | None = None
        self._filler = os.urandom(MTU)

    def add(self, stream: _Stream) -> None:
        self._order += 1
        heapq.heappush(self._heap, (time.perf_counter(), self._order, stream))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        heap = self._heap
        while True:
            now = time.perf_counter()
            while heap and heap[0][0] <= now:
                due, order, stream = heapq.heappop(heap)
                if not self.paused:
                    self._send(stream)
                period = 1 / VIDEO_FPS if stream.video else 1 / AUDIO_PPS
                # behind by more than a period (a pause): skip ahead, do not burst
                next_due = max(due + period, now - period)
                heapq.heappush(heap, (next_due, order, stream))
            delay = heap[0][0] - time.perf_counter() if heap else 0.01
            await asyncio.sleep(max(0.001, delay))

    def _send(self, stream: _Stream) -> None:
        peer = stream.peer
        transport, server = peer.transport, peer.server
        if transport is None or server is None:
            return
        pack = struct.pack
        if not stream.video:
            header = pack(
                "!BBHII", 0x80, AUDIO_PT, stream.seq, (stream.count * 960) & 0xFFFFFFFF, stream.ssrc
            )
            stamp = STAMP.pack(time.monotonic_ns(), stream.count)
            payload = b"\xfc\xff" + stamp + self._filler[: AUDIO_BYTES - 2 - STAMP.size]
            transport.sendto(stream.protect(header + payload), server)
            stream.seq = (stream.seq + 1) & 0xFFFF
            stream.count += 1
            return
        frame = stream.count
        keyframe = frame % 60 == 0 or peer.keyframe_requested
        peer.keyframe_requested = False
        timestamp = (frame * 3000) & 0xFFFFFFFF
        remaining = VIDEO_BITRATE // 8 // VIDEO_FPS * (3 if keyframe else 1)
        first = True
        while remaining > 0:
            size = min(MTU, remaining)
            remaining -= size
            marker = 0x80 if remaining <= 0 else 0
            header = pack("!BBHII", 0x80, marker | VIDEO_PT, stream.seq, timestamp, stream.ssrc)
            descriptor = b"\x10" if first else b"\x00"
            tag = b"\x00" if keyframe else b"\x01"
            stamp = STAMP.pack(time.monotonic_ns(), frame)
            payload = descriptor + tag + stamp + self._filler[: max(0, size - 2 - STAMP.size)]
            transport.sendto(stream.protect(header + payload), server)
            stream.seq = (stream.seq + 1) & 0xFFFF
            first = False
        stream.count += 1


class Member:
    """One participant: a WebSocket, a subscriber peer receiving the room's other members,
    and for a speaker a publisher peer. A reader task answers every subscriber offer at
    once (the server sends the next only after an answer) and hands over the publish answer."""

    def __init__(self, http: aiohttp.ClientSession, url: str, room: str, identity: str) -> None:
        self.http = http
        self.url = url
        self.room = room
        self.identity = identity
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.subscriber = RawPeer()
        self.publisher: RawPeer | None = None
        self._first_offer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._publish_answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._reader: asyncio.Task[None] | None = None

    async def join(self, speaker: bool, audio_only: bool, pacer: Pacer) -> None:
        grant = Grant(room=self.room, can_publish=speaker, can_subscribe=True)
        self.ws = await self.http.ws_connect(self.url)
        token = mint(KEY, SECRET, self.identity, grant)
        await self.ws.send_json({"type": "join", "token": token})
        self._reader = asyncio.create_task(self._read())
        await self.subscriber.open()
        offer = await asyncio.wait_for(self._first_offer, JOIN_TIMEOUT)
        # a handshake that never ends must end the step, not hang the run
        await asyncio.wait_for(self.subscriber.connect(offer), JOIN_TIMEOUT)
        if not speaker:
            return
        self.publisher = peer = RawPeer()
        await peer.open()
        video_ssrc = None if audio_only else secrets.randbits(32)
        audio_ssrc = secrets.randbits(32)
        sdp = peer.publisher_offer(video_ssrc, audio_ssrc)
        await self.ws.send_json({"type": "publish_offer", "sdp": sdp})
        answer = await asyncio.wait_for(self._publish_answer, JOIN_TIMEOUT)
        await asyncio.wait_for(peer.connect(answer), JOIN_TIMEOUT)
        assert peer.dtls is not None
        protect = FastSrtp(peer.dtls.tx_srtp).protect
        if video_ssrc is not None:
            pacer.add(_Stream(peer, protect, video_ssrc, video=True))
        pacer.add(_Stream(peer, protect, audio_ssrc, video=False))

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            message = json.loads(msg.data)
            kind = message.get("type")
            if kind == "subscriber_offer":
                answer = self.subscriber.subscriber_answer(message["sdp"])
                await self.ws.send_json({"type": "subscriber_answer", "sdp": answer})
                if not self._first_offer.done():
                    self._first_offer.set_result(message["sdp"])
            elif kind == "publish_answer" and not self._publish_answer.done():
                self._publish_answer.set_result(message["sdp"])
            elif kind == "error":
                error = RuntimeError(f"{self.identity}: {message}")
                for waiting in (self._first_offer, self._publish_answer):
                    if not waiting.done():
                        waiting.set_exception(error)

    def streams_seen(self) -> int:
        return len(self.subscriber.counters.last_seq)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        for peer in (self.subscriber, self.publisher):
            if peer is not None:
                await peer.close()
        if self.ws is not None:
            await self.ws.close()
        for waiting in (self._first_offer, self._publish_answer):
            if waiting.done() and not waiting.cancelled():
                waiting.exception()  # retrieved: no "never retrieved" warning
            waiting.cancel()


async def _add_rooms(
    http: aiohttp.ClientSession,
    url: str,
    first: int,
    count: int,
    room_size: int,
    speakers: int,
    audio_only: bool,
    pacer: Pacer,
    members: list[Member],
) -> None:
    """Join ``count`` more rooms' members, ``JOIN_CONCURRENCY`` at a time; each room's
    speakers first (the listeners' first offer then carries their tracks)."""
    gate = asyncio.Semaphore(JOIN_CONCURRENCY)

    async def join(member: Member, speaker: bool) -> None:
        async with gate:
            await member.join(speaker, audio_only, pacer)

    # a task group: one member that cannot join stops the others (they close with the run)
    async with asyncio.TaskGroup() as group:
        for r in range(first, first + count):
            for m in range(room_size):
                member = Member(http, url, f"room-{r}", f"m{r}-{m}")
                members.append(member)
                group.create_task(join(member, m < speakers))


def _expected_streams(member_index: int, speakers: int, audio_only: bool) -> int:
    per_speaker = 1 if audio_only else 2
    others = speakers - 1 if member_index < speakers else speakers
    return others * per_speaker


async def measure_step(
    http: aiohttp.ClientSession,
    base: str,
    pid: int,
    members: list[Member],
    pacer: Pacer,
    result: RoomsResult,
    duration: float,
) -> None:
    """One window of ``duration`` s over the rooms now running, then the floor (publishers
    paused while it runs); fills ``result``."""
    for member in members:
        member.subscriber.counters.reset()
    before = await scrape(http, base)
    cpu_before, wall_before = cpu_seconds(pid), time.perf_counter()
    client_before = time.process_time()
    drops_before = udp_buffer_drops()
    await asyncio.sleep(duration)
    drops = udp_buffer_drops() - drops_before
    cpu = cpu_seconds(pid) - cpu_before
    wall = time.perf_counter() - wall_before
    client_cpu = time.process_time() - client_before
    after = await scrape(http, base)
    counters = [m.subscriber.counters for m in members]
    got = sum(c.packets for c in counters)
    lost = sum(c.lost for c in counters)
    latencies = [ns / 1e6 for c in counters for ns in c.latencies_ns]
    result.participants = len(members)
    result.relayed_packets = int(after["sent"] - before["sent"])
    result.received_packets = int(after["received"] - before["received"])
    result.cpu_us_per_relayed_packet = cpu * 1e6 / max(1, result.relayed_packets)
    result.server_cpu_percent = 100.0 * cpu / wall
    result.server_cpu_percent_per_room = result.server_cpu_percent / max(1, result.rooms)
    result.relay_forward_p50_us = bucket_quantile(before["buckets"], after["buckets"], 0.5) * 1e6
    result.relay_forward_p99_us = bucket_quantile(before["buckets"], after["buckets"], 0.99) * 1e6
    result.one_way_latency_p50_ms = pct(latencies, 0.5)
    result.one_way_latency_p99_ms = pct(latencies, 0.99)
    result.loss_percent = 100.0 * lost / max(1, got + lost)
    result.udp_buffer_drops = drops
    result.client_cpu_percent = 100.0 * client_cpu / wall
    judge(result)
    pacer.paused = True
    try:
        result.floor_us_per_relayed_packet = await asyncio.to_thread(
            floor.relayed_floor_us_per_packet,
            result.rooms,
            result.room_size,
            result.speakers,
            result.audio_only,
        )
    finally:
        pacer.paused = False
    result.ratio_to_floor = result.cpu_us_per_relayed_packet / max(
        1e-9, result.floor_us_per_relayed_packet
    )


def judge(result: RoomsResult) -> None:
    """Held or not, and what limits the step."""
    limits = []
    if result.loss_percent >= MAX_LOSS_PERCENT:
        limits.append(f"loss {result.loss_percent:.2f} %")
    if not result.relay_forward_p99_us <= MAX_RELAY_P99_US:
        limits.append(f"relay p99 ≤{result.relay_forward_p99_us / 1000:.1f} ms")
    if not result.one_way_latency_p99_ms < MAX_ONE_WAY_P99_MS:
        limits.append(f"one-way p99 {result.one_way_latency_p99_ms:.0f} ms: queues building")
    result.held = not limits
    if result.client_cpu_percent >= CLIENT_BOUND_PERCENT:
        limits.append(f"load client at {result.client_cpu_percent:.0f} % of its core")
    result.limit = "; ".join(limits)


async def run_rooms(
    steps: list[int],
    room_size: int,
    duration: float,
    speakers: int | None = None,
    audio_only: bool = False,
) -> list[RoomsResult]:
    """Rooms added step by step on one server, each step measured; stops after the first
    step that is not held, or that the load client could not drive (it is then the limit)."""
    speakers = room_size if speakers is None else min(speakers, room_size)
    results: list[RoomsResult] = []
    connector = aiohttp.TCPConnector(limit=0)
    pacer = Pacer()
    members: list[Member] = []
    async with server_process() as node, aiohttp.ClientSession(connector=connector) as http:
        pacer.start()
        try:
            running = 0
            for rooms in sorted(steps):
                result = RoomsResult(rooms, room_size, speakers, audio_only)
                try:
                    await _add_rooms(
                        http,
                        node.ws_url,
                        running,
                        rooms - running,
                        room_size,
                        speakers,
                        audio_only,
                        pacer,
                        members,
                    )
                    running = rooms
                    await _wait_for_media(members, speakers, audio_only)
                except Exception as exc:  # joins timing out with the server at a full core
                    while isinstance(exc, ExceptionGroup) and exc.exceptions:
                        exc = exc.exceptions[0]
                    detail = f"{type(exc).__name__}: {exc}".strip().rstrip(":")[:160]
                    result.limit = f"could not join every room ({detail})"
                    print(json.dumps(asdict(result)), flush=True)
                    results.append(result)
                    break
                await asyncio.sleep(1.0)  # settle
                await measure_step(http, node.http_url, node.pid, members, pacer, result, duration)
                await asyncio.sleep(1.0)  # the publishers resume after the floor
                print(json.dumps(asdict(result)), flush=True)
                results.append(result)
                if not result.held or result.client_cpu_percent >= CLIENT_BOUND_PERCENT:
                    break
        finally:
            await pacer.stop()
            for member in members:
                with contextlib.suppress(Exception):
                    await member.close()
    return results


async def _wait_for_media(members: list[Member], speakers: int, audio_only: bool) -> None:
    """Every member receives every stream it should (30 s at most)."""
    room_size = 0
    if members:
        room = members[0].room
        room_size = sum(1 for m in members if m.room == room)
    deadline = time.monotonic() + 30
    while True:
        missing = [
            m
            for i, m in enumerate(members)
            if m.streams_seen() < _expected_streams(i % room_size, speakers, audio_only)
        ]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(missing)} members still miss streams after 30 s")
        await asyncio.sleep(0.1)


def held_rooms(results: list[RoomsResult]) -> RoomsResult | None:
    """The largest step held."""
    held = [r for r in results if r.held]
    return max(held, key=lambda r: r.rooms) if held else None


def describe(results: list[RoomsResult]) -> str:
    """One line: rooms held, the server's CPU there and what that extrapolates to, and
    what limited the next step."""
    if not results:
        return "not measured"
    first = results[0]
    kind = _kind(first)
    best = held_rooms(results)
    if best is None:
        return f"{kind}: no step held ({results[0].limit})"
    per_core = 100.0 / max(1e-9, best.server_cpu_percent_per_room)
    text = (
        f"{kind}: {best.rooms} held (loss {best.loss_percent:.2f} %, relay p99 "
        f"≤{best.relay_forward_p99_us / 1000:.1f} ms, one-way p99 "
        f"{best.one_way_latency_p99_ms:.0f} ms) with the server at "
        f"{best.server_cpu_percent:.0f} % of a core, {best.server_cpu_percent_per_room:.2f} % "
        f"per room: ~{per_core:.0f} rooms per core at that cost; "
        f"{best.cpu_us_per_relayed_packet:.1f} µs per relayed packet, "
        f"{best.ratio_to_floor:.2f}x the floor ({best.floor_us_per_relayed_packet:.1f} µs)"
    )
    after = [r for r in results if r.rooms > best.rooms]
    if after and after[0].limit:
        text += f"; next step ({after[0].rooms}): {after[0].limit}"
    return text


def _kind(result: RoomsResult) -> str:
    if result.audio_only:
        listeners = result.room_size - result.speakers
        return f"voice rooms ({result.speakers} speakers, {listeners} listeners)"
    if result.room_size == 2:
        return "1:1 calls"
    return f"{result.room_size}-party calls"


def table(results: list[RoomsResult]) -> str:
    rows = [
        "| rooms | room | participants | relayed pkts | CPU µs / relayed pkt | floor µs "
        "| x floor | server CPU % (per room) | relay fwd p50 / p99 (µs, bucket) "
        "| one-way p50 / p99 (ms) | loss % | load client CPU % | held |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        held = "yes" if r.held else "no"
        if r.limit:
            held += f" ({r.limit})"
        rows.append(
            f"| {r.rooms} | {_kind(r)} | {r.participants} | {r.relayed_packets} "
            f"| {r.cpu_us_per_relayed_packet:.1f} | {r.floor_us_per_relayed_packet:.1f} "
            f"| {r.ratio_to_floor:.2f} "
            f"| {r.server_cpu_percent:.0f} ({r.server_cpu_percent_per_room:.2f}) "
            f"| ≤{r.relay_forward_p50_us:.0f} / ≤{r.relay_forward_p99_us:.0f} "
            f"| {r.one_way_latency_p50_ms:.2f} / {r.one_way_latency_p99_ms:.2f} "
            f"| {r.loss_percent:.2f} | {r.client_cpu_percent:.0f} | {held} |"
        )
    return "\n".join(rows)


def as_json(results: list[RoomsResult]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]


HEADING = "## Many rooms that all carry media"
# (room size, speakers or None for all, audio only, steps in rooms): 1:1 calls, 6-party
# group calls, voice rooms of 10 speakers and 50 listeners
SCENARIOS: list[tuple[int, int | None, bool, list[int]]] = [
    (2, None, False, [10, 25, 50, 100, 150]),
    (6, None, False, [2, 5, 10, 20]),
    (60, 10, True, [1, 2, 3]),
]


async def run_scenarios(duration: float) -> list[list[RoomsResult]]:
    runs = []
    for room_size, speakers, audio_only, steps in SCENARIOS:
        runs.append(await run_rooms(steps, room_size, duration, speakers, audio_only))
    return runs


def render(runs: list[list[RoomsResult]], date: str, machine: str) -> str:
    lines = [
        f"{HEADING} ({date})",
        "",
        f"Machine: {machine}. `python -m bench.rooms` (part of `make bench`; one scenario:",
        "`eurelay bench --rooms 10 25 50 --room-size 2`, `--room-size 60 --speakers 10",
        "--audio-only` for a voice room): every member of a room publishes ~1 Mbit/s VP8 + an",
        "Opus-sized stream (voice rooms: the Opus-sized stream, 10 speakers, 50 listeners) and",
        "receives everyone else's. Rooms are added in steps on one server process; each step",
        "is measured, then the floor in the same run: a bare uvloop relay (`bench/floor.py`)",
        "fed the same publishers' schedule while the load pauses, doing per packet an",
        "unprotect and per subscriber a header rewrite, protect and `sendto` to sockets another",
        "process reads. *CPU µs / relayed pkt*: all the server's CPU over the window (receiving,",
        "RTCP, STUN included) per copy sent; *x floor*: over the floor's. A step is held at",
        "loss < 0.5 %, relay p99 within the 5 ms bucket and one-way p99 < 200 ms (the relay's",
        "histogram does not see a datagram waiting in a socket buffer for a busy process; the",
        "one-way delay does); the run stops at the first step",
        "not held, or when the load client (one Python process, every member's peers) reaches",
        f"{CLIENT_BOUND_PERCENT:.0f} % of its core: beyond that the load client, not the server,",
        "is measured, and rooms per core is extrapolated from the server's CPU per room at the",
        "largest step held (cost per room falls as load grows, so that is conservative). Both",
        "processes share the machine's two cores with whatever else runs on it.",
        "",
    ]
    lines += [f"- {describe(results)}." for results in runs]
    lines.append("")
    lines.append(table([r for results in runs for r in results]))
    lines += ["", "```json", json.dumps([as_json(results) for results in runs], indent=1), "```"]
    return "\n".join(lines) + "\n"


def main() -> None:
    import argparse
    from datetime import UTC, datetime
    from pathlib import Path

    import uvloop

    from .doc_sections import replace_section
    from .run import machine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per step")
    parser.add_argument("--write", type=Path, help="refresh this section of BENCHMARKS.md")
    args = parser.parse_args()
    runs = uvloop.run(run_scenarios(args.duration))
    text = render(runs, datetime.now(UTC).strftime("%Y-%m-%d"), machine())
    print(text)
    if args.write:
        replace_section(args.write, HEADING, text)


if __name__ == "__main__":
    main()
