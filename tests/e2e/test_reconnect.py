"""Failures (issue 13): a client whose node dies, or whose socket drops, joins again through
placement by itself and resumes; a publisher that comes back elsewhere publishes again, and
viewers on every node get its new tracks without rejoining."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiortc import MediaStreamTrack

from bench.flat_color_track import FlatColorTrack
from bench.loopback_node import RunningNode, token
from bench.redis_server import redis_server
from signaling import protocol as p
from signaling.client import HEARTBEAT, EurelayClient, Reconnected, Reconnecting

from ..cluster_nodes import NodeSpec, cluster
from ..helpers import require_binary
from ..interop.http_sessions import frame_of_size
from .test_cascade import THREE_REGIONS, three_regions, ws_client
from .test_cluster import wait_nodes

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

SIZE = (160, 120)


@pytest.fixture
def _needs_redis() -> None:
    if require_binary("redis-server") is None:
        pytest.skip("redis-server is not installed (make test installs it)")


async def events_until(
    client: EurelayClient,
    *wanted: Callable[[Any], bool],
    timeout: float = 15,
    seen: list[Any] | None = None,
) -> list[Any]:
    """Read ``client.events`` until each of ``wanted`` matched an event; the first match of
    each, in ``wanted``'s order. Every event read is appended to ``seen``."""
    found: list[Any] = [None] * len(wanted)

    async def scan() -> None:
        while any(f is None for f in found):
            event = await client.events.get()
            if seen is not None:
                seen.append(event)
            for i, check in enumerate(wanted):
                if found[i] is None and check(event):
                    found[i] = event

    await asyncio.wait_for(scan(), timeout)
    return found


def left(identity: str, reason: str | None = None) -> Callable[[Any], bool]:
    return lambda e: (
        isinstance(e, p.ParticipantLeft)
        and e.identity == identity
        and (reason is None or e.reason == reason)
    )


def joined_as(identity: str) -> Callable[[Any], bool]:
    return lambda e: isinstance(e, p.ParticipantJoined) and e.participant.identity == identity


async def decoding_video(client: EurelayClient, timeout: float = 20) -> tuple[str, Any]:
    """The next video track on ``client.tracks`` once it decodes a frame of ``SIZE``."""
    while True:
        sid, track = await client.next_track(timeout)
        if track.kind == "video":
            await frame_of_size(track, SIZE, timeout)
            return sid, track


async def ended(track: MediaStreamTrack, timeout: float = 10) -> None:
    """A remote track of a closed connection ends."""

    async def drain() -> None:
        while track.readyState == "live":
            try:
                await track.recv()
            except Exception:
                return

    await asyncio.wait_for(drain(), timeout)


# one node, the socket dropped by the server ------------------------------------------------


async def test_a_dropped_socket_rejoins_and_publishes_the_same_tracks_again(
    relay_node: RunningNode,
) -> None:
    """The server drops the publisher's WebSocket without a word, then shuts the viewer's
    session down: each joins again by itself; the viewer decodes the new track."""
    camera = FlatColorTrack(*SIZE)
    host = await relay_node.join("drop", "host")
    viewer = await relay_node.join("drop", "viewer")
    await host.publish(camera, names=["camera"])
    old_track_sid = next(iter(host.published.values()))
    old_sid = host.sid
    sid, _ = await decoding_video(viewer)
    assert sid == old_track_sid

    # A session the node did not keep (its resume refused, as past signaling.resume_timeout):
    # the client joins again. (tests/e2e/test_resume.py: one it kept is resumed.)
    host.resume_token = "stale"
    await relay_node.node.sessions[host.sid].ws.close()  # no ``closed`` message first
    reconnecting, reconnected = await events_until(
        host,
        lambda e: isinstance(e, Reconnecting),
        lambda e: isinstance(e, Reconnected),
    )
    assert reconnecting.reason == "connection_lost"
    assert reconnected.joined is host.joined and host.sid != old_sid
    new_track_sid = next(iter(host.published.values()))
    assert new_track_sid != old_track_sid
    room = relay_node.worker.rooms["drop"]
    assert [t.name for t in room.tracks()] == ["camera"]  # the same name, published once

    sid, old_video = await decoding_video(viewer)  # the same camera object, sent again
    assert sid == new_track_sid
    assert camera.readyState == "live"

    # ``server_shutdown`` is worth joining again too; the viewer's data channels are new.
    before = viewer.reliable
    viewer_sid = viewer.sid
    relay_node.node.sessions[viewer.sid].close("server_shutdown")
    reconnecting, _ = await events_until(
        viewer,
        lambda e: isinstance(e, Reconnecting),
        lambda e: isinstance(e, Reconnected),
    )
    assert reconnecting.reason == "server_shutdown"
    assert viewer.sid != viewer_sid and viewer.reliable is not before
    sid, _ = await decoding_video(viewer)
    assert sid == new_track_sid
    await ended(old_video)  # the old subscriber connection is closed
    await viewer.wait_data_channels()
    await host.wait_data_channels()
    viewer.send_data("back", topic="chat")

    async def back() -> dict[str, Any]:
        while True:
            message = await host.data.get()
            if message.get("payload") == "back":
                return message

    assert (await asyncio.wait_for(back(), 10))["from_identity"] == "viewer"


