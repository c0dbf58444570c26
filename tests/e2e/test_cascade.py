"""Cascading (issue 13): one room across nodes in separate processes on a real redis-server.
Every participant lands on their nearest node; the room's media crosses once per node over
bridges; events and data reach the whole room; residency bounds it all."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection
from aiortc.mediastreams import AudioStreamTrack

from bench.flat_color_track import FlatColorTrack
from bench.loopback_node import LOOPBACK, token
from bench.node_process import NodeProcess, spawn_node
from bench.redis_server import redis_server
from regions.registry import RegistryError, create_registry
from signaling import protocol as p
from signaling.client import ClientError, EurelayClient

from ..cluster_nodes import HEARTBEAT, ROOT, TTL, NodeSpec, cluster, node_config
from ..helpers import eventually_async, require_binary
from ..interop.http_sessions import frame_of_size, whep_refused, whep_view, whip_publish
from .test_cluster import ADMIN, admin_get, wait_nodes

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

NEAR = {
    "eu-central": "eu-central:5,eu-west:40,eu-north:50",
    "eu-west": "eu-west:5,eu-central:40,eu-north:60",
    "eu-north": "eu-north:5,eu-central:40,eu-west:60",
}
THREE_REGIONS = [
    NodeSpec("central-1", "eu-central", "de"),
    NodeSpec("west-1", "eu-west", "fr"),
    NodeSpec("north-1", "eu-north", "se"),
]


@pytest.fixture(autouse=True)
def _needs_redis() -> None:
    if require_binary("redis-server") is None:
        pytest.skip("redis-server is not installed (make test installs it)")


@contextlib.asynccontextmanager
async def three_regions(tmp_path: Path) -> AsyncIterator[dict[str, NodeProcess]]:
    async with redis_server() as redis, cluster(redis, THREE_REGIONS, tmp_path) as nodes:
        for node in nodes.values():
            await wait_nodes(node, 3)
        yield nodes


async def metrics(node: NodeProcess) -> dict[str, float]:
    async with aiohttp.ClientSession() as http, http.get(node.http_url + "/metrics") as resp:
        text = await resp.text()
    values = {}
    for line in text.splitlines():
        match = re.match(r"^([a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)$", line)
        if match:
            values[match[1]] = float(match[2])
    return values


async def identities(nodes: dict[str, NodeProcess], name: str, room: str) -> set[str]:
    """Who is connected to node ``name`` in ``room``, as that node lists the room."""
    status, body = await admin_get(nodes[name], f"/v1/rooms/{room}/participants")
    if status != 200:
        return set()
    return {p["identity"] for p in body["participants"] if p["node"] == name}


async def test_viewers_land_near_them_and_each_node_gets_one_copy(tmp_path: Path) -> None:
    async with three_regions(tmp_path) as nodes:
        central = nodes["central-1"]
        pcs: list[RTCPeerConnection] = []
        try:
            publisher, _ = await whip_publish(
                central.http_url,
                "shop",
                token("shop", "host"),
                FlatColorTrack(160, 120),
                AudioStreamTrack(),
                query=f"?rtt={NEAR['eu-central']}",
            )
            pcs.append(publisher)
            viewers = []
            # Every viewer asks central-1 (the one signaling URL); each is sent to its region.
            for i, region in enumerate(["eu-west", "eu-north", "eu-west", "eu-north"]):
                viewer, tracks, _ = await whep_view(
                    central.http_url,
                    f"/whep/shop?rtt={NEAR[region]}",
                    token("shop", f"{region}-{i}", publish=False),
                )
                pcs.append(viewer)
                viewers.append(tracks)
            assert await identities(nodes, "west-1", "shop") == {"eu-west-0", "eu-west-2"}
            assert await identities(nodes, "north-1", "shop") == {"eu-north-1", "eu-north-3"}
            for tracks in viewers:
                await frame_of_size(tracks["video"], (160, 120), timeout=20)
                await asyncio.wait_for(tracks["audio"].recv(), 10)

            # The origin sends each of its 2 tracks once per remote node: 2 bridges, 4 streams,
            # whatever the number of viewers behind them.
            origin = await metrics(central)
            assert origin['eurelay_relay_bridges{direction="out"}'] == 2
            assert origin['eurelay_relay_bridge_streams{direction="out"}'] == 4
            for name in ("west-1", "north-1"):
                remote = await metrics(nodes[name])
                assert remote['eurelay_relay_bridges{direction="in"}'] == 1
                assert remote['eurelay_relay_bridge_streams{direction="in"}'] == 2
                hop = 'direction="in",peer="central-1"'
                assert remote[f"eurelay_bridge_packets_total{{{hop}}}"] > 0
                assert remote[f"eurelay_bridge_loss_ratio{{{hop}}}"] < 0.01
                sent = origin[f'eurelay_bridge_packets_total{{direction="out",peer="{name}"}}']
                assert sent > 0

            # The hop's round trip, from the viewing nodes' receiver reports (about 1 s apart).
            async def hop_rtts() -> bool:
                values = await metrics(central)
                return all(
                    f'eurelay_bridge_rtt_milliseconds{{peer="{name}"}}' in values
                    for name in ("west-1", "north-1")
                )

            await eventually_async(hop_rtts, 10)

            status, route = await admin_get(central, f"/v1/route?room=shop&rtt={NEAR['eu-west']}")
            assert status == 200 and route["node"] == "west-1"
            assert route["bridged_from"] == ["central-1"]
        finally:
            for pc in pcs:
                with contextlib.suppress(Exception):
                    await pc.close()


async def ws_client(entry: NodeProcess, room: str, identity: str, region: str) -> EurelayClient:
    client = EurelayClient(entry.ws_url, token(room, identity), host_addresses=LOOPBACK)
    client.rtts = {r: float(v) for r, v in (x.split(":") for x in NEAR[region].split(","))}
    await client.connect()
    return client


async def next_data(client: EurelayClient, payload: str) -> dict[str, Any]:
    async def scan() -> dict[str, Any]:
        while True:
            message = await client.data.get()
            if message.get("payload") == payload:
                return message

    return await asyncio.wait_for(scan(), 10)


async def test_events_and_data_reach_the_room_on_every_node(tmp_path: Path) -> None:
    async with three_regions(tmp_path) as nodes:
        entry = nodes["central-1"]
        clients: list[EurelayClient] = []
        try:
            host = await ws_client(entry, "live", "host", "eu-central")
            clients.append(host)
            assert host.joined is not None and host.joined.node_id == "central-1"
            await host.publish(FlatColorTrack(160, 120), AudioStreamTrack())
            west = await ws_client(entry, "live", "west", "eu-west")
            clients.append(west)
            assert west.joined is not None and west.joined.node_id == "west-1"
            # The host, on another node, is in the room as the west viewer sees it, with its
            # tracks; and its media crosses the bridge to the west viewer's subscriber leg.
            await sees(west, "host")
            _, video = await west.next_track(20)
            await asyncio.wait_for(video.recv(), 20)
            joined = await host.wait_for(
                p.ParticipantJoined, lambda e: e.participant.identity == "west", 10
            )
            assert joined.participant.sid == west.sid

            north = await ws_client(entry, "live", "north", "eu-north")
            clients.append(north)
            assert north.joined is not None and north.joined.node_id == "north-1"
            await sees(north, "host", "west")

            for client in (west, north, host):
                await client.wait_data_channels()
            west.send_data("from lisbon", topic="chat")
            for receiver in (host, north):
                message = await next_data(receiver, "from lisbon")
                assert message["from_identity"] == "west" and message["topic"] == "chat"
            host.send_data("to north only", to=["north"])
            assert (await next_data(north, "to north only"))["from_identity"] == "host"

            await west.leave()
            clients.remove(west)
            for watcher in (host, north):
                left = await watcher.wait_for(p.ParticipantLeft, lambda e: e.identity == "west", 10)
                assert left.sid == joined.participant.sid
        finally:
            for client in clients:
                await client.close()


async def sees(client: EurelayClient, *identities: str) -> None:
    """The client's view of the room comes to include ``identities``: in its join snapshot or
    announced since (other events are consumed)."""
    missing = set(identities)
    if client.joined is not None:
        missing -= {o.identity for o in client.joined.others}

    async def scan() -> None:
        while missing:
            event = await client.events.get()
            if isinstance(event, p.ParticipantJoined):
                missing.discard(event.participant.identity)

    await asyncio.wait_for(scan(), 10)


async def test_a_restricted_room_never_bridges_outside_and_refuses_clearly(
    tmp_path: Path,
) -> None:
    async with three_regions(tmp_path) as nodes:
        central = nodes["central-1"]
        async with aiohttp.ClientSession() as http:
            async with http.post(
                central.http_url + "/v1/rooms",
                json={"name": "klinik", "allowed_jurisdictions": ["de"]},
                headers={"Authorization": f"Bearer {ADMIN}"},
            ) as resp:
                assert resp.status == 201
            async with http.post(
                central.http_url + "/v1/rooms",
                json={"name": "vard", "allowed_jurisdictions": ["dk"]},
                headers={"Authorization": f"Bearer {ADMIN}"},
            ) as resp:
                assert resp.status == 201
        pcs: list[RTCPeerConnection] = []
        try:
            publisher, _ = await whip_publish(
                central.http_url, "klinik", token("klinik", "doctor"), FlatColorTrack(160, 120)
            )
            pcs.append(publisher)
            # Nearest to eu-west, but the room may only use de: placed on central-1, direct.
            viewer, tracks, _ = await whep_view(
                nodes["west-1"].http_url,
                f"/whep/klinik?rtt={NEAR['eu-west']}",
                token("klinik", "patient", publish=False),
            )
            pcs.append(viewer)
            await frame_of_size(tracks["video"], (160, 120), timeout=20)
            assert await identities(nodes, "central-1", "klinik") == {"doctor", "patient"}
            for name in ("west-1", "north-1"):
                assert await identities(nodes, name, "klinik") == set()
                assert (await metrics(nodes[name]))['eurelay_relay_bridges{direction="in"}'] == 0
            assert (await metrics(central))['eurelay_relay_bridges{direction="out"}'] == 0

            # A room whose jurisdiction has no node: refused, and /v1/route says why.
            with pytest.raises(ClientError) as refused:
                await ws_client(central, "vard", "nobody", "eu-north")
            assert refused.value.code == "no_eligible_node"
            status, route = await admin_get(central, "/v1/route?room=vard")
            assert status == 200 and route["node"] is None and "residency" in route["reason"]

            # A room's other settings hold on every node too: public viewing and the viewer
            # cap, set through central-1, on west-1 where the room's viewers land.
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    central.http_url + "/v1/rooms",
                    json={"name": "show", "public_viewing": True, "max_viewers": 1},
                    headers={"Authorization": f"Bearer {ADMIN}"},
                ) as resp,
            ):
                assert resp.status == 201
            host, _ = await whip_publish(
                central.http_url, "show", token("show", "host"), FlatColorTrack(160, 120)
            )
            pcs.append(host)
            anywhere = f"/whep/show?rtt={NEAR['eu-west']}"
            viewer, tracks, _ = await whep_view(nodes["north-1"].http_url, anywhere, None)
            pcs.append(viewer)
            await frame_of_size(tracks["video"], (160, 120), timeout=20)
            status, body = await admin_get(nodes["west-1"], "/v1/rooms/show")
            assert (status, body["num_viewers"], body["public_viewing"]) == (200, 1, True)
            assert await whep_refused(nodes["west-1"].http_url, anywhere, None) == "room_full"
        finally:
            for pc in pcs:
                with contextlib.suppress(Exception):
                    await pc.close()


async def test_the_origin_dying_unpublishes_its_tracks_elsewhere(tmp_path: Path) -> None:
    async with three_regions(tmp_path) as nodes:
        entry = nodes["west-1"]
        host = await ws_client(entry, "gone", "host", "eu-central")
        viewer = await ws_client(entry, "gone", "viewer", "eu-west")
        try:
            assert host.joined is not None and host.joined.node_id == "central-1"
            await host.publish(FlatColorTrack(160, 120))
            _, video = await viewer.next_track(20)
            await asyncio.wait_for(video.recv(), 20)
            # the host's client rejoins elsewhere by itself (a new sid): remember the old ones
            host_sid, track_sid = host.sid, next(iter(host.published.values()))
            os.kill(nodes["central-1"].pid, signal.SIGKILL)
            unpublished = await viewer.wait_for(
                p.TrackUnpublished, lambda e: e.track_sid == track_sid, 10
            )
            assert unpublished.participant_sid == host_sid
            left = await viewer.wait_for(p.ParticipantLeft, lambda e: e.sid == host_sid, 5)
            assert left.reason == "node_lost"
        finally:
            await viewer.close()
            await host.close()


async def test_a_full_node_spills_a_rooms_viewers_to_its_siblings(tmp_path: Path) -> None:
    """Capacity 10 per node: a publisher and 25 viewers of one room in one region end up on
    three nodes, every viewer decoding (two of the nodes get the stream over a bridge)."""
    capacity = {"capacity": {"max_participants": 10}}
    specs = [NodeSpec(f"west-{i}", "eu-west", "fr", dict(capacity)) for i in (1, 2, 3)]
    async with redis_server() as redis, cluster(redis, specs, tmp_path) as nodes:
        for node in nodes.values():
            await wait_nodes(node, 3)
        entry = nodes["west-1"].http_url
        pcs: list[RTCPeerConnection] = []
        try:
            publisher, _ = await whip_publish(
                entry, "sale", token("sale", "host"), FlatColorTrack(64, 48)
            )
            pcs.append(publisher)
            viewers = []
            for i in range(25):
                viewer, tracks, _ = await whep_view(
                    entry, "/whep/sale", token("sale", f"v{i}", publish=False)
                )
                pcs.append(viewer)
                viewers.append(tracks)
            placed = {name: await identities(nodes, name, "sale") for name in nodes}
            assert sum(len(who) for who in placed.values()) == 26
            assert all(0 < len(who) <= 10 for who in placed.values()), placed
            for tracks in viewers:
                await frame_of_size(tracks["video"], (64, 48), timeout=30)
        finally:
            for pc in pcs:
                with contextlib.suppress(Exception):
                    await pc.close()


async def test_a_node_restarted_under_its_id_leaves_no_ghosts(tmp_path: Path) -> None:
    """A node dies with nobody else in its room and comes back under the same id before
    its record expires: the participants of its earlier run are not announced to anyone."""
    specs = [NodeSpec("west-1", "eu-west", "fr"), NodeSpec("central-1", "eu-central", "de")]
    async with redis_server() as redis, cluster(redis, specs, tmp_path) as nodes:
        for node in nodes.values():
            await wait_nodes(node, 2)
        host = await ws_client(nodes["central-1"], "solo", "host", "eu-central")
        await host.publish(FlatColorTrack(64, 48))
        await host.close()
        os.kill(nodes["central-1"].pid, signal.SIGKILL)  # its leave never reaches Redis
        await nodes["central-1"].process.wait()
        config = node_config(specs[1], redis.url, tmp_path)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        async with spawn_node(config, "--log-level", "warning", env=env, cwd=ROOT) as again:
            await wait_nodes(again, 2)
            guest = await ws_client(nodes["west-1"], "solo", "guest", "eu-west")
            registry = create_registry(redis.url, 5.0)
            try:
                assert guest.joined is not None and guest.joined.node_id == "west-1"

                async def only_the_guest() -> bool:
                    members = await registry.room_members("solo")
                    return [m.identity for m in members] == ["guest"]

                await eventually_async(only_the_guest, 10)
                status, body = await admin_get(nodes["west-1"], "/v1/rooms/solo/participants")
                assert status == 200
                assert [p["identity"] for p in body["participants"]] == ["guest"]
            finally:
                await registry.close()
                await guest.close()


async def test_a_viewing_node_that_dies_and_restarts_gets_the_stream_again(
    tmp_path: Path,
) -> None:
    """The origin stops feeding a viewing node once it is gone, and a new run of that node
    (same id, new certificate) gets a new bridge, not the dead run's."""
    specs = [NodeSpec("central-1", "eu-central", "de"), NodeSpec("west-1", "eu-west", "fr")]
    async with redis_server() as redis, cluster(redis, specs, tmp_path) as nodes:
        for node in nodes.values():
            await wait_nodes(node, 2)
        central = nodes["central-1"]
        host = await ws_client(central, "tour", "host", "eu-central")
        await host.publish(FlatColorTrack(64, 48))
        near_west = f"/whep/tour?rtt={NEAR['eu-west']}"
        pcs: list[RTCPeerConnection] = []
        try:
            viewer, tracks, _ = await whep_view(
                nodes["west-1"].http_url, near_west, token("tour", "v1", publish=False)
            )
            pcs.append(viewer)
            await frame_of_size(tracks["video"], (64, 48), timeout=20)
            out = 'eurelay_relay_bridges{direction="out"}'
            assert (await metrics(central))[out] == 1

            os.kill(nodes["west-1"].pid, signal.SIGKILL)
            await nodes["west-1"].process.wait()

            async def unfed() -> bool:
                return (await metrics(central))[out] == 0

            await eventually_async(unfed, TTL + 10)
            config = node_config(specs[1], redis.url, tmp_path)
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            async with spawn_node(config, "--log-level", "warning", env=env, cwd=ROOT) as again:
                await wait_nodes(again, 2)
                viewer2, tracks2, _ = await whep_view(
                    again.http_url, near_west, token("tour", "v2", publish=False)
                )
                pcs.append(viewer2)
                await frame_of_size(tracks2["video"], (64, 48), timeout=20)
                assert (await metrics(central))[out] == 1
        finally:
            for pc in pcs:
                await pc.close()
            await host.close()


