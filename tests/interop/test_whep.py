"""WHEP playback with an aiortc viewer, following the room's publisher across hand-overs."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import AudioStreamTrack

from bench.flat_color_track import FlatColorTrack
from bench.loopback_node import RunningNode, token

from .http_sessions import frame_of_size, whep_refused, whep_view, whip_publish

pytestmark = pytest.mark.timeout(60)


async def test_viewer_follows_the_publisher_across_a_reconnect(relay_node: RunningNode) -> None:
    host = await relay_node.join("shop", "host")
    await host.publish(FlatColorTrack(320, 240), AudioStreamTrack())
    pc, tracks, location = await whep_view(
        relay_node, "/whep/shop", token("shop", "v1", publish=False)
    )
    try:
        await frame_of_size(tracks["video"], (320, 240))
        await asyncio.wait_for(tracks["audio"].recv(), 10)
        viewer = relay_node.worker.rooms["shop"].participants[location.rsplit("/", 1)[1]]
        ssrcs = set(viewer.viewer_leg.by_ssrc)

        await host.leave()  # the host drops out mid-stream ...
        await asyncio.sleep(0.3)
        assert pc.connectionState == "connected"
        again = await relay_node.join("shop", "host-again")
        await again.publish(FlatColorTrack(176, 144), AudioStreamTrack())
        # ... and the viewer, never renegotiated, gets the new host on the same track
        await frame_of_size(tracks["video"], (176, 144), timeout=15)
        assert set(viewer.viewer_leg.by_ssrc) == ssrcs

        async with (
            aiohttp.ClientSession() as http,
            http.delete(
                relay_node.http(location),
                headers={"Authorization": f"Bearer {token('shop', 'v1')}"},
            ) as resp,
        ):
            assert resp.status == 200
        assert viewer.sid not in relay_node.worker.rooms["shop"].participants
    finally:
        await pc.close()


async def test_named_participant_and_public_viewing(relay_node: RunningNode) -> None:
    admin = {"Authorization": f"Bearer {token('', 'ops', admin=True)}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            relay_node.http("/v1/rooms"),
            json={"name": "stage", "public_viewing": True},
            headers=admin,
        ) as resp,
    ):
        assert resp.status == 201
    first = await relay_node.join("stage", "first")
    await first.publish(FlatColorTrack(160, 120))
    second = await relay_node.join("stage", "second")
    await second.publish(FlatColorTrack(320, 240))
    pc, tracks, location = await whep_view(relay_node, "/whep/stage?participant=second", None)
    try:
        await frame_of_size(tracks["video"], (320, 240))
        async with aiohttp.ClientSession() as http, http.delete(relay_node.http(location)) as resp:
            assert resp.status == 200  # the session URL is the anonymous viewer's credential
    finally:
        await pc.close()


async def test_private_room_needs_a_token(relay_node: RunningNode) -> None:
    await relay_node.join("private", "host")
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                relay_node.http("/whep/private"),
                data=pc.localDescription.sdp,
                headers={"Content-Type": "application/sdp"},
            ) as resp,
        ):
            assert resp.status == 401
        assert len(relay_node.worker.rooms["private"].participants) == 1
    finally:
        await pc.close()


async def test_whip_publisher_to_whep_viewer(relay_node: RunningNode) -> None:
    publisher, _ = await whip_publish(
        relay_node, "relay", token("relay", "studio"), FlatColorTrack(320, 240), AudioStreamTrack()
    )
    pc, tracks, _ = await whep_view(relay_node, "/whep/relay", token("relay", "fan", publish=False))
    try:
        await frame_of_size(tracks["video"], (320, 240))
        await asyncio.wait_for(tracks["audio"].recv(), 10)
        room = relay_node.worker.rooms["relay"]
        assert sorted(p.identity for p in room.participants.values()) == ["fan", "studio"]
    finally:
        await pc.close()
        await publisher.close()


async def test_players_sharing_a_viewer_token_all_play(relay_node: RunningNode) -> None:
    """A public stream page hands every player the same viewer token: none replaces another,
    and viewers have their own cap, apart from the room's participants."""
    admin = {"Authorization": f"Bearer {token('', 'ops', admin=True)}"}
    limits = {"name": "live", "max_participants": 3, "max_viewers": 2}
    async with (
        aiohttp.ClientSession() as http,
        http.post(relay_node.http("/v1/rooms"), json=limits, headers=admin) as resp,
    ):
        assert resp.status == 201
    host = await relay_node.join("live", "host")
    await host.publish(FlatColorTrack(320, 240))
    shared = token("live", "page-viewer", publish=False)
    players = [await whep_view(relay_node, "/whep/live", shared) for _ in range(2)]
    try:
        for _, tracks, _ in players:
            await frame_of_size(tracks["video"], (320, 240))
        # a participant may still join: viewers do not fill the room's participant seats
        guest = await relay_node.join("live", "guest")
        # ... and a participant with the viewers' identity replaces none of them
        await relay_node.join("live", "page-viewer")
        room = relay_node.worker.rooms["live"]
        assert all(location.rsplit("/", 1)[1] in room.participants for *_, location in players)
        assert await whep_refused(relay_node, "/whep/live", shared) == "room_full"
        async with (
            aiohttp.ClientSession() as http,
            http.get(relay_node.http("/v1/rooms/live"), headers=admin) as resp,
        ):
            info = await resp.json()
        assert (info["num_viewers"], info["max_viewers"]) == (2, 2)
        # viewers are an audience: the room's clients are not told of them
        assert guest.joined is not None
        assert [o.identity for o in guest.joined.others] == ["host"]
        await guest.leave()
    finally:
        for pc, _, _ in players:
            await pc.close()