async def test_a_closed_with_another_reason_or_a_leave_never_reconnects(
    relay_node: RunningNode,
) -> None:
    """``Closed`` is the client's last event: once it is out, no reconnect follows."""
    watcher = await relay_node.join("final", "watcher")
    removed = await relay_node.join("final", "removed")
    relay_node.node.sessions[removed.sid].close("removed")
    seen: list[Any] = []
    (closed,) = await events_until(removed, lambda e: isinstance(e, p.Closed), seen=seen)
    assert closed.reason == "removed"
    quitter = await relay_node.join("final", "quitter")
    await quitter.leave()
    (closed,) = await events_until(quitter, lambda e: isinstance(e, p.Closed), seen=seen)
    assert not [e for e in seen if isinstance(e, Reconnecting | Reconnected)]
    for identity in ("removed", "quitter"):
        await events_until(watcher, left(identity))
    assert [x.identity for x in relay_node.worker.rooms["final"].participants.values()] == [
        "watcher"
    ]


async def test_without_reconnect_a_lost_socket_closes(relay_node: RunningNode) -> None:
    client = relay_node.client(token("plain", "solo"), reconnect=False)
    await client.connect()
    await relay_node.node.sessions[client.sid].ws.close()
    closed = await client.wait_for(p.Closed, timeout=5)
    assert closed.reason == "connection_closed"


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_client_gives_up_after_its_bound_and_close_stops_a_rejoin(
    relay_node: RunningNode,
) -> None:
    nowhere = f"ws://127.0.0.1:{unused_port()}/v1/rtc"
    patient = relay_node.client(token("lost", "patient"), reconnect_timeout=1.0)
    await patient.connect()
    patient.url = patient.entry_url = nowhere  # as if its node and the entry went down
    await relay_node.node.sessions[patient.sid].ws.close()
    started = asyncio.get_running_loop().time()
    seen: list[Any] = []
    (closed,) = await events_until(patient, lambda e: isinstance(e, p.Closed), seen=seen)
    assert closed.reason == "connection_closed"
    assert isinstance(seen[0], Reconnecting) and not any(isinstance(e, Reconnected) for e in seen)
    assert asyncio.get_running_loop().time() - started < 5

    eager = relay_node.client(token("lost", "eager"))
    await eager.connect()
    eager.url = eager.entry_url = nowhere
    await relay_node.node.sessions[eager.sid].ws.close()
    await events_until(eager, lambda e: isinstance(e, Reconnecting))
    await asyncio.wait_for(eager.close(), 1.0)  # mid-backoff: stops at once
    (closed,) = await events_until(eager, lambda e: isinstance(e, p.Closed))


# nodes dying ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("_needs_redis")
async def test_a_viewers_node_dies_and_the_viewer_resumes_elsewhere(tmp_path: Path) -> None:
    async with three_regions(tmp_path) as nodes:
        entry = nodes["central-1"]  # stays up: the viewer's one signaling URL
        host = await ws_client(entry, "watch", "host", "eu-central")
        viewer = await ws_client(entry, "watch", "viewer", "eu-west")
        try:
            assert host.joined is not None and host.joined.node_id == "central-1"
            assert viewer.joined is not None and viewer.joined.node_id == "west-1"
            old_sid = viewer.sid
            await host.publish(FlatColorTrack(*SIZE))
            await decoding_video(viewer)

            os.kill(nodes["west-1"].pid, signal.SIGKILL)
            started = asyncio.get_running_loop().time()
            reconnecting, reconnected = await events_until(
                viewer,
                lambda e: isinstance(e, Reconnecting),
                lambda e: isinstance(e, Reconnected),
            )
            assert reconnecting.reason == "connection_lost"
            assert reconnected.joined.node_id in ("central-1", "north-1")
            assert viewer.sid != old_sid
            await decoding_video(viewer)
            assert asyncio.get_running_loop().time() - started < 10

            # The publisher saw the viewer's session on the dead node leave, and come back.
            gone, back = await events_until(
                host,
                left("viewer", "node_lost"),
                lambda e: joined_as("viewer")(e) and e.participant.sid != old_sid,
            )
            assert gone.sid == old_sid and back.participant.sid == viewer.sid
        finally:
            await viewer.close()
            await host.close()