async def test_a_tightened_residency_policy_cuts_bridges_and_data_to_other_nodes(
    tmp_path: Path,
) -> None:
    """Set through one node after the room spread: the other nodes it no longer allows get
    no more media or data from this one."""
    specs = [NodeSpec("central-1", "eu-central", "de"), NodeSpec("west-1", "eu-west", "fr")]
    async with redis_server() as redis, cluster(redis, specs, tmp_path) as nodes:
        for node in nodes.values():
            await wait_nodes(node, 2)
        central = nodes["central-1"]
        host = await ws_client(central, "kanzlei", "host", "eu-central")
        guest = await ws_client(nodes["west-1"], "kanzlei", "guest", "eu-west")
        try:
            await host.publish(FlatColorTrack(64, 48))
            await guest.next_track(20)
            for client in (host, guest):
                await client.wait_data_channels()
            host.send_data("before")
            await next_data(guest, "before")
            out = 'eurelay_relay_bridges{direction="out"}'
            assert (await metrics(central))[out] == 1

            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    nodes["west-1"].http_url + "/v1/rooms",
                    json={"name": "kanzlei", "allowed_jurisdictions": ["de"]},
                    headers={"Authorization": f"Bearer {ADMIN}"},
                ) as resp,
            ):
                assert resp.status == 201

            async def cut() -> bool:
                return (await metrics(central))[out] == 0

            await eventually_async(cut, 15)
            # decided when sent (a message forwarded would be there within milliseconds)
            host.send_data("after")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(next_data(guest, "after"), 1)
        finally:
            await host.close()
            await guest.close()


