"""A room across two workers: a WHIP publisher on one, WHEP viewers on the other, joined by
a bridge (the viewing worker initiates toward the origin's media address). The control
messages between the workers are passed by hand here; their channel is the cluster's job.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import pytest
from aiortc.mediastreams import AudioStreamTrack

from bench.flat_color_track import FlatColorTrack
from bench.loopback_node import running_node, token
from relay.room import ParticipantKind

from ..helpers import bridge, eventually
from ..interop.http_sessions import frame_of_size, whep_view, whip_publish

pytestmark = pytest.mark.timeout(90)


async def test_viewers_on_another_worker_get_one_copy_over_a_bridge() -> None:
    async with running_node() as origin, running_node() as viewing:
        publisher, _ = await whip_publish(
            origin, "shop", token("shop", "host"), FlatColorTrack(160, 120), AudioStreamTrack()
        )
        pcs = [publisher]
        try:
            first, tracks, _ = await whep_view(
                viewing, "/whep/shop", token("shop", "v1", publish=False)
            )
            pcs.append(first)
            await eventually(lambda: bool(origin.worker.rooms["shop"].tracks()))
            bridge(origin, viewing, "shop")

            # The host appears on the viewing worker as a remote publisher, with its tracks.
            room = viewing.worker.rooms["shop"]
            remote = room.by_identity("host")
            assert remote is not None and remote.kind is ParticipantKind.REMOTE
            assert sorted(t.kind for t in remote.published.values()) == ["audio", "video"]
            await frame_of_size(tracks["video"], (160, 120), timeout=20)
            await asyncio.wait_for(tracks["audio"].recv(), 10)

            # A second viewer there starts at a keyframe asked for across the bridge.
            second, more, _ = await whep_view(
                viewing, "/whep/shop", token("shop", "v2", publish=False)
            )
            pcs.append(second)
            await frame_of_size(more["video"], (160, 120), timeout=20)

            # The origin sends each track once, whatever the number of remote viewers; the
            # viewing worker fans out to both.
            out_legs = list(origin.worker.bridging.outgoing.values())
            assert len(out_legs) == 1
            downs = list(out_legs[0].by_ssrc.values())
            assert len(downs) == 2
            for down in downs:
                assert down.packets_sent > 0
                assert down.packets_sent <= down.up.packets
            stats = origin.worker.stats
            assert stats.rtp_packets_out <= stats.rtp_packets_in
            await eventually(
                lambda: (
                    viewing.worker.stats.rtp_packets_out > 1.5 * viewing.worker.stats.rtp_packets_in
                )
            )
            assert origin.node.relay.bridge_load() == {"out": (1, 2), "in": (0, 0)}
            assert viewing.node.relay.bridge_load() == {"out": (0, 0), "in": (1, 2)}
            async with (
                aiohttp.ClientSession() as http,
                http.get(origin.http("/metrics")) as resp,
            ):
                text = await resp.text()
            assert 'eurelay_relay_bridge_streams{direction="out"} 2.0' in text

            # The last viewer there gone, the bridge stays for the grace: a viewer coming
            # back gets the stream over the same bridge.
            leg = viewing.worker.bridging.incoming[("shop", "origin")]
            viewing.worker.config.bridge_grace = 60
            await first.close()
            await second.close()
            await eventually(lambda: len(viewing.worker.rooms["shop"].participants) == 1)
            back, again, _ = await whep_view(
                viewing, "/whep/shop", token("shop", "v3", publish=False)
            )
            pcs.append(back)
            await frame_of_size(again["video"], (160, 120), timeout=20)
            assert viewing.worker.bridging.incoming[("shop", "origin")] is leg

            # Gone again with no grace: the bridge closes at both ends; the host stays.
            viewing.worker.config.bridge_grace = 0
            await back.close()
            await eventually(lambda: "shop" not in viewing.worker.rooms)
            await eventually(lambda: origin.node.relay.bridge_load()["out"] == (0, 0))
            assert origin.worker.rooms["shop"].by_identity("host") is not None
        finally:
            for pc in pcs:
                with contextlib.suppress(Exception):
                    await pc.close()


async def test_two_rooms_bridged_between_the_same_two_workers_at_once() -> None:
    """One bridge per room between the same pair: each incoming leg on its own socket."""
    sizes = {"one": (160, 120), "two": (320, 240)}
    async with running_node() as origin, running_node() as viewing:
        pcs = []
        try:
            for room, size in sizes.items():
                publisher, _ = await whip_publish(
                    origin, room, token(room, "host"), FlatColorTrack(*size), AudioStreamTrack()
                )
                pcs.append(publisher)
            views = {}
            for room in sizes:
                pc, tracks, _ = await whep_view(
                    viewing, f"/whep/{room}", token(room, "viewer", publish=False)
                )
                pcs.append(pc)
                views[room] = tracks
            await eventually(lambda: all(origin.worker.rooms[r].tracks() for r in sizes))
            for room in sizes:
                bridge(origin, viewing, room)

            for room, size in sizes.items():
                await frame_of_size(views[room]["video"], size, timeout=20)
            own = {
                viewing.worker.transports.sockets[leg].addr
                for leg in viewing.worker.bridging.incoming.values()
            }
            assert len(own) == 2 and viewing.worker.port not in {port for _, port in own}
            assert {leg.addr for leg in origin.worker.bridging.outgoing.values()} == own
            assert origin.node.relay.bridge_load() == {"out": (2, 4), "in": (0, 0)}
            assert viewing.node.relay.bridge_load() == {"out": (0, 0), "in": (2, 4)}
        finally:
            for pc in pcs:
                with contextlib.suppress(Exception):
                    await pc.close()


async def test_a_room_bridged_both_ways_between_two_workers() -> None:
    """A host on each worker, a viewer on each following the other worker's host."""
    async with running_node() as west, running_node() as east:
        pcs = []
        try:
            for node, host, size in (
                (west, "west-host", (160, 120)),
                (east, "east-host", (320, 240)),
            ):
                publisher, _ = await whip_publish(
                    node, "duo", token("duo", host), FlatColorTrack(*size), AudioStreamTrack()
                )
                pcs.append(publisher)
            on_west, west_tracks, _ = await whep_view(
                west, "/whep/duo?participant=east-host", token("duo", "wv", publish=False)
            )
            on_east, east_tracks, _ = await whep_view(
                east, "/whep/duo?participant=west-host", token("duo", "ev", publish=False)
            )
            pcs += [on_west, on_east]
            await eventually(
                lambda: bool(
                    west.worker.rooms["duo"].tracks() and east.worker.rooms["duo"].tracks()
                )
            )
            bridge(west, east, "duo", "west", "east")
            bridge(east, west, "duo", "east", "west")

            await frame_of_size(west_tracks["video"], (320, 240), timeout=20)
            await frame_of_size(east_tracks["video"], (160, 120), timeout=20)
            for node, peer in ((west, east), (east, west)):
                (incoming,) = node.worker.bridging.incoming.values()
                (outgoing,) = peer.worker.bridging.outgoing.values()
                # The peer's answering leg is latched to this worker's incoming leg's own
                # socket, apart from this worker's own answering leg on its main socket.
                assert outgoing.addr == node.worker.transports.sockets[incoming].addr
                assert outgoing.addr[1] != node.worker.port
                assert node.node.relay.bridge_load() == {"out": (1, 2), "in": (1, 2)}
        finally:
            for pc in pcs:
                with contextlib.suppress(Exception):
                    await pc.close()
