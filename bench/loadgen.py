"""The load generator behind ``eurelay bench``: N publishers and M subscribers in one room.

The server runs as its own process (``eurelay serve``, uvloop) so its CPU time can be read
from /proc. The load client speaks the real ``/v1/rtc`` protocol; its peers
(``bench/raw_peer.py``) do STUN and DTLS-SRTP but never decode: publishers send ~1 Mbit/s
of VP8-framed RTP (plus an Opus-sized audio stream) with a send timestamp in every payload,
subscribers count packets, check sequence continuity per SSRC and read that timestamp.

Measured: join time (WebSocket connect to the first RTP packet, and to the first video
packet), loss, one-way latency, server CPU per received packet (publishers alone) and per
forwarded packet, server memory per subscriber, and the Python floor (``bench/floor.py``)
for the same number of subscribers in the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from signaling.tokens import Grant, mint

from . import floor
from .node_process import NodeProcess, spawn_node
from .raw_peer import AudioSender, RawPeer, VideoSender

KEY, SECRET = "bench", "bench-secret-" + "0" * 32
CLK_TCK = os.sysconf("SC_CLK_TCK")
PUBLISHER_ONLY_SECONDS = 2.0


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
    join_time_p50_ms: float  # WebSocket connect to the first RTP packet (any kind)
    join_time_p95_ms: float
    server_cpu_percent: float
    publishers: int = 1
    join_video_p50_ms: float = 0.0  # ... to the first video packet (a keyframe)
    join_video_p95_ms: float = 0.0
    cpu_us_per_received_packet: float = 0.0  # publishers alone, above the idle server
    server_kib_per_subscriber: float = 0.0
    floor_us_per_packet: float = 0.0  # paced like a publisher, sockets read by another process
    ratio_to_floor: float = 0.0
    burst_floor_us_per_packet: float = 0.0  # back to back, caches hot, self-drained sockets
    received_ratio_to_floor: float = 0.0
    # a bare uvloop receiver fed the publishers' packet rate, measured in the same run
    receive_floor_us_per_packet: float = 0.0
    received_ratio_to_receive_floor: float = 0.0
    server_idle_cpu_percent: float = 0.0  # before the publishers join: idle rooms, timers
    udp_buffer_drops: int = 0  # in the window: datagrams dropped at full socket buffers
    client_cpu_percent: float = 0.0  # this load client's own CPU: near 100, it is the limit
    idle_rooms: int = 0  # other rooms, each with one participant that sends nothing
    # Keyframe requests (PLI/FIR) a publisher received while the subscribers joined (first
    # join started to last first video packet): the most of any publisher, the join phase's
    # length, and the most that publisher saw in any one second of it.
    join_keyframe_requests: int = 0
    join_seconds: float = 0.0
    join_keyframe_requests_max_per_second: int = 0
    not_held: str = ""  # why the scenario could not run to its end on this machine


@contextlib.asynccontextmanager
async def server_process(rtc: str = "") -> AsyncIterator[NodeProcess]:
    """A fresh ``eurelay serve``; ``rtc``: its rtc settings as a YAML flow mapping's body
    (``"keyframe_replay_age: 0"``), to compare a setting in one run."""
    config = Path(tempfile.mkdtemp()) / "bench.yaml"
    config.write_text(
        f"keys: {{{KEY}: {SECRET}}}\nrooms: {{max_participants: 0}}\n"
        "capacity: {max_participants: 0}\nsignaling: {messages_per_second: 1000}\n"
        + (f"rtc: {{{rtc}}}\n" if rtc else "")
    )
    async with spawn_node(config, "--log-level", "warning") as node:
        yield node


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def udp_buffer_drops() -> int:
    """Datagrams this network namespace dropped for full socket buffers (/proc/net/snmp):
    where loss happens when a process falls behind (the bench runs in its own namespace)."""
    try:
        lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()]
    except OSError:
        return 0
    names, values = [row for row in lines if row and row[0] == "Udp:"][:2]
    fields = dict(zip(names[1:], values[1:], strict=True))
    return int(fields.get("RcvbufErrors", 0)) + int(fields.get("SndbufErrors", 0))


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
    values: dict[str, Any] = {"buckets": {}, "sent": 0.0, "received": 0.0}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "eurelay_relay_rtp_sent_packets_total":
                values["sent"] = s.value
            elif s.name == "eurelay_relay_rtp_received_packets_total":
                values["received"] = s.value
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


def most_in_window(times: list[float], window: float = 1.0) -> int:
    """The most of ``times`` that fall in any one ``window`` (sliding)."""
    ordered = sorted(times)
    most = 0
    first = 0
    for last, at in enumerate(ordered):
        while at - ordered[first] >= window:
            first += 1
        most = max(most, last - first + 1)
    return most


def join_keyframe_requests(
    publishers: list[RawPeer], started: float, ended: float
) -> tuple[int, int]:
    """(most requests any publisher got in [started, ended], most in any second of it)."""
    counts = [0]
    peaks = [0]
    for peer in publishers:
        during = [at for at in peer.keyframe_requests_at if started <= at <= ended]
        counts.append(len(during))
        peaks.append(most_in_window(during))
    return max(counts), max(peaks)


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
        self._reader: asyncio.Task[None] | None = None

    async def join(
        self, room: str, identity: str, publish: bool, rtts: dict[str, float] | None = None
    ) -> None:
        grant = Grant(room=room, can_publish=publish, can_subscribe=not publish)
        self.ws = await self.http.ws_connect(self.url)
        join: dict[str, Any] = {"type": "join", "token": mint(KEY, SECRET, identity, grant)}
        if rtts:
            join["rtts"] = rtts  # places it in that region (cascading benchmarks)
        await self.ws.send_json(join)

    async def send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send_json(message)

    async def expect(self, kind: str) -> dict[str, Any]:
        assert self.ws is not None
        while True:
            message: dict[str, Any] = json.loads((await self.ws.receive(timeout=30)).data)
            if message["type"] == kind:
                return message
            if message["type"] == "error":
                raise RuntimeError(message)

    def keep_reading(self, answering: RawPeer | None = None) -> None:
        """Read what the server sends from now on: reading is what answers the server's
        WebSocket pings, and a client that never pongs is disconnected. A subscriber
        (``answering``) answers offers that add tracks (a track bridged from another node
        after it joined); everything else is dropped."""
        self._reader = asyncio.create_task(self._read_all(answering))

    async def _read_all(self, answering: RawPeer | None) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if answering is None or msg.type != aiohttp.WSMsgType.TEXT:
                continue
            message = json.loads(msg.data)
            if message.get("type") == "subscriber_offer":
                answer = answering.subscriber_answer(message["sdp"])
                await self.ws.send_json({"type": "subscriber_answer", "sdp": answer})

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self.ws is not None:
            await self.ws.close()


@dataclass
class _Publisher:
    sig: Signaling
    peer: RawPeer
    senders: list[VideoSender | AudioSender]


async def _publish(
    http: aiohttp.ClientSession,
    url: str,
    room: str,
    i: int,
    rtts: dict[str, float] | None = None,
) -> _Publisher:
    sig = Signaling(http, url)
    await sig.join(room, f"publisher{i}", publish=True, rtts=rtts)
    peer = RawPeer()
    await peer.open()
    video_ssrc, audio_ssrc = secrets.randbits(32), secrets.randbits(32)
    await sig.send({"type": "publish_offer", "sdp": peer.publisher_offer(video_ssrc, audio_ssrc)})
    answer = await sig.expect("publish_answer")
    await peer.connect(answer["sdp"])
    sig.keep_reading()
    senders: list[VideoSender | AudioSender] = [
        VideoSender(peer, video_ssrc),
        AudioSender(peer, audio_ssrc),
    ]
    for sender in senders:
        sender.start()
    return _Publisher(sig, peer, senders)


async def _subscribe(
    http: aiohttp.ClientSession,
    url: str,
    room: str,
    i: int,
    rtts: dict[str, float] | None = None,
) -> tuple[Signaling, RawPeer, float, float]:
    """Join as a subscriber; returns when its first video packet arrived, with join times."""
    started = time.perf_counter()
    sig = Signaling(http, url)
    await sig.join(room, f"viewer{i}", publish=False, rtts=rtts)
    peer = RawPeer()
    await peer.open()
    offer = await sig.expect("subscriber_offer")
    await sig.send({"type": "subscriber_answer", "sdp": peer.subscriber_answer(offer["sdp"])})
    await peer.connect(offer["sdp"])
    sig.keep_reading(answering=peer)
    try:
        await asyncio.wait_for(peer.first_video.wait(), 30)
    except TimeoutError:
        c = peer.counters
        raise RuntimeError(
            f"viewer{i}: no video within 30 s ({c.packets} packets, first at "
            f"{c.first_packet_at}, connected {peer.connected.is_set()})"
        ) from None
    first = peer.counters.first_packet_at
    video = peer.counters.first_video_at
    assert first is not None and video is not None
    return sig, peer, (first - started) * 1000, (video - started) * 1000


async def _idle_room(http: aiohttp.ClientSession, url: str, i: int) -> Signaling:
    """A room whose one participant joined and sends nothing (its WebSocket stays open)."""
    sig = Signaling(http, url)
    await sig.join(f"idle-{i}", f"idle{i}", publish=False)
    await sig.expect("joined")
    sig.keep_reading()
    return sig


async def run_scenario(
    subscribers: int,
    duration: float,
    publishers: int = 1,
    concurrency: int = 10,
    idle_rooms: int = 0,
    rtc: str = "",
) -> Result:
    """One room: ``publishers`` each sending video + audio, ``subscribers`` receiving all;
    ``idle_rooms`` other rooms hold one silent participant each; ``rtc``: server settings
    (``server_process``).

    Subscribers join ``concurrency`` at a time (each waits for its first video packet)."""
    # each participant holds its WebSocket open: no cap on connections (aiohttp: 100)
    connector = aiohttp.TCPConnector(limit=0)
    async with server_process(rtc) as node, aiohttp.ClientSession(connector=connector) as http:
        pid, url, base = node.pid, node.ws_url, node.http_url
        room = "bench-" + secrets.token_hex(3)
        idle = [await _idle_room(http, url, i) for i in range(idle_rooms)]
        # The server idle, then with the publishers alone: the difference is what
        # receiving costs (timers and heartbeats run either way).
        idle_before = cpu_seconds(pid)
        await asyncio.sleep(PUBLISHER_ONLY_SECONDS)
        cpu_idle = cpu_seconds(pid) - idle_before
        pubs = [await _publish(http, url, room, i) for i in range(publishers)]
        await asyncio.sleep(0.5)
        before = await scrape(http, base)
        cpu_before = cpu_seconds(pid)
        await asyncio.sleep(PUBLISHER_ONLY_SECONDS)
        cpu_received = max(0.0, cpu_seconds(pid) - cpu_before - cpu_idle)
        received = (await scrape(http, base))["received"] - before["received"]
        # a bare receiver fed the same publishers' schedule, while the same load runs
        receive_floor = await asyncio.to_thread(floor.receive_floor_us_per_packet, publishers)

        rss_before = rss_kib(pid)
        gate = asyncio.Semaphore(concurrency)

        async def admitted(i: int) -> tuple[Signaling, RawPeer, float, float]:
            async with gate:
                return await _subscribe(http, url, room, i)

        # a task group: if one subscriber cannot join, the others stop with it, and those
        # that had joined close (the next scenario must not share the machine with them)
        joining: list[asyncio.Task[tuple[Signaling, RawPeer, float, float]]] = []
        joins_started = time.perf_counter()
        try:
            async with asyncio.TaskGroup() as group:
                joining = [group.create_task(admitted(i)) for i in range(subscribers)]
        except BaseException:
            finished = [t for t in joining if t.done() and not t.cancelled()]
            for sig, peer, _, _ in (t.result() for t in finished if t.exception() is None):
                await peer.close()
                await sig.close()
            for pub in pubs:
                for sender in pub.senders:
                    await sender.stop()
                await pub.peer.close()
                await pub.sig.close()
            for sig in idle:
                await sig.close()
            raise
        joined = [task.result() for task in joining]
        peers = [peer for _, peer, _, _ in joined]
        joins_ended = max((p.counters.first_video_at or joins_started for p in peers), default=0.0)
        join_requests, join_requests_peak = join_keyframe_requests(
            [p.peer for p in pubs], joins_started, joins_ended
        )

        await asyncio.sleep(1.0)  # settle
        rss_after = rss_kib(pid)
        for peer in peers:
            peer.counters.reset()
        before = await scrape(http, base)
        cpu_before, wall_before = cpu_seconds(pid), time.perf_counter()
        client_before = time.process_time()
        drops_before = udp_buffer_drops()
        await asyncio.sleep(duration)
        drops = udp_buffer_drops() - drops_before
        cpu_after, wall_after = cpu_seconds(pid), time.perf_counter()
        client_cpu = time.process_time() - client_before
        after = await scrape(http, base)

        for pub in pubs:
            for sender in pub.senders:
                await sender.stop()
        latencies = [ns / 1e6 for p in peers for ns in p.counters.latencies_ns]
        got = sum(p.counters.packets for p in peers)
        lost = sum(p.counters.lost for p in peers)
        forwarded = int(after["sent"] - before["sent"])
        cpu = cpu_after - cpu_before
        for peer in [*peers, *(p.peer for p in pubs)]:
            await peer.close()
        for sig in [*(s for s, _, _, _ in joined), *(p.sig for p in pubs), *idle]:
            await sig.close()
        join_any = [ms for _, _, ms, _ in joined]
        join_video = [ms for _, _, _, ms in joined]
        return Result(
            subscribers=subscribers,
            publishers=publishers,
            idle_rooms=idle_rooms,
            forwarded_packets=forwarded,
            cpu_us_per_forwarded_packet=cpu * 1e6 / max(1, forwarded),
            cpu_us_per_received_packet=cpu_received * 1e6 / max(1, received),
            receive_floor_us_per_packet=receive_floor,
            server_idle_cpu_percent=100.0 * cpu_idle / PUBLISHER_ONLY_SECONDS,
            udp_buffer_drops=drops,
            relay_forward_p50_us=bucket_quantile(before["buckets"], after["buckets"], 0.5) * 1e6,
            relay_forward_p99_us=bucket_quantile(before["buckets"], after["buckets"], 0.99) * 1e6,
            one_way_latency_p50_ms=pct(latencies, 0.5),
            one_way_latency_p99_ms=pct(latencies, 0.99),
            loss_percent=100.0 * lost / max(1, got + lost),
            join_time_p50_ms=pct(join_any, 0.5),
            join_time_p95_ms=pct(join_any, 0.95),
            join_video_p50_ms=pct(join_video, 0.5),
            join_video_p95_ms=pct(join_video, 0.95),
            server_cpu_percent=100.0 * cpu / (wall_after - wall_before),
            client_cpu_percent=100.0 * client_cpu / (wall_after - wall_before),
            server_kib_per_subscriber=max(0, rss_after - rss_before) / max(1, subscribers),
            join_keyframe_requests=join_requests,
            join_seconds=max(0.0, joins_ended - joins_started),
            join_keyframe_requests_max_per_second=join_requests_peak,
        )


def with_floor(result: Result) -> Result:
    """Add the Python floor for the same number of subscribers, measured now."""
    subscribers = max(1, result.subscribers)
    result.floor_us_per_packet = floor.paced_floor_us_per_packet(subscribers, result.publishers)
    result.burst_floor_us_per_packet = floor.floor_us_per_packet(subscribers)
    result.ratio_to_floor = result.cpu_us_per_forwarded_packet / result.floor_us_per_packet
    result.received_ratio_to_floor = result.cpu_us_per_received_packet / result.floor_us_per_packet
    result.received_ratio_to_receive_floor = result.cpu_us_per_received_packet / max(
        1e-9, result.receive_floor_us_per_packet
    )
    return result


def table(results: list[Result]) -> str:
    rows = [
        "| publishers | subscribers | idle rooms | forwarded pkts | CPU µs / fwd pkt "
        "| floor µs | x floor "
        "| CPU µs / received pkt (x floor) | receive floor µs (x) "
        "| relay fwd p50 / p99 (µs, bucket) "
        "| one-way p50 / p99 (ms) | loss % | join p50 / p95 (ms) | join to video p50 / p95 (ms) "
        "| keyframe requests in joins (over s; most in 1 s) "
        "| server CPU % | server KiB / subscriber | load client CPU % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.not_held:
            gap = "| " * 14
            rows.append(
                f"| {r.publishers} | {r.subscribers} | {r.idle_rooms} "
                f"| not held here: {r.not_held} {gap}|"
            )
            continue
        rows.append(
            f"| {r.publishers} | {r.subscribers} | {r.idle_rooms} | {r.forwarded_packets} "
            f"| {r.cpu_us_per_forwarded_packet:.1f} | {r.floor_us_per_packet:.1f} "
            f"| {r.ratio_to_floor:.2f} "
            f"| {r.cpu_us_per_received_packet:.1f} ({r.received_ratio_to_floor:.1f}) "
            f"| {r.receive_floor_us_per_packet:.1f} ({r.received_ratio_to_receive_floor:.2f}) "
            f"| ≤{r.relay_forward_p50_us:.0f} / ≤{r.relay_forward_p99_us:.0f} "
            f"| {r.one_way_latency_p50_ms:.2f} / {r.one_way_latency_p99_ms:.2f} "
            f"| {r.loss_percent:.2f} | {r.join_time_p50_ms:.0f} / {r.join_time_p95_ms:.0f} "
            f"| {r.join_video_p50_ms:.0f} / {r.join_video_p95_ms:.0f} "
            f"| {r.join_keyframe_requests} (over {r.join_seconds:.1f} s; "
            f"{r.join_keyframe_requests_max_per_second}) "
            f"| {r.server_cpu_percent:.0f} | {r.server_kib_per_subscriber:.0f} "
            f"| {r.client_cpu_percent:.0f} |"
        )
    return "\n".join(rows)


def as_json(results: list[Result]) -> str:
    return json.dumps([asdict(r) for r in results], indent=1)


async def run_all(
    subscriber_counts: list[int],
    publishers: int,
    duration: float,
    concurrency: int,
    idle_rooms: int = 0,
) -> list[Result]:
    results = []
    for count in subscriber_counts:
        try:
            result = with_floor(
                await run_scenario(count, duration, publishers, concurrency, idle_rooms)
            )
        except Exception as exc:  # e.g. joins timing out with the server at a full core
            while isinstance(exc, ExceptionGroup) and exc.exceptions:  # the task group's
                exc = exc.exceptions[0]
            detail = f"{type(exc).__name__}: {exc}".strip().rstrip(":")[:160]
            reason = f"a subscriber could not join ({detail})"
            result = Result(count, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, publishers=publishers)
            result.idle_rooms, result.not_held = idle_rooms, reason
        print(json.dumps(asdict(result)), flush=True)
        results.append(result)
    return results


def held(results: list[Result]) -> list[Result]:
    """The scenarios that ran to their end (the others have no numbers)."""
    return [r for r in results if not r.not_held]
