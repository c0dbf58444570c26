"""What the attack re-run (docs/SECURITY.md, "Attack re-run") found in the HTTP listener,
kept as regressions: a client that sends its request slowly, or breaks it off, or sends
malformed HTTP, costs the node a bounded time and at most one log line per kind."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bench.loopback_node import RunningNode, running_node, token
from signaling import app as app_module
from signaling import errors
from tests.helpers import eventually

pytestmark = pytest.mark.timeout(30)


def _address(rn: RunningNode) -> tuple[str, int]:
    url = rn.server.make_url("/")
    assert url.host is not None and url.port is not None
    return url.host, url.port


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """What the server sent until it closed the connection, which it must within
    ``seconds``."""
    received = b""
    async with asyncio.timeout(seconds):
        while chunk := await reader.read(4096):
            received += chunk
    return received


async def test_a_request_whose_headers_never_end_is_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Slowloris: headers a byte at a time held the connection for aiohttp's keep-alive
    timeout, an hour."""
    monkeypatch.setattr(app_module, "IDLE_TIMEOUT", 1.0, raising=False)
    async with running_node() as rn:
        reader, writer = await asyncio.open_connection(*_address(rn))
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        for _ in range(3):  # still sending, a byte now and then
            await asyncio.sleep(0.3)
            writer.write(b"X")
        assert await _closed_within(reader, 5) == b""
        writer.close()
        # a connection between requests is closed too; a request in time is answered
        reader, writer = await asyncio.open_connection(*_address(rn))
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"200 OK" in await _closed_within(reader, 5)
        writer.close()


def _offer_head(room: str) -> bytes:
    """A WHIP POST announcing a 60 KB offer, and its first line only."""
    return (
        f"POST /whip/{room} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token(room, 'm')}\r\n"
        "Content-Type: application/sdp\r\nContent-Length: 60000\r\n\r\nv=0\r\n"
    ).encode()


async def test_a_body_sent_too_slowly_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A WHIP offer announced as 60 KB and sent a byte a second held its handler forever."""
    monkeypatch.setattr(errors, "BODY_TIMEOUT", 0.5, raising=False)
    async with running_node() as rn:
        reader, writer = await asyncio.open_connection(*_address(rn))
        writer.write(_offer_head("slow"))
        answer = await _closed_within(reader, 5)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b'"request_timeout"' in answer
        writer.close()
        assert not rn.worker.rooms.get("slow")  # no session was started


async def test_a_client_gone_mid_body_is_not_a_server_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client that closed its connection halfway through an offer was logged as a bug of
    ours, with a traceback (``POST /whip/{room} failed``), and answered 500."""
    caplog.set_level(logging.DEBUG, logger="signaling.errors")
    async with running_node() as rn:
        _, writer = await asyncio.open_connection(*_address(rn))
        writer.write(_offer_head("gone"))
        await writer.drain()
        writer.transport.abort()

        def went_away() -> bool:
            return any("went away" in r.getMessage() for r in caplog.records)

        await eventually(went_away, 5)
        errors_logged = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert not errors_logged, [r.getMessage() for r in errors_logged]


async def test_malformed_http_is_logged_once_per_kind(caplog: pytest.LogCaptureFixture) -> None:
    """aiohttp logged every malformed request at ERROR with a traceback: ten lines of log
    for thirty bytes sent, as often as a client liked."""
    caplog.set_level(logging.INFO)
    async with running_node() as rn:
        # not HTTP at all (TLS to the plain port): aiohttp says so at debug level only
        reader, writer = await asyncio.open_connection(*_address(rn))
        writer.write(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40) + b"\r\n\r\n")
        await _closed_within(reader, 5)
        writer.close()
        for i in range(20):
            reader, writer = await asyncio.open_connection(*_address(rn))
            bad = b"Bad Header\r\n" if i % 2 else b"X: " + b"a" * 9000 + b"\r\n"
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + bad + b"\r\n")
            answer = await _closed_within(reader, 5)
            assert answer.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request"), answer[:100]
            writer.close()
    logged = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert len(logged) == 2, [r.getMessage() for r in logged]  # one per kind
    assert all(r.levelno == logging.WARNING and not r.exc_info for r in logged)