@pytest.mark.usefixtures("_needs_redis")
async def test_a_viewer_whose_node_goes_silent_notices_and_resumes_elsewhere(
    tmp_path: Path,
) -> None:
    """SIGSTOP: the node's sockets stay open but nothing answers, as when the network breaks
    without a reset. The client's WebSocket ping finds out (10 s, then 5 s for the pong)."""
    async with three_regions(tmp_path) as nodes:
        entry = nodes["central-1"]
        host = await ws_client(entry, "quiet", "host", "eu-central")
        viewer = await ws_client(entry, "quiet", "viewer", "eu-west")
        try:
            assert viewer.joined is not None and viewer.joined.node_id == "west-1"
            await host.publish(FlatColorTrack(*SIZE))
            await decoding_video(viewer)

            os.kill(nodes["west-1"].pid, signal.SIGSTOP)
            reconnecting, reconnected = await events_until(
                viewer,
                lambda e: isinstance(e, Reconnecting),
                lambda e: isinstance(e, Reconnected),
                timeout=HEARTBEAT * 1.5 + 10,
            )
            assert reconnecting.reason == "connection_lost"
            assert reconnected.joined.node_id in ("central-1", "north-1")
            await decoding_video(viewer)
        finally:
            os.kill(nodes["west-1"].pid, signal.SIGKILL)
            await viewer.close()
            await host.close()


@pytest.mark.usefixtures("_needs_redis")
async def test_a_publishers_node_dies_and_viewers_get_its_new_tracks(tmp_path: Path) -> None:
    async with three_regions(tmp_path) as nodes:
        entry = nodes["west-1"]
        host = await ws_client(entry, "show", "host", "eu-central")
        viewer = await ws_client(entry, "show", "viewer", "eu-north")
        try:
            assert host.joined is not None and host.joined.node_id == "central-1"
            assert viewer.joined is not None and viewer.joined.node_id == "north-1"
            viewer_sid, host_sid, viewer_joined = viewer.sid, host.sid, viewer.joined
            await host.publish(FlatColorTrack(*SIZE), names=["camera"])
            old_track = next(iter(host.published.values()))
            sid, _ = await decoding_video(viewer)
            assert sid == old_track

            os.kill(nodes["central-1"].pid, signal.SIGKILL)
            _, reconnected = await events_until(
                host,
                lambda e: isinstance(e, Reconnecting),
                lambda e: isinstance(e, Reconnected),
            )
            assert reconnected.joined.node_id == "west-1"
            new_track = next(iter(host.published.values()))

            def published_anew(e: Any) -> bool:
                if isinstance(e, p.TrackPublished):
                    return e.participant_sid == host.sid and e.track.sid == new_track
                return joined_as("host")(e) and any(
                    t.sid == new_track for t in e.participant.tracks
                )

            seen: list[Any] = []
            unpublished, gone, _ = await events_until(
                viewer,
                lambda e: isinstance(e, p.TrackUnpublished) and e.track_sid == old_track,
                left("host", "node_lost"),
                published_anew,
                seen=seen,
            )
            assert unpublished.participant_sid == host_sid and gone.sid == host_sid
            sid, _ = await decoding_video(viewer)
            assert sid == new_track
            # The viewer stayed in its session all along.
            assert viewer.sid == viewer_sid and viewer.joined is viewer_joined
            assert not [e for e in seen if isinstance(e, Reconnecting | Reconnected)]
        finally:
            await viewer.close()
            await host.close()


@pytest.mark.usefixtures("_needs_redis")
async def test_a_node_shutting_down_sends_its_viewers_elsewhere(tmp_path: Path) -> None:
    """SIGTERM drains west-1 (1 s here), then it ends its sessions with ``server_shutdown``:
    the viewer joins again at once, away from the node now draining, and decodes again."""
    specs = [
        NodeSpec(
            s.node_id, s.region, s.jurisdiction, {"drain_grace": 1} if s.node_id == "west-1" else {}
        )
        for s in THREE_REGIONS
    ]
    async with redis_server() as redis, cluster(redis, specs, tmp_path) as nodes:
        for node in nodes.values():
            await wait_nodes(node, 3)
        entry = nodes["central-1"]
        host = await ws_client(entry, "bye", "host", "eu-central")
        viewer = await ws_client(entry, "bye", "viewer", "eu-west")
        try:
            assert viewer.joined is not None and viewer.joined.node_id == "west-1"
            await host.publish(FlatColorTrack(*SIZE))
            await decoding_video(viewer)

            nodes["west-1"].process.send_signal(signal.SIGTERM)
            reconnecting, reconnected = await events_until(
                viewer,
                lambda e: isinstance(e, Reconnecting),
                lambda e: isinstance(e, Reconnected),
                timeout=8,
            )
            assert reconnecting.reason == "server_shutdown"
            assert reconnected.joined.node_id in ("central-1", "north-1")
            await decoding_video(viewer)
        finally:
            await viewer.close()
            await host.close()
