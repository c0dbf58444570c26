"""Grants that change during a session (issue 16): a viewer goes on stage and back without
rejoining, and a token may allow only some sources."""

from __future__ import annotations

import pytest
from aiortc.mediastreams import AudioStreamTrack

from bench.flat_color_track import FlatColorTrack
from bench.loopback_node import API_KEY, API_SECRET, RunningNode, token
from signaling import protocol as p
from signaling.admin_client import AdminError, RoomAdmin
from signaling.client import ClientError
from signaling.tokens import Grant, mint

from ..helpers import eventually
from ..interop.http_sessions import whip_publish

pytestmark = pytest.mark.timeout(60)


async def test_a_viewer_goes_on_stage_and_back_without_rejoining(relay_node: RunningNode) -> None:
    host = await relay_node.join("stage", "host")
    viewer = await relay_node.join("stage", "fan", publish=False)
    with pytest.raises(ClientError) as refused:
        await viewer.publish(AudioStreamTrack())
    assert refused.value.code == "permission_denied"

    base = relay_node.http("/").rstrip("/")
    async with RoomAdmin(base, token("stage", "ops", admin=True)) as admin:
        answer = await admin.set_permissions(
            "stage", "fan", can_publish=True, sources=["camera", "microphone"]
        )
        assert answer["permissions"]["can_publish"] is True
        changed = await viewer.wait_for(p.PermissionsChanged, timeout=5)
        assert changed.permissions.sources == ["camera", "microphone"]

        # on stage: it publishes on the same session, and the host receives it
        await viewer.publish(FlatColorTrack(160, 120), AudioStreamTrack())
        room = relay_node.worker.rooms["stage"]
        fan = next(x for x in room.participants.values() if x.identity == "fan")
        camera = next(t.sid for t in fan.published.values() if t.kind == "video")
        announced = await host.wait_for(p.TrackPublished, lambda e: e.track.sid == camera, 10)
        assert announced.track.source == "camera"

        # microphone only: the camera goes for everyone at once
        await admin.set_permissions("stage", "fan", can_publish=True, sources=["microphone"])
        await host.wait_for(p.TrackUnpublished, lambda e: e.track_sid == camera, 5)
        assert {t.kind for t in fan.published.values()} == {"audio"}
        # back in the audience
        await admin.set_permissions("stage", "fan", can_publish=False)
        microphones = {t.sid for t in fan.published.values()}
        for _ in microphones:
            await host.wait_for(p.TrackUnpublished, lambda e: e.track_sid in microphones, 5)
        assert fan.published == {}
        with pytest.raises(ClientError) as again:
            await viewer.publish(AudioStreamTrack())
        assert again.value.code == "permission_denied"

        # not subscribing any more: what it received goes; subscribing again brings it back
        await host.publish(AudioStreamTrack())
        await eventually(lambda: len(fan.subscriptions) == 1)
        await admin.set_permissions("stage", "fan", can_publish=False, can_subscribe=False)
        assert fan.subscriptions == {}
        await admin.set_permissions("stage", "fan", can_publish=False, can_subscribe=True)
        assert len(fan.subscriptions) == 1

        with pytest.raises(AdminError) as missing:
            await admin.set_permissions("stage", "nobody", can_publish=True)
        assert (missing.value.status, missing.value.code) == (404, "not_found")
    async with RoomAdmin(base, token("elsewhere", "ops", admin=True)) as stranger:
        with pytest.raises(AdminError) as wrong:
            await stranger.set_permissions("stage", "fan", can_publish=True)
        assert (wrong.value.status, wrong.value.code) == (403, "token_wrong_room")


async def test_a_token_may_allow_only_some_sources(relay_node: RunningNode) -> None:
    """A WHIP publisher whose token allows the microphone only: its video is refused."""
    grant = Grant(room="radio", can_publish=True, can_publish_sources=["microphone"])
    tok = mint(API_KEY, API_SECRET, "speaker", grant, ttl=600)
    pc, _ = await whip_publish(relay_node, "radio", tok, AudioStreamTrack(), FlatColorTrack(64, 48))
    try:
        room = relay_node.worker.rooms["radio"]
        (speaker,) = room.participants.values()
        assert [t.kind for t in speaker.published.values()] == ["audio"]
        assert [t.source for t in speaker.published.values()] == ["microphone"]
    finally:
        await pc.close()


async def test_a_sender_set_inactive_stays_in_the_bundle_when_publishing_again(
    relay_node: RunningNode,
) -> None:
    """Back in the audience, the browser client sets its senders inactive (stopping them
    would close the transport); on stage again its offer starts with those sections. They
    are answered inactive, not rejected: rejecting the section that tags the BUNDLE group
    made Chromium refuse the answer ("Failed to setup RTCP mux")."""
    host = await relay_node.join("again", "host", publish=False)
    guest = await relay_node.join("again", "guest")
    first = await guest.publish(AudioStreamTrack())
    assert guest._pub is not None
    (transceiver,) = guest._pub.getTransceivers()
    transceiver.sender.replaceTrack(None)
    transceiver.direction = "inactive"
    second = await guest.publish(AudioStreamTrack())  # aiortc takes the answer, too
    assert guest._pub.remoteDescription is not None
    answer = guest._pub.remoteDescription.sdp
    old_mid, new_mid = next(iter(first)), next(m for m in second if m not in first)
    assert f"a=group:BUNDLE {old_mid} {new_mid}\r\n" in answer
    sections = answer.split("m=audio ")[1:]
    assert sections[0].startswith("9 ") and "a=inactive" in sections[0]
    await host.wait_for(p.TrackUnpublished, lambda e: e.track_sid == first[old_mid], 5)
    room = relay_node.worker.rooms["again"]
    assert [t.sid for t in room.tracks()] == [second[new_mid]]


async def test_a_python_client_sent_back_to_the_audience_can_come_up_again(
    relay_node: RunningNode,
) -> None:
    host = await relay_node.join("seat", "host", publish=False)
    guest = await relay_node.join("seat", "guest")
    base = relay_node.http("/").rstrip("/")
    first = await guest.publish(AudioStreamTrack())
    async with RoomAdmin(base, token("seat", "ops", admin=True)) as admin:
        await admin.set_permissions("seat", "guest", can_publish=False)
        await guest.wait_for(p.PermissionsChanged, timeout=5)
        assert guest.published == {} and guest._outgoing == []  # not offered again
        await admin.set_permissions("seat", "guest", can_publish=True)
        await guest.wait_for(p.PermissionsChanged, timeout=5)
    again = await guest.publish(AudioStreamTrack())
    (new_sid,) = [sid for mid, sid in again.items() if mid not in first]
    await host.wait_for(p.TrackPublished, lambda e: e.track.sid == new_sid, 5)
    assert [t.sid for t in relay_node.worker.rooms["seat"].tracks()] == [new_sid]
