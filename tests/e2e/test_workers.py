"""``eurelay serve --workers 2`` as one process on a real redis-server: two nodes of one host,
a room that fills one spilling to the other over a bridge, a dead worker coming back, and
SIGTERM stopping every worker, none left behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection

from bench.flat_color_track import FlatColorTrack
from bench.loopback_node import token
from bench.node_process import LISTENING, parse_listening
from bench.redis_server import redis_server
from signaling.workers import READY

from ..cluster_nodes import ROOT, TTL, NodeSpec, node_config
from ..helpers import eventually, eventually_async, require_binary
from ..interop.http_sessions import frame_of_size, whep_view, whip_publish

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]
ADMIN = token("", "ops", admin=True, publish=False)


@pytest.fixture(autouse=True)
def _needs_redis() -> None:
    if require_binary("redis-server") is None:
        pytest.skip("redis-server is not installed (make test installs it)")


def children_of(ppid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == ppid:
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Running (a zombie is not: it only waits for its parent to read its exit)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@dataclass
class Supervised:
    """The ``eurelay serve --workers N`` process, what it printed, and every worker it ran."""

    process: asyncio.subprocess.Process
    listening: list[str] = field(default_factory=list)  # http addresses, in printed order
    ready_pids: list[int] = field(default_factory=list)  # from the ready line, worker order
    seen: set[int] = field(default_factory=set)  # every worker pid ever seen

    def scan(self) -> None:
        if self.process.returncode is None:
            self.seen |= children_of(self.process.pid)

    async def read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            if LISTENING in line:
                self.listening.append(parse_listening(line)[0])
            elif line.startswith(READY.encode()):
                pids = line.decode().split("pids=", 1)[1].split()[0]
                self.ready_pids = [int(pid) for pid in pids.split(",")]
                self.seen.update(self.ready_pids)
            self.scan()


@contextlib.asynccontextmanager
async def serve_workers(config: Path, count: int) -> AsyncIterator[Supervised]:
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "signaling.cli", "serve", "--config", str(config)],
        *["--workers", str(count), "--log-level", "warning"],
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )
    supervised = Supervised(process)
    reader = asyncio.ensure_future(supervised.read())
    try:
        await eventually(lambda: bool(supervised.ready_pids) or reader.done(), timeout=40)
        assert supervised.ready_pids, f"exited with {process.returncode} before its workers"
        yield supervised
    finally:
        supervised.scan()
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()
        reader.cancel()
        for pid in supervised.seen:  # the test fails on a leak; it does not leave it running
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


async def admin_get(base_url: str, path: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(base_url + path, headers={"Authorization": f"Bearer {ADMIN}"}) as resp,
    ):
        return resp.status, await resp.json()


async def registered(base_url: str, count: int) -> dict[str, dict[str, Any]]:
    """The node records ``base_url`` lists, once it lists ``count`` of them."""
    nodes: dict[str, dict[str, Any]] = {}

    async def listed() -> bool:
        nodes.clear()
        status, body = await admin_get(base_url, "/v1/nodes")
        nodes.update({n["id"]: n for n in body["nodes"]} if status == 200 else {})
        return len(nodes) == count

    await eventually_async(listed, timeout=15, interval=0.1)
    return dict(nodes)


async def connected_here(base_url: str, node_id: str, room: str) -> set[str]:
    status, body = await admin_get(base_url, f"/v1/rooms/{room}/participants")
    assert status == 200, body
    return {p["identity"] for p in body["participants"] if p["node"] == node_id}


async def stop(supervised: Supervised) -> None:
    """SIGTERM: every worker drains and exits, then the supervisor, with 0."""
    supervised.scan()
    supervised.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(supervised.process.wait(), 40) == 0
    assert [pid for pid in supervised.seen if alive(pid)] == []


def config(tmp_path: Path, redis_url: str, **extra: Any) -> Path:
    extra = {"http": {"port": 0}, "rtc": {"udp_port": 0}, "drain_grace": 5, **extra}
    return node_config(NodeSpec("host", "eu-central", "de", extra), redis_url, tmp_path)


async def test_two_workers_share_a_room_across_their_bridge(tmp_path: Path) -> None:
    async with (
        redis_server() as redis,
        serve_workers(config(tmp_path, redis.url, capacity={"max_participants": 3}), 2) as sup,
    ):
        assert len(sup.listening) == 2 and len(set(sup.ready_pids)) == 2
        nodes = await registered("http://" + sup.listening[0], 2)
        assert set(nodes) == {"host-w1", "host-w2"}
        assert {n["region"] for n in nodes.values()} == {"eu-central"}
        urls = {name: node["signaling_url"] for name, node in nodes.items()}
        assert sorted(urls.values()) == sorted("http://" + a for a in sup.listening)
        first = urls["host-w1"]

        pcs: list[RTCPeerConnection] = []
        try:
            publisher, _ = await whip_publish(
                first, "shop", token("shop", "host"), FlatColorTrack(160, 120)
            )
            pcs.append(publisher)
            viewers = []
            for i in range(4):  # all asked of worker 1; 3 per node at most
                viewer, tracks, _ = await whep_view(
                    first, "/whep/shop", token("shop", f"viewer-{i}", publish=False)
                )
                pcs.append(viewer)
                viewers.append(tracks)
            here = {name: await connected_here(url, name, "shop") for name, url in urls.items()}
            origin = next(name for name, who in here.items() if "host" in who)
            other = next(name for name in urls if name != origin)
            # The publisher's worker hosts the room until it is full; then the sibling takes
            # the rest, and its viewers get the publisher's media over a bridge.
            assert len(here[origin]) == 3 and len(here[other]) == 2
            assert here[origin] | here[other] == {"host"} | {f"viewer-{i}" for i in range(4)}
            for tracks in viewers:
                await frame_of_size(tracks["video"], (160, 120), timeout=30)
        finally:
            for pc in pcs:
                with contextlib.suppress(Exception):
                    await pc.close()
        await stop(sup)


async def test_workers_do_not_outlive_a_killed_supervisor(tmp_path: Path) -> None:
    async with redis_server() as redis, serve_workers(config(tmp_path, redis.url), 2) as sup:
        os.kill(sup.process.pid, signal.SIGKILL)
        assert await asyncio.wait_for(sup.process.wait(), 10) == -signal.SIGKILL
        # each worker got SIGTERM from the kernel when its parent died, and drained (empty)
        await eventually(lambda: not any(alive(pid) for pid in sup.seen), timeout=15)


async def test_a_dead_worker_comes_back_once_the_cluster_saw_it_leave(tmp_path: Path) -> None:
    async with redis_server() as redis, serve_workers(config(tmp_path, redis.url), 2) as sup:
        nodes = await registered("http://" + sup.listening[0], 2)
        survivor = nodes["host-w1"]["signaling_url"]
        killed_pid = sup.ready_pids[1]  # worker 2
        killed = time.monotonic()
        os.kill(killed_pid, signal.SIGKILL)
        await eventually(lambda: len(sup.listening) == 3, timeout=30)
        # not before its record expired: the other nodes had seen it leave
        assert time.monotonic() - killed >= TTL
        again = "http://" + sup.listening[2]

        async def reregistered() -> bool:
            nodes = await registered(survivor, 2)
            return bool(nodes["host-w2"]["signaling_url"] == again)

        await eventually_async(reregistered, timeout=10)
        running = children_of(sup.process.pid)
        assert sup.ready_pids[0] in running and killed_pid not in running and len(running) == 2
        await stop(sup)
