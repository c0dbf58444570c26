"""A WebSocket that drops without ``leave`` does not end the session: the client resumes it
on a new one (same participant, peer connections untouched, nobody else told), within
``signaling.resume_timeout``; past it, or with a resume token the server does not hold,
the client joins afresh."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiortc.mediastreams import MediaStreamTrack

from bench.decoded_call import Decoded
from bench.flat_color_track import FlatColorTrack
from bench.loopback_node import LOOPBACK, RunningNode, node_settings, running_node, token
from signaling import protocol as p
from signaling.client import EurelayClient, Reconnected, Reconnecting
from signaling.rtc_session import CLOSE_NOT_HERE
from tests.helpers import eventually

pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]


class CuttingProxy:
    """A TCP proxy whose connections can all be cut at once, as a network break does to a
    WebSocket: both ends see their connection reset."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, up_writer}
        for task in (
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def cut(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[CuttingProxy]:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            self.cut()
            for task in list(self._tasks):
                task.cancel()
            await server.wait_closed()


def _node_address(relay_node: RunningNode) -> tuple[str, int]:
    url = relay_node.server.make_url("/")
    assert url.host is not None and url.port is not None
    return url.host, url.port


async def _decode(track: MediaStreamTrack, decoded: Decoded) -> None:
    while True:
        await track.recv()
        decoded.times.append(time.monotonic())


def _drain(client: EurelayClient) -> list[Any]:
    seen = []
    while not client.events.empty():
        seen.append(client.events.get_nowait())
    return seen


async def test_a_dropped_websocket_resumes_the_same_session(relay_node: RunningNode) -> None:
    async with CuttingProxy(_node_address(relay_node)).running() as proxy:
        host = EurelayClient(
            f"ws://127.0.0.1:{proxy.port}/v1/rtc",
            token("resume", "host"),
            host_addresses=LOOPBACK,
        )
        relay_node.clients.append(host)  # closed by the fixture
        await host.connect()
        viewer = await relay_node.join("resume", "viewer")
        await host.publish(FlatColorTrack(160, 120))
        _, track = await viewer.next_track(15)
        decoded = Decoded()
        decoding = asyncio.create_task(_decode(track, decoded))
        try:
            await eventually(lambda: len(decoded.times) >= 20, 10)
            sid = host.sid
            _drain(viewer)

            cut = time.monotonic()
            proxy.cut()
            resumed = await host.wait_for(p.Resumed, timeout=10)
            assert host.sid == sid and resumed.participant.sid == sid
            assert [o.identity for o in resumed.others] == ["viewer"]
            assert relay_node.node.counters()["sessions_resumed"] == 1
            decoded_then = len(decoded.times)
            await eventually(lambda: len(decoded.times) >= decoded_then + 30, 5)
            gap = decoded.longest_gap(cut - 0.5, time.monotonic())
            assert gap < 0.5, f"the viewer's video stopped for {gap:.2f} s"

            # the session goes on on the new socket: events, and a renegotiation
            guest = await relay_node.join("resume", "guest")
            joined = await host.wait_for(p.ParticipantJoined, timeout=5)
            assert joined.participant.identity == "guest"
            await guest.publish(FlatColorTrack(160, 120))
            await host.next_track(15)

            seen = _drain(viewer)
            assert not [e for e in seen if isinstance(e, p.ParticipantLeft)], seen
            joins = [e.participant.identity for e in seen if isinstance(e, p.ParticipantJoined)]
            assert joins == ["guest"]
            assert sid in relay_node.worker.rooms["resume"].participants
        finally:
            decoding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await decoding


async def test_a_wrong_resume_token_is_refused_and_a_fresh_join_works(
    relay_node: RunningNode,
) -> None:
    client = await relay_node.join("refuse", "alice")
    watcher = await relay_node.join("refuse", "watcher")
    resume = p.Resume(
        type="resume", sid=client.sid, resume_token="not-the-token", token=token("refuse", "alice")
    )
    async with aiohttp.ClientSession() as http, http.ws_connect(relay_node.url) as ws:
        await ws.send_str(resume.model_dump_json())
        error = p.server_message.validate_json((await ws.receive(timeout=5)).data)
        assert isinstance(error, p.Error) and error.code == "resume_failed" and error.fatal
        closing = await ws.receive(timeout=5)
        assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == CLOSE_NOT_HERE
    assert relay_node.node.counters()["resumes_refused"] == 1

    # the client's own fallback: its resume refused, it joins afresh
    old_sid = client.sid
    client.resume_token = "stale"
    await relay_node.node.sessions[client.sid].ws.close()  # no ``closed`` first
    await client.wait_for(Reconnecting, timeout=10)
    reconnected = await client.wait_for(Reconnected, timeout=10)
    assert reconnected.joined is client.joined and client.sid != old_sid
    left = await watcher.wait_for(p.ParticipantLeft, timeout=5)
    assert left.sid == old_sid and left.reason == "duplicate_identity"


async def test_an_unresumed_session_ends_after_the_resume_timeout() -> None:
    async with running_node(node_settings(signaling={"resume_timeout": 0.5})) as node:
        watcher = await node.join("grace", "watcher")
        gone = node.client(token("grace", "gone"), reconnect=False)
        await gone.connect()
        sid = gone.sid
        session = node.node.sessions[sid]
        await session.ws.close()  # dropped without leave
        await gone.wait_for(p.Closed, timeout=5)
        room = node.worker.rooms["grace"]
        assert sid in room.participants  # kept for a resume ...
        started = time.monotonic()
        await eventually(lambda: sid not in room.participants, 5)  # ... then ended
        assert time.monotonic() - started < 2.0
        left = await watcher.wait_for(p.ParticipantLeft, timeout=5)
        assert left.sid == sid and left.reason == "disconnected"
        assert sid not in node.node.sessions
