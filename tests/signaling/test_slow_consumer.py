"""A WebSocket client that stops reading (issue 18, item 1): it is disconnected once, with one
log line and a metric, and its participant leaves; it used to stay connected and log a line
per message it did not read."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import socket

import aiohttp
import pytest

from bench.loopback_node import RunningNode, token

from ..helpers import eventually

pytestmark = pytest.mark.timeout(60)


def frame(text: str) -> bytes:
    """A masked client text frame (RFC 6455 section 5.2)."""
    payload = text.encode()
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = bytes([0x81, 0x80 | length])
    else:
        header = bytes([0x81, 0x80 | 126]) + length.to_bytes(2, "big")
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


async def test_a_client_that_stops_reading_is_cut_off_once(
    relay_node: RunningNode, caplog: pytest.LogCaptureFixture
) -> None:
    host, port = relay_node.url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window, read never
    sock.connect((host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /v1/rtc HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    assert b" 101 " in await reader.readuntil(b"\r\n\r\n")
    join = {"type": "join", "version": 1, "room": "lazy", "token": token("lazy", "sloth")}
    writer.write(frame(json.dumps(join)))
    await eventually(lambda: "lazy" in relay_node.worker.rooms)
    caplog.set_level(logging.WARNING, logger="signaling.rtc_session")
    ping = frame(json.dumps({"type": "ping"}))
    for _ in range(60):  # up to 60,000 pings, each answered; the client reads nothing
        try:
            writer.write(ping * 1000)
            await asyncio.wait_for(writer.drain(), 10)
        except (ConnectionError, TimeoutError):
            break  # cut off
        if relay_node.node.slow_consumers:
            break
    await eventually(lambda: "lazy" not in relay_node.worker.rooms, 10)
    slow = [r for r in caplog.records if "too slow" in r.getMessage()]
    assert len(slow) == 1, [r.getMessage() for r in slow]
    assert relay_node.node.slow_consumers == 1
    async with aiohttp.ClientSession() as http, http.get(relay_node.http("/metrics")) as resp:
        assert "eurelay_signaling_slow_consumers_total 1.0" in await resp.text()
    writer.close()
