"""Bad input hurts nobody else (issue 2 test 7): malformed signaling and UDP garbage."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct

import aiohttp
import pytest
from aioice import stun
from aiortc.mediastreams import AudioStreamTrack

from bench.flat_color_track import FlatColorTrack
from bench.loopback_node import RunningNode, node_settings, running_node
from signaling import protocol as p

pytestmark = pytest.mark.timeout(60)


async def _frames_flowing(track: object, count: int = 3) -> None:
    for _ in range(count):
        await asyncio.wait_for(track.recv(), 5)  # type: ignore[attr-defined]


async def _watched_call(relay_node: RunningNode) -> object:
    """A call in another room whose video must keep decoding throughout."""
    host = await relay_node.join("bystanders", "host")
    await host.publish(FlatColorTrack(160, 120))
    viewer = await relay_node.join("bystanders", "viewer", publish=False)
    _, track = await viewer.next_track(10)
    await _frames_flowing(track)
    return track


async def test_malformed_signaling_gets_errors(relay_node: RunningNode) -> None:
    track = await _watched_call(relay_node)
    client = await relay_node.join("messy", "mallory")
    cases = [
        ("{not json", "invalid_json"),
        ('{"type": "teleport"}', "invalid_message"),
        ('{"type": "subscribe"}', "invalid_message"),
        ("[1, 2, 3]", "invalid_message"),
        (json.dumps({"type": "publish_offer", "sdp": "garbage"}), "invalid_sdp"),
        (
            json.dumps({"type": "publish_offer", "sdp": "v=0\r\nm=video 9 RTP/AVP x\r\n"}),
            "invalid_sdp",
        ),
        (json.dumps({"type": "subscriber_answer", "sdp": "v=0\r\n"}), "invalid_state"),
        (json.dumps({"type": "subscribe", "track_sid": "TR_nope"}), "not_found"),
        (json.dumps({"type": "join", "token": "x"}), "already_joined"),
    ]
    for frame, code in cases:
        await client.send_raw(frame)
        error = await client.wait_for(p.Error, timeout=5)
        assert error.code == code, (frame, error)
        assert not error.fatal
    await client.send_raw(json.dumps({"type": "ping", "timestamp": 7}))
    pong = await client.wait_for(p.Pong, timeout=5)
    assert pong.timestamp == 7  # the session survived all of it
    await _frames_flowing(track)


async def test_oversized_frame_closes_only_that_session(relay_node: RunningNode) -> None:
    track = await _watched_call(relay_node)
    async with aiohttp.ClientSession() as http, http.ws_connect(relay_node.url) as ws:
        await ws.send_str("x" * (2 * 1024 * 1024))
        msg = await ws.receive(timeout=5)
        assert msg.type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.TEXT,
        )
        if msg.type == aiohttp.WSMsgType.TEXT:
            assert json.loads(msg.data)["code"] == "message_too_large"
    await _frames_flowing(track)
    assert "bystanders" in relay_node.worker.rooms


async def test_udp_garbage_crashes_nothing(relay_node: RunningNode) -> None:
    track = await _watched_call(relay_node)
    worker = relay_node.worker
    target = ("127.0.0.1", worker.port)
    some_ufrag = next(iter(worker.mux.responder._by_ufrag))
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    request.attributes["USERNAME"] = f"{some_ufrag}:evil"
    request.add_message_integrity(b"wrong-password")
    forged = bytes(request)
    datagrams = [
        b"",
        b"\x00",
        b"\x00\x01\x00",  # truncated STUN header
        b"\x00\x01\x00\x50" + os.urandom(16),  # STUN header announcing a missing body
        forged,  # right ufrag, wrong MESSAGE-INTEGRITY
        forged[:-8],  # truncated fingerprint
        b"\x16\xfe\xfd" + os.urandom(10),  # DTLS-looking, from an unknown address
        b"\x80\x60" + os.urandom(6),  # truncated RTP
        struct.pack("!BBHII", 0x80, 96, 1, 2, 3) + os.urandom(100),  # RTP from nowhere
        b"\xff" * 1500,
    ]
    datagrams += [os.urandom(n) for n in (1, 2, 12, 20, 100, 1200) for _ in range(50)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        for data in datagrams:
            sock.sendto(data, target)
        await asyncio.sleep(0.2)
    assert worker.stats.dropped["unauthorized"] >= 1
    assert worker.stats.dropped["malformed"] + worker.stats.dropped["unknown_source"] > 100
    await _frames_flowing(track, 5)
    assert worker.rooms["bystanders"].by_identity("viewer") is not None


async def test_garbage_from_a_latched_address_is_dropped(relay_node: RunningNode) -> None:
    """SRTP that fails authentication on a live leg is dropped, and the leg keeps working."""
    track = await _watched_call(relay_node)
    worker = relay_node.worker
    room = worker.rooms["bystanders"]
    leg = room.by_identity("host").publisher_leg
    before = worker.stats.dropped["srtp_error"] + worker.stats.dropped["malformed"]
    for size in (12, 40, 200):
        leg.on_srtp(struct.pack("!BBHII", 0x80, 96, 5, 6, 7) + os.urandom(size), 0.0)
        leg.on_srtp(bytes([0x80, 200]) + os.urandom(size), 0.0)  # SRTCP garbage
    assert worker.stats.dropped["srtp_error"] + worker.stats.dropped["malformed"] >= before + 6
    await _frames_flowing(track, 5)


async def test_audio_publisher_unaffected_by_bad_sdp_in_same_room(relay_node: RunningNode) -> None:
    speaker = await relay_node.join("voice", "speaker")
    await speaker.publish(AudioStreamTrack())
    listener = await relay_node.join("voice", "listener", publish=False)
    _, audio = await listener.next_track(10)
    await speaker.send_raw(json.dumps({"type": "publish_offer", "sdp": "v=0\r\n" + "a=x\r\n" * 10}))
    error = await speaker.wait_for(p.Error, timeout=5)
    assert error.code == "invalid_sdp"
    for _ in range(5):
        await asyncio.wait_for(audio.recv(), 5)


async def test_message_floods_are_rate_limited() -> None:
    settings = node_settings(signaling={"messages_per_second": 10.0})
    async with running_node(settings) as rn:
        client = await rn.join("flood", "spammer")
        for i in range(100):
            await client.send_raw(json.dumps({"type": "ping", "timestamp": i}))
        error = await client.wait_for(p.Error, lambda e: e.code == "rate_limited", timeout=5)
        assert not error.fatal
        await asyncio.sleep(1.0)
        await client.send_raw(json.dumps({"type": "ping", "timestamp": 1000}))
        pong = await client.wait_for(p.Pong, lambda e: e.timestamp == 1000, timeout=5)
        assert pong.timestamp == 1000  # served again once the flood stops


async def test_a_silent_websocket_is_closed_after_the_join_timeout() -> None:
    async with running_node(node_settings(signaling={"join_timeout": 0.5})) as rn:
        async with aiohttp.ClientSession() as http, http.ws_connect(rn.url) as ws:
            msg = await ws.receive(timeout=5)
            assert json.loads(msg.data)["code"] == "join_timeout"
            closing = await ws.receive(timeout=5)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert rn.worker.rooms == {}