async def test_a_bridged_call_outlives_redis_losing_its_data(tmp_path: Path) -> None:
    """Redis restarts empty: every node vanishes from it at once and puts itself back within
    a heartbeat. The bridged call keeps its media, nobody is announced as gone, and the
    directory is whole again."""
    specs = [NodeSpec("west-1", "eu-west", "fr"), NodeSpec("central-1", "eu-central", "de")]
    async with redis_server() as redis, cluster(redis, specs, tmp_path) as nodes:
        for node in nodes.values():
            await wait_nodes(node, 2)
        host = await ws_client(nodes["central-1"], "call", "host", "eu-central")
        guest = await ws_client(nodes["central-1"], "call", "guest", "eu-west")
        registry = create_registry(redis.url, 5.0)
        try:
            assert guest.joined is not None and guest.joined.node_id == "west-1"
            await host.publish(FlatColorTrack(64, 48))
            _, video = await guest.next_track(20)
            await asyncio.wait_for(video.recv(), 20)

            await redis.restart()
            restarted = time.monotonic()
            # past the time a dead node would have been declared gone, frames keep coming
            while time.monotonic() - restarted < TTL + 4 * HEARTBEAT + 1.0:
                await asyncio.wait_for(video.recv(), 5)

            async def whole_again() -> bool:
                try:
                    members = await registry.room_members("call")
                except RegistryError:
                    return False
                return sorted(m.identity for m in members) == ["guest", "host"]

            await eventually_async(whole_again, 10)
            while not guest.events.empty():
                event = guest.events.get_nowait()
                assert not isinstance(event, p.ParticipantLeft | p.TrackUnpublished), event
            await asyncio.wait_for(video.recv(), 5)
        finally:
            await registry.close()
            await guest.close()
            await host.close()


async def test_an_identity_is_in_a_room_once_across_nodes(tmp_path: Path) -> None:
    """The same identity joins again through another node (a reconnect elsewhere): the
    earlier session is closed as a duplicate, as on one node."""
    async with three_regions(tmp_path) as nodes:
        first = await ws_client(nodes["central-1"], "desk", "alice", "eu-west")
        second = await ws_client(nodes["central-1"], "desk", "alice", "eu-north")
        try:
            assert first.joined is not None and first.joined.node_id == "west-1"
            assert second.joined is not None and second.joined.node_id == "north-1"
            closed = await first.wait_for(p.Closed, timeout=10)
            assert closed.reason == "duplicate_identity"

            async def only_the_later() -> bool:
                status, body = await admin_get(nodes["north-1"], "/v1/rooms/desk/participants")
                listed = [(m["identity"], m["node"]) for m in body.get("participants", [])]
                return status == 200 and listed == [("alice", "north-1")]

            await eventually_async(only_the_later, 10)
        finally:
            await first.close()
            await second.close()
