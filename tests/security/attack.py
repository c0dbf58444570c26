"""An outsider's attack on a real ``eurelay serve``, with a victim call measured throughout.

The re-run of issue 18's attack (tokens, WebSocket abuse, WHIP/WHEP bodies, admin API, UDP
garbage and replays, RTCP floods), plus what came since: session resume, handover (a leg
following authenticated SRTP from a new address), audio RED, RTX, per-participant
permissions (PATCH), TURN credentials on OPTIONS, the per-IP rate limits and slow HTTP and
WebSocket clients. Every check prints one line; the run ends with a table per category,
the victim call's decoded frames per second before, during and after, and exit status 1 if
any check failed.

The victim is a 1:1 call of two project clients in room ``victim`` (each publishes a
320x240 video track and decodes the other's), joined over 127.0.0.1. The attacker comes
from 10.77.0.2-10.77.0.250, which the per-address limits apply to (loopback is exempt).
Run it in a private network namespace, where those addresses are local::

    unshare -n sh -c 'ip link set lo up && ip route add local 10.77.0.0/24 dev lo && \\
        .venv/bin/python -m tests.security.attack'

``--only CATEGORY ...`` runs some categories; ``--keep-log FILE`` keeps the server's log.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import socket
import struct
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aioice import stun

from bench.decoded_call import Decoded
from bench.flat_color_track import FlatColorTrack
from bench.loopback_node import token as loopback_token
from bench.node_process import NodeProcess, spawn_node
from bench.raw_peer import RawPeer
from relay.netem import UdpImpairmentProxy
from signaling.client import EurelayClient, restrict_ice_host_addresses

KEY = "attack-key"
SECRET = "attack-secret-0123456789-0123456789-abcdef"
OTHER_SECRET = "another-secret-0123456789-0123456789-abcdef"
SERVER_IP = "10.77.0.1"  # the node's non-loopback address inside the namespace
LOOPBACK = ["127.0.0.1"]
VICTIM = "victim"


def attacker_ip(n: int) -> str:
    return f"10.77.0.{2 + n % 240}"


def tok(room: str, identity: str, **claims: Any) -> str:
    """A token of this script's key; ``claims`` as ``bench.loopback_node.token`` takes them."""
    return loopback_token(room, identity, **{"ttl": 600, "secret": SECRET, "key": KEY, **claims})


def operator() -> str:
    return tok("", "ops", admin=True)


# results ------------------------------------------------------------------------------


@dataclass
class Check:
    category: str
    name: str
    ok: bool
    detail: str


@dataclass
class Results:
    checks: list[Check] = field(default_factory=list)

    def add(self, category: str, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append(Check(category, name, ok, detail))
        mark = "ok  " if ok else "FAIL"
        print(f"{mark} [{category}] {name}{': ' + detail if detail else ''}", flush=True)

    def expect(self, category: str, name: str, got: object, want: object) -> None:
        ok = got in want if isinstance(want, tuple | list | set) else got == want
        self.add(category, name, ok, f"got {got!r}" + ("" if ok else f", want {want!r}"))


# the node -----------------------------------------------------------------------------


def config_text() -> str:
    return (
        f"keys: {{{KEY}: {SECRET}}}\n"
        "http: {host: 0.0.0.0}\n"
        "rtc: {bind: 0.0.0.0, announce: [127.0.0.1], consent_timeout: 10,"
        " turn: {urls: ['turn:127.0.0.1:3478'], secret: turn-secret-0123456789-0123456789}}\n"
        "signaling: {joins_per_ip: 50}\n"
        "rooms: {max_participants: 100}\n"
    )


@dataclass
class Target:
    node: NodeProcess
    http: aiohttp.ClientSession
    log: Path

    @property
    def base(self) -> str:
        return self.node.http_url

    @property
    def port(self) -> int:
        return int(self.node.http_address.rsplit(":", 1)[1])

    def url(self, path: str, *, outside: bool = False) -> str:
        return f"http://{SERVER_IP}:{self.port}{path}" if outside else self.base + path

    async def metrics(self) -> dict[str, float]:
        async with self.http.get(self.base + "/metrics") as resp:
            text = await resp.text()
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    values[name] = float(value)
        return values

    async def healthy(self) -> bool:
        try:
            async with self.http.get(self.base + "/healthz", timeout=aiohttp.ClientTimeout(3)) as r:
                return r.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def participants(self, room: str) -> list[dict[str, Any]]:
        headers = {"Authorization": f"Bearer {operator()}"}
        async with self.http.get(
            self.base + f"/v1/rooms/{room}/participants", headers=headers
        ) as resp:
            if resp.status != 200:
                return []
            people: list[dict[str, Any]] = (await resp.json())["participants"]
            return people


def metric(values: dict[str, float], name: str, **labels: str) -> float:
    if not labels:
        return values.get(name, 0.0)
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return values.get(f"{name}{{{inner}}}", 0.0)


# the victim call ----------------------------------------------------------------------


@dataclass
class Victim:
    a: EurelayClient
    b: EurelayClient
    decoded: list[Decoded]
    tasks: list[asyncio.Task[None]]
    phases: list[tuple[str, float, float]] = field(default_factory=list)
    media_log: list[tuple[float, bytes]] = field(default_factory=list)

    def fps(self, start: float, end: float) -> float:
        """Frames decoded per second on the slower of the two directions."""
        return min(d.count_between(start, end) for d in self.decoded) / max(end - start, 1e-9)

    def worst_second(self, start: float, end: float) -> float:
        worst = float("inf")
        t = start
        while t + 1 <= end:
            worst = min(worst, self.fps(t, t + 1))
            t += 1
        return worst if worst != float("inf") else self.fps(start, end)

    def longest_gap(self, start: float, end: float) -> float:
        return max(d.longest_gap(start, end) for d in self.decoded)


async def decode_forever(track: Any, decoded: Decoded) -> None:
    while True:
        frame = await track.recv()
        decoded.times.append(time.monotonic())
        decoded.pts.append(frame.pts or 0)


@contextlib.asynccontextmanager
async def victim_call(target: Target) -> AsyncIterator[Victim]:
    """Two clients in room ``victim``; ``a``'s media goes through a capturing proxy."""
    captured: list[tuple[float, bytes]] = []

    def capture(direction: str, data: bytes, dropped: bool) -> None:
        """What the client sent (SRTP and SRTCP), which an attacker on the path would see."""
        if direction == "up" and data and 127 < data[0] < 192 and len(captured) < 5000:
            captured.append((time.monotonic(), data))

    proxy = UdpImpairmentProxy(("127.0.0.1", target.node.udp_port), tap=capture)
    via = ("127.0.0.1", await proxy.start())
    url = target.node.ws_url
    a = EurelayClient(url, tok(VICTIM, "alice"), host_addresses=LOOPBACK, media_via=via)
    b = EurelayClient(url, tok(VICTIM, "bob"), host_addresses=LOOPBACK)
    tasks: list[asyncio.Task[None]] = []
    try:
        await a.connect()
        await b.connect()
        await a.publish(FlatColorTrack(320, 240))
        await b.publish(FlatColorTrack(320, 240))
        decoded = [Decoded(), Decoded()]
        for client, sink in ((a, decoded[0]), (b, decoded[1])):
            _, track = await client.next_track(20)
            tasks.append(asyncio.create_task(decode_forever(track, sink)))
        victim = Victim(a, b, decoded, tasks, media_log=captured)
        if not await wait_for(lambda: min(len(d.times) for d in decoded) >= 30, 20):
            raise RuntimeError("the victim call never decoded")
        yield victim
    finally:
        for task in tasks:
            task.cancel()
        for client in (a, b):
            with contextlib.suppress(Exception):
                await client.close()
        proxy.close()


# attack helpers -----------------------------------------------------------------------


def outside_connector(n: int) -> aiohttp.TCPConnector:
    """HTTP from an attacker address (not loopback: the per-address limits apply)."""
    return aiohttp.TCPConnector(local_addr=(attacker_ip(n), 0), force_close=True)


async def status(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    token: str | None = None,
    body: bytes | str | None = None,
    content_type: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    if content_type is not None:
        h["Content-Type"] = content_type
    async with http.request(
        method, url, data=body, headers=h, timeout=aiohttp.ClientTimeout(15)
    ) as resp:
        text = await resp.text(errors="replace")
        code = ""
        with contextlib.suppress(ValueError, KeyError, TypeError):
            code = json.loads(text)["code"]
        return resp.status, code


async def ws_exchange(
    target: Target,
    first: dict[str, Any] | str | None,
    *,
    token: str | None = None,
    read: int = 3,
    timeout: float = 5,
) -> tuple[list[dict[str, Any]], int | None]:
    """Open /v1/rtc, send ``first``, read up to ``read`` messages; the messages and the
    close code (None while open)."""
    url = target.node.ws_url + (f"?access_token={token}" if token else "")
    messages: list[dict[str, Any]] = []
    async with target.http.ws_connect(url) as ws:
        if first is not None:
            await ws.send_str(first if isinstance(first, str) else json.dumps(first))
        for _ in range(read):
            msg = await ws.receive(timeout=timeout)
            if msg.type == aiohttp.WSMsgType.TEXT:
                messages.append(json.loads(msg.data))
            else:
                break
        return messages, ws.close_code


def codes(messages: list[dict[str, Any]]) -> list[str]:
    return [m.get("code") or m["type"] for m in messages]


class AttackPeer(RawPeer):
    """A raw DTLS-SRTP peer that may send from an attacker address."""

    def __init__(self, local_ip: str = "127.0.0.1", server: tuple[str, int] | None = None):
        super().__init__()
        self.local_ip = local_ip
        self.server_override = server
        self.received_from: set[tuple[str, int]] = set()

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=(self.local_ip, 0))

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received_from.add(addr)
        with contextlib.suppress(Exception):
            super().datagram_received(data, addr)

    async def connect(self, answer_sdp: str) -> None:
        if self.server_override is None:
            await super().connect(answer_sdp)
            return
        # connect() reads the server from the answer: point it at the override first
        answer = re.sub(
            r"(a=candidate:\S+ \d+ \w+ \d+ )\S+ \d+",
            lambda m: f"{m.group(1)}{self.server_override[0]} {self.server_override[1]}",  # type: ignore[index]
            answer_sdp,
        )
        await super().connect(answer)

    def send_raw(self, data: bytes) -> None:
        self._send(data)

    def sockname(self) -> tuple[str, int]:
        assert self.transport is not None
        name: tuple[str, int] = self.transport.get_extra_info("sockname")[:2]
        return name


class Signaling:
    """The WebSocket side of a raw peer."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.inbox: list[dict[str, Any]] = []
        self._reader: asyncio.Task[None] | None = None
        self.answering: RawPeer | None = None

    async def join(self, token: str) -> dict[str, Any]:
        self.ws = await self.target.http.ws_connect(self.target.node.ws_url)
        await self.ws.send_json({"type": "join", "token": token})
        return await self.expect("joined")

    async def send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send_json(message)

    async def expect(self, kind: str, timeout: float = 15) -> dict[str, Any]:
        assert self.ws is not None
        while True:
            msg = await self.ws.receive(timeout=timeout)
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"socket ended waiting for {kind}: {msg.type} {msg.data}")
            message: dict[str, Any] = json.loads(msg.data)
            if message["type"] == kind:
                return message
            if message["type"] == "error" and message.get("fatal"):
                raise RuntimeError(message)
            self.inbox.append(message)

    def keep_reading(self) -> None:
        self._reader = asyncio.create_task(self._read_all())

    async def _read_all(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            message = json.loads(msg.data)
            self.inbox.append(message)
            if message.get("type") == "subscriber_offer" and self.answering is not None:
                answer = self.answering.subscriber_answer(message["sdp"])
                await self.ws.send_json({"type": "subscriber_answer", "sdp": answer})

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self.ws is not None:
            await self.ws.close()


RED_OFFER_AUDIO = [
    "m=audio 9 UDP/TLS/RTP/SAVPF 63 111",
    "a=rtpmap:63 red/48000/2",
    "a=fmtp:63 111/111",
    "a=rtpmap:111 opus/48000/2",
]


def red_publisher_offer(peer: RawPeer, video_ssrc: int, audio_ssrc: int) -> str:
    """Video (VP8 with RTX offered) and audio (RED over Opus, as Chromium offers it)."""
    offer = peer.publisher_offer(video_ssrc, audio_ssrc)
    offer = offer.replace(
        "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n",
    ).replace(
        "a=rtpmap:96 VP8/90000\r\n",
        "a=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n",
    )
    offer = offer.replace(
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n", "\r\n".join(RED_OFFER_AUDIO[:1]) + "\r\n"
    ).replace("a=rtpmap:111 opus/48000/2\r\n", "\r\n".join(RED_OFFER_AUDIO[1:]) + "\r\n")
    return offer


@dataclass
class RawPublisher:
    sig: Signaling
    peer: AttackPeer
    video_ssrc: int
    audio_ssrc: int
    seq: dict[int, int] = field(default_factory=dict)

    def rtp(self, ssrc: int, payload_type: int, payload: bytes, marker: bool = False) -> None:
        assert self.peer.dtls is not None
        seq = self.seq.get(ssrc, secrets.randbits(15))
        self.seq[ssrc] = (seq + 1) & 0xFFFF
        header = struct.pack(
            "!BBHII", 0x80, (0x80 if marker else 0) | payload_type, seq, seq * 960, ssrc
        )
        self.peer.send_raw(self.peer.dtls.tx_srtp.protect(header + payload))


async def raw_publisher(
    target: Target, room: str, identity: str, local_ip: str = "127.0.0.1"
) -> RawPublisher:
    sig = Signaling(target)
    await sig.join(tok(room, identity))
    server = (SERVER_IP, target.node.udp_port) if local_ip != "127.0.0.1" else None
    peer = AttackPeer(local_ip, server)
    await peer.open()
    video, audio = secrets.randbits(32), secrets.randbits(32)
    await sig.send({"type": "publish_offer", "sdp": red_publisher_offer(peer, video, audio)})
    answer = await sig.expect("publish_answer")
    await peer.connect(answer["sdp"])
    sig.keep_reading()
    return RawPublisher(sig, peer, video, audio)


async def raw_subscriber(
    target: Target, room: str, identity: str, local_ip: str = "127.0.0.1"
) -> tuple[Signaling, AttackPeer, str]:
    sig = Signaling(target)
    await sig.join(tok(room, identity, publish=False))
    server = (SERVER_IP, target.node.udp_port) if local_ip != "127.0.0.1" else None
    peer = AttackPeer(local_ip, server)
    await peer.open()
    offer = await sig.expect("subscriber_offer")
    await sig.send({"type": "subscriber_answer", "sdp": peer.subscriber_answer(offer["sdp"])})
    await peer.connect(offer["sdp"])
    sig.answering = peer
    sig.keep_reading()
    return sig, peer, offer["sdp"]


def sender_ssrcs(offer_sdp: str) -> list[int]:
    return [int(m) for m in re.findall(r"a=ssrc:(\d+) ", offer_sdp)]


def rtcp_pli(sender: int, media: int) -> bytes:
    return struct.pack("!BBHII", 0x81, 206, 2, sender, media)


def rtcp_nack(sender: int, media: int, pid: int, blp: int) -> bytes:
    return struct.pack("!BBHIIHH", 0x81, 205, 3, sender, media, pid, blp)


def rtcp_rr(sender: int) -> bytes:
    return struct.pack("!BBHI", 0x80, 201, 1, sender)


async def wait_for(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def udp_barrier(t: Target) -> None:
    """Return once the relay has read every datagram sent to it so far: it reads its one
    socket in order, so its answer to a binding request sent now (a 400: no USERNAME)
    comes after it has handled all of them."""
    sock = udp_socket(attacker_ip(239))
    try:
        sock.sendto(stun.Message(stun.Method.BINDING, stun.Class.REQUEST).__bytes__(),
                    (SERVER_IP, t.node.udp_port))  # fmt: skip
        await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 2048), 10)
    finally:
        sock.close()


async def close_all(*closables: Any) -> None:
    for closable in closables:
        await closable.close()


def udp_socket(local_ip: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((local_ip, 0))
    sock.setblocking(False)
    return sock


# the categories -----------------------------------------------------------------------

Category = Callable[[Target, Victim, Results], Awaitable[None]]


async def tokens(t: Target, v: Victim, r: Results) -> None:
    c = "tokens"
    now = time.time()
    bad = {
        "garbage": "not.a.jwt",
        "empty": "",
        "wrong secret": tok(VICTIM, "mallory", secret=OTHER_SECRET),
        "unknown key": tok(VICTIM, "mallory", key="nokey"),
        "expired": tok(VICTIM, "mallory", ttl=10, now=now - 3600),
        "alg none": ".".join(
            __import__("base64").urlsafe_b64encode(json.dumps(x).encode()).decode().rstrip("=")
            for x in ({"alg": "none", "typ": "JWT", "kid": KEY}, {"sub": "m", "iss": KEY})
        )
        + ".",
        "huge": "a" * 200_000,
    }
    for name, token in bad.items():
        got, _code = await status(
            t.http, "POST", t.url(f"/whip/{VICTIM}"), token, "v=0", "application/sdp"
        )
        r.expect(c, f"WHIP with a {name} token", got, (401, 400, 431))
        _messages, close = await ws_exchange(t, {"type": "join", "token": token, "room": VICTIM})
        r.expect(c, f"join with a {name} token closes 4401", close, (4401, 1009, 1002))
    got, _ = await status(t.http, "GET", t.url("/v1/rooms"), tok(VICTIM, "x", admin=True))
    r.expect(c, "room admin token on operator route /v1/rooms", got, 403)
    got, _ = await status(t.http, "GET", t.url("/v1/nodes"), tok("", "x"))
    r.expect(c, "empty-room non-admin token on /v1/nodes", got, 403)
    got, _ = await status(t.http, "GET", t.url(f"/v1/rooms/{VICTIM}"), tok("", "x"))
    r.expect(c, "empty-room non-admin token on room admin route", got, 403)


async def cross_room(t: Target, v: Victim, r: Results) -> None:
    """Every route naming a room or a session, with an admin token for another room that
    carries the victim's identity."""
    c = "cross-room"
    evil = tok("evil", "alice", admin=True)
    alice = v.a.sid
    routes = [
        ("GET", f"/v1/rooms/{VICTIM}", None),
        ("DELETE", f"/v1/rooms/{VICTIM}", None),
        ("GET", f"/v1/rooms/{VICTIM}/participants", None),
        ("DELETE", f"/v1/rooms/{VICTIM}/participants/alice", None),
        ("PATCH", f"/v1/rooms/{VICTIM}/participants/alice", None),
        ("GET", f"/v1/route?room={VICTIM}", None),
        ("POST", "/v1/rooms", json.dumps({"name": VICTIM})),
        ("POST", f"/whip/{VICTIM}", "v=0\r\n"),
        ("POST", f"/whep/{VICTIM}", "v=0\r\n"),
        ("DELETE", f"/whip/{VICTIM}/{alice}", None),
        ("PATCH", f"/whip/{VICTIM}/{alice}", "a=end-of-candidates\r\n"),
        ("DELETE", f"/whep/{VICTIM}/{alice}", None),
        ("PATCH", f"/whep/{VICTIM}/{alice}", "a=end-of-candidates\r\n"),
        ("OPTIONS", f"/whip/{VICTIM}", None),
        ("OPTIONS", f"/whep/{VICTIM}", None),
    ]
    for method, path, body in routes:
        ctype = (
            "application/json"
            if path.startswith("/v1/")
            else "application/trickle-ice-sdpfrag"
            if method == "PATCH"
            else "application/sdp"
        )
        if method == "PATCH" and path.startswith("/v1/"):
            body = json.dumps(
                {
                    "permissions": {
                        "can_publish": False,
                        "can_subscribe": False,
                        "can_publish_data": False,
                    }
                }
            )
        got, code = await status(t.http, method, t.url(path), evil, body, ctype)
        r.expect(
            c, f"{method} {path.replace(alice, '{sid}')}", (got, code), ((403, "token_wrong_room"),)
        )
    # a token for the victim room but another identity: the session is not its own
    got, _ = await status(
        t.http, "DELETE", t.url(f"/whep/{VICTIM}/{alice}"), tok(VICTIM, "mallory")
    )
    r.expect(c, "WebSocket participant's sid under /whep/ with a room token", got, 404)
    _messages, close = await ws_exchange(
        t, {"type": "join", "token": tok("evil", "m"), "room": VICTIM}
    )
    r.expect(c, "join naming the victim room with another room's token", close, 4401)
    r.expect(c, "victim still has both participants", len(await t.participants(VICTIM)), 2)


async def websocket(t: Target, v: Victim, r: Results) -> None:
    c = "websocket"
    cases: list[tuple[str, Any, tuple[int, ...]]] = [
        ("binary first frame", None, (1002,)),
        ("invalid JSON", "{", (1002,)),
        ("unknown type", {"type": "nope"}, (1002,)),
        ("publish before join", {"type": "publish_offer", "sdp": "v=0", "tracks": []}, (1002,)),
        ("wrong version", {"type": "join", "token": tok("a1", "m"), "version": 99}, (1002,)),
        ("deep JSON", "[" * 100_000 + "]" * 100_000, (1002, 1009)),
        ("oversized frame", json.dumps({"type": "join", "token": "a" * 300_000}), (1009,)),
    ]
    for name, first, want in cases:
        if first is None:
            async with t.http.ws_connect(t.node.ws_url) as ws:
                await ws.send_bytes(b"\x00" * 10)
                await ws.receive(timeout=5)
                await ws.receive(timeout=5)
                close = ws.close_code
        else:
            _, close = await ws_exchange(t, first)
        r.expect(c, name, close, want)
    # a joined session: floods of bad and good messages, all answered, session kept
    sig = Signaling(t)
    await sig.join(tok("ws-abuse", "m"))
    assert sig.ws is not None
    for _ in range(300):
        await sig.ws.send_str(json.dumps({"type": "ping", "timestamp": 1}))
    got: list[str] = []
    with contextlib.suppress(TimeoutError):
        while True:
            msg = await sig.ws.receive(timeout=2)
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            got.append(json.loads(msg.data).get("code") or json.loads(msg.data)["type"])
    r.add(
        c,
        "300 pings at once: the excess is rate_limited",
        "rate_limited" in got,
        f"{len(got)} answers",
    )
    for bad in (
        {"type": "subscribe", "track_sid": "TR_" + "x" * 10_000},
        {"type": "set_quality", "track_sid": "x", "quality": "ultra"},
        {
            "type": "mute",
            "track_sid": (v.a.published and next(iter(v.a.published.values()))) or "x",
            "muted": True,
        },
        {"type": "subscriber_answer", "sdp": "v=0\r\n"},
        {
            "type": "publish_offer",
            "sdp": "v=0\r\n" + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" * 40,
            "tracks": [],
        },
        {"type": "join", "token": tok(VICTIM, "m")},
        {"type": "resume", "sid": v.a.sid, "resume_token": "x", "token": tok(VICTIM, "alice")},
    ):
        await sig.ws.send_str(json.dumps(bad))
        msg = await sig.ws.receive(timeout=5)
        code = json.loads(msg.data).get("code") if msg.type == aiohttp.WSMsgType.TEXT else msg.type
        r.add(
            c,
            f"joined session sends {bad['type']} (bad)",
            code not in (None, "internal_error"),
            str(code),
        )
    victim_tracks = [t2 for p in await t.participants(VICTIM) for t2 in p.get("tracks", [])]
    r.add(
        c,
        "muting the victim's track from another room did nothing",
        not any(x.get("muted") for x in victim_tracks),
        str([x.get("muted") for x in victim_tracks]),
    )
    await sig.close()
    # a client that never sends join is closed at join_timeout (10 s): checked with slow clients
    # Log injection: a token that names no room lets its holder name one in join (as the
    # app that minted it chose); a line break in it must not forge a log line.
    forged = "2026-01-01 00:00:00,000 ERROR eurelay forged by a room name"
    sig = Signaling(t)
    assert sig.ws is None
    sig.ws = await t.http.ws_connect(t.node.ws_url)
    await sig.send({"type": "join", "token": tok("", "m"), "room": f"inj\n{forged}"})
    joined = await sig.expect("joined")
    await sig.send({"type": "leave"})
    await sig.close()
    await wait_for(lambda: "left room inj" in t.log.read_text(), 5)
    lines = t.log.read_text().splitlines()
    r.add(
        c,
        "a room name with a line break forges no log line",
        not any(line.startswith(forged) for line in lines),
        f"joined {joined['room']!r}",
    )


async def resume(t: Target, v: Victim, r: Results) -> None:
    c = "resume"
    alice, token = v.a.sid, v.a.resume_token
    cases: list[tuple[str, dict[str, Any], int]] = [
        (
            "victim sid, wrong resume token",
            {"sid": alice, "resume_token": "x" * 32, "token": tok(VICTIM, "alice")},
            4404,
        ),
        (
            "victim sid, empty resume token",
            {"sid": alice, "resume_token": "", "token": tok(VICTIM, "alice")},
            1002,
        ),
        (
            "unknown sid",
            {"sid": "PA_nope", "resume_token": token, "token": tok(VICTIM, "alice")},
            4404,
        ),
        (
            "leaked resume token, another room's token",
            {"sid": alice, "resume_token": token, "token": tok("evil", "alice", admin=True)},
            4401,
        ),
        (
            "leaked resume token, same room, another identity",
            {"sid": alice, "resume_token": token, "token": tok(VICTIM, "mallory")},
            4403,
        ),
        ("leaked resume token, no token", {"sid": alice, "resume_token": token}, 4401),
        (
            "leaked resume token, expired token",
            {
                "sid": alice,
                "resume_token": token,
                "token": tok(VICTIM, "alice", ttl=5, now=time.time() - 60),
            },
            4401,
        ),
        (
            "empty sid and resume token",
            {"sid": "", "resume_token": "", "token": tok(VICTIM, "alice")},
            1002,
        ),
    ]
    for name, fields, want in cases:
        _messages, close = await ws_exchange(t, {"type": "resume", **fields})
        r.expect(c, name, close, want)
    r.expect(
        c,
        "victim's resume token still works after the attempts (not rotated by them)",
        v.a.resume_token,
        token,
    )

    # many concurrent resumes with wrong tokens while the session is live
    async def one() -> int | None:
        return (
            await ws_exchange(
                t,
                {
                    "type": "resume",
                    "sid": alice,
                    "resume_token": secrets.token_urlsafe(24),
                    "token": tok(VICTIM, "alice"),
                },
            )
        )[1]

    closes = await asyncio.gather(*(one() for _ in range(40)))
    r.add(c, "40 concurrent wrong resumes all refused", set(closes) == {4404}, str(set(closes)))
    # a session of the attacker's own: resumed twice at once with its own token
    sig = Signaling(t)
    joined = await sig.join(tok("resume-race", "m"))
    own_sid, own_token = joined["participant"]["sid"], joined["resume_token"]
    await sig.ws.close()  # type: ignore[union-attr]

    async def take() -> list[str]:
        messages, _ = await ws_exchange(
            t,
            {
                "type": "resume",
                "sid": own_sid,
                "resume_token": own_token,
                "token": tok("resume-race", "m"),
            },
            read=1,
        )
        return codes(messages)

    both = await asyncio.gather(take(), take())
    won = sum(1 for x in both if x and x[0] == "resumed")
    r.add(c, "two concurrent resumes with one token: one wins", won == 1, str(both))
    # a resume of a session whose socket is still open elsewhere: only with the token
    r.expect(c, "victim still has both participants", len(await t.participants(VICTIM)), 2)
    r.expect(c, "victim a's sid unchanged", v.a.sid, alice)


async def whip_bodies(t: Target, v: Victim, r: Results) -> None:
    c = "whip/whep bodies"
    room = "bodies"
    pub, sub = tok(room, "m"), tok(room, "m2", publish=False)
    mline = (
        "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\n"
        "a=rtpmap:96 VP8/90000\r\na=sendonly\r\n"
    )
    head = (
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=ice-ufrag:abcd\r\n"
        "a=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 "
        + ":".join(["AA"] * 32)
        + "\r\na=setup:actpass\r\n"
    )
    cases: list[tuple[str, str, bytes | str, str, tuple[int, ...]]] = [
        ("empty", "/whip", b"", "application/sdp", (400,)),
        ("garbage", "/whip", b"\x00\xff" * 100, "application/sdp", (400,)),
        ("not UTF-8", "/whep", b"v=0\r\n\xc3\x28", "application/sdp", (400,)),
        ("latin-1 charset", "/whip", b"v=0\r\n", "application/sdp; charset=latin-1", (415,)),
        ("JSON content type", "/whip", b"{}", "application/json", (415,)),
        ("64 KiB + 1", "/whip", b"v=0\r\n" + b"a=x\r\n" * 13108, "application/sdp", (413,)),
        (
            "17 m-lines",
            "/whip",
            head
            + "".join(mline.replace("a=sendonly", f"a=mid:{i}\r\na=sendonly") for i in range(17)),
            "application/sdp",
            (400,),
        ),
        (
            "17 m-lines WHEP",
            "/whep",
            head
            + "".join(
                mline.replace("sendonly", "recvonly").replace(
                    "a=recvonly", f"a=mid:{i}\r\na=recvonly"
                )
                for i in range(17)
            ),
            "application/sdp",
            (400,),
        ),
        (
            "only data channel",
            "/whip",
            head + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:0\r\n",
            "application/sdp",
            (400,),
        ),
    ]
    for name, kind, body, ctype, want in cases:
        got, _code = await status(
            t.http, "POST", t.url(f"{kind}/{room}"), pub if kind == "/whip" else sub, body, ctype
        )
        r.expect(c, f"{kind} {name}", got, want)
    # a body far larger than the limit, announced and chunked: refused without reading it all
    got, _ = await status(
        t.http, "POST", t.url(f"/whip/{room}"), pub, b"v=0\r\n" * 2_000_000, "application/sdp"
    )
    r.expect(c, "10 MB body with Content-Length", got, 413)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(200):
            yield b"a=x\r\n" * 10_000

    got, _ = await status(t.http, "POST", t.url(f"/whip/{room}"), pub, chunks(), "application/sdp")  # type: ignore[arg-type]
    r.expect(c, "10 MB chunked body (no Content-Length)", got, (413, 400))
    # a live WHEP session: PATCH fragments
    r.add(
        c,
        "no session leaked by the refused offers",
        not await t.participants(room),
        str(await t.participants(room)),
    )


async def admin_api(t: Target, v: Victim, r: Results) -> None:
    c = "admin api"
    room = "adminroom"
    admin = tok(room, "boss", admin=True)
    sig = Signaling(t)
    await sig.join(tok(room, "m"))
    sig.keep_reading()
    base = f"/v1/rooms/{room}/participants/m"
    bodies: list[tuple[str, bytes | str, tuple[int, ...]]] = [
        ("not JSON", b"{", (400,)),
        ("not UTF-8", b'{"permissions": "\xff"}', (400,)),
        ("missing grants", json.dumps({"permissions": {}}), (400, 422)),
        (
            "extra field (room_admin)",
            json.dumps(
                {
                    "permissions": {
                        "can_publish": True,
                        "can_subscribe": True,
                        "can_publish_data": True,
                        "room_admin": True,
                    }
                }
            ),
            (400, 422),
        ),
        (
            "extra top-level field",
            json.dumps(
                {
                    "permissions": {
                        "can_publish": True,
                        "can_subscribe": True,
                        "can_publish_data": True,
                    },
                    "identity": "alice",
                }
            ),
            (400, 422),
        ),
        (
            "unknown source",
            json.dumps(
                {
                    "permissions": {
                        "can_publish": True,
                        "can_subscribe": True,
                        "can_publish_data": True,
                        "sources": ["x" * 1000],
                    }
                }
            ),
            (400, 422),
        ),
        (
            "huge list of sources",
            json.dumps(
                {
                    "permissions": {
                        "can_publish": True,
                        "can_subscribe": True,
                        "can_publish_data": True,
                        "sources": ["camera"] * 100_000,
                    }
                }
            ),
            (200, 400, 413, 422),
        ),
        ("300 KB body", b"{" + b" " * 300_000 + b"}", (413, 400)),
        ("null", b"null", (400, 422)),
    ]
    for name, body, want in bodies:
        got, _code = await status(t.http, "PATCH", t.url(base), admin, body, "application/json")
        r.expect(c, f"PATCH {name}", got, want)
    got, _ = await status(
        t.http,
        "PATCH",
        t.url(f"/v1/rooms/{room}/participants/nobody"),
        admin,
        json.dumps(
            {"permissions": {"can_publish": True, "can_subscribe": True, "can_publish_data": True}}
        ),
        "application/json",
    )
    r.expect(c, "PATCH an identity not in the room", got, 404)
    got, _ = await status(
        t.http,
        "PATCH",
        t.url(f"/v1/rooms/{room}/participants/alice"),
        admin,
        json.dumps(
            {
                "permissions": {
                    "can_publish": False,
                    "can_subscribe": False,
                    "can_publish_data": False,
                }
            }
        ),
        "application/json",
    )
    r.expect(c, "PATCH the victim's identity in the admin's own room", got, 404)
    # a participant of a room PATCHing itself with its plain token
    got, _ = await status(
        t.http,
        "PATCH",
        t.url(base),
        tok(room, "m"),
        json.dumps(
            {"permissions": {"can_publish": True, "can_subscribe": True, "can_publish_data": True}}
        ),
        "application/json",
    )
    r.expect(c, "PATCH own grants with a non-admin token", got, 403)
    # PATCH floods: revoke and grant 200 times; the participant's session stays coherent
    flips = [
        status(
            t.http,
            "PATCH",
            t.url(base),
            admin,
            json.dumps(
                {
                    "permissions": {
                        "can_publish": i % 2 == 0,
                        "can_subscribe": True,
                        "can_publish_data": True,
                    }
                }
            ),
            "application/json",
        )
        for i in range(200)
    ]
    results = await asyncio.gather(*flips)
    r.add(
        c,
        "200 concurrent PATCHes answered 200",
        {x[0] for x in results} == {200},
        str({x[0] for x in results}),
    )
    for name, body in (
        ("room name 10 KB", {"name": "x" * 10_000}),
        ("room name with slash", {"name": "a/b"}),
        ("room name NUL", {"name": "a\u0000b"}),
        ("negative max_participants", {"name": room, "max_participants": -5}),
        ("huge audio_top_n", {"name": room, "audio_top_n": 10**18}),
    ):
        got, _ = await status(
            t.http, "POST", t.url("/v1/rooms"), operator(), json.dumps(body), "application/json"
        )
        r.expect(c, f"POST /v1/rooms {name}", got, (201, 400, 422))
    await sig.close()
    r.add(c, "server healthy", await t.healthy())


async def turn_options(t: Target, v: Victim, r: Results) -> None:
    c = "turn/options"

    async def links(path: str, token: str | None) -> tuple[int, list[str]]:
        h = {"Authorization": f"Bearer {token}"} if token else {}
        async with t.http.options(t.url(path), headers=h) as resp:
            return resp.status, resp.headers.getall("Link", [])

    got, ls = await links(f"/whip/{VICTIM}", None)
    r.add(
        c,
        "OPTIONS without a token: no TURN credential",
        got == 204 and not any("username" in x for x in ls),
        str(ls),
    )
    got, ls = await links(f"/whip/{VICTIM}", tok("evil", "m"))
    r.expect(c, "OPTIONS with another room's token", got, 403)
    got, ls = await links(f"/whip/{VICTIM}", tok(VICTIM, "m", publish=False))
    r.expect(c, "OPTIONS /whip with a subscribe-only token", got, 403)
    got, ls = await links(f"/whep/{VICTIM}", tok(VICTIM, "m", publish=False, subscribe=False))
    r.expect(c, "OPTIONS /whep with a no-subscribe token", got, 403)
    got, ls = await links(f"/whip/{VICTIM}", "garbage")
    r.expect(c, "OPTIONS with a garbage token", got, 401)
    got, ls = await links(f"/whip/{VICTIM}/{v.a.sid}", tok("evil", "m"))
    r.add(
        c,
        "OPTIONS on a session with another room's token: no TURN credential",
        not any("username" in x for x in ls),
        f"{got} {ls}",
    )
    got, ls = await links(f"/whip/{VICTIM}", tok(VICTIM, "m"))
    r.add(
        c,
        "OPTIONS with a publishing token: a TURN credential",
        any("username" in x for x in ls),
        str(len(ls)),
    )
    # credentials minted without a session are not counted against joins_per_ip
    async with aiohttp.ClientSession(connector=outside_connector(7)) as out:
        statuses = []
        for _ in range(120):
            async with out.options(
                t.url(f"/whip/{VICTIM}", outside=True),
                headers={"Authorization": f"Bearer {tok(VICTIM, 'm')}"},
            ) as resp:
                statuses.append(resp.status)
    r.add(
        c,
        "120 TURN credentials/s from one address (informational: not limited)",
        True,
        str(sorted(set(statuses))),
    )


async def rate_limits(t: Target, v: Victim, r: Results) -> None:
    c = "rate limits"
    before = await t.metrics()
    async with aiohttp.ClientSession(connector=outside_connector(11)) as out:
        got = []
        for _ in range(80):
            with contextlib.suppress(aiohttp.ClientError):
                async with out.post(
                    t.url("/whep/limits", outside=True),
                    data="v=0",
                    headers={"Content-Type": "application/sdp"},
                ) as resp:
                    got.append(resp.status)
        r.add(
            c,
            "80 WHEP starts in a second from one address: 429 past 50",
            got.count(429) >= 20,
            f"{got.count(429)} x 429",
        )
        async with out.get(t.url("/v1/rtc", outside=True)) as resp:
            r.expect(c, "WebSocket start past the limit: 429 before the upgrade", resp.status, 429)
    after = await t.metrics()
    r.add(
        c,
        "joins_rate_limited counted",
        metric(after, "eurelay_signaling_joins_rate_limited_total")
        > metric(before, "eurelay_signaling_joins_rate_limited_total"),
    )
    # STUN flood from one attacker address
    sock = udp_socket(attacker_ip(12))
    server = (SERVER_IP, t.node.udp_port)
    request = bytes([0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42]) + os.urandom(12)
    started = time.monotonic()
    sent = 0
    while time.monotonic() - started < 2.0:
        for _ in range(200):
            with contextlib.suppress(BlockingIOError):
                sock.sendto(request, server)
                sent += 1
        await asyncio.sleep(0.01)
    await udp_barrier(t)  # every request read, so every answer is here
    answers = 0
    with contextlib.suppress(BlockingIOError):
        while True:
            sock.recv(2048)
            answers += 1
    sock.close()
    after2 = await t.metrics()
    limited = metric(
        after2, "eurelay_relay_dropped_packets_total", reason="stun_rate_limited"
    ) - metric(after, "eurelay_relay_dropped_packets_total", reason="stun_rate_limited")
    r.add(
        c,
        f"STUN flood ({sent} in 2 s from one address): answered at most ~1,000/s",
        answers <= 2200 and limited > 0,
        f"{answers} answers, {limited:.0f} limited",
    )
    # SRTP from unlatched addresses of one IP (moves)
    sock = udp_socket(attacker_ip(13))
    sent = 0
    started = time.monotonic()
    while time.monotonic() - started < 2.0:
        for _ in range(200):
            pkt = struct.pack(
                "!BBHII", 0x80, 96, sent & 0xFFFF, 0, secrets.randbits(32)
            ) + os.urandom(100)
            with contextlib.suppress(BlockingIOError):
                sock.sendto(pkt, server)
                sent += 1
        await asyncio.sleep(0.01)
    sock.close()
    await udp_barrier(t)
    after3 = await t.metrics()
    moved = metric(
        after3, "eurelay_relay_dropped_packets_total", reason="move_rate_limited"
    ) - metric(after2, "eurelay_relay_dropped_packets_total", reason="move_rate_limited")
    r.add(
        c,
        f"SRTP from unlatched ports of one address ({sent} in 2 s): limited",
        moved > 0,
        f"{moved:.0f} move_rate_limited",
    )


async def udp_garbage(t: Target, v: Victim, r: Results) -> None:
    c = "udp"
    before = await t.metrics()
    server = (SERVER_IP, t.node.udp_port)
    sock = udp_socket(attacker_ip(20))
    kinds = {
        "empty": b"",
        "one byte per class": None,
        "STUN without integrity": bytes([0, 1, 0, 0, 0x21, 0x12, 0xA4, 0x42]) + os.urandom(12),
        "STUN with bad integrity": None,
        "STUN success response": bytes([1, 1, 0, 0, 0x21, 0x12, 0xA4, 0x42]) + os.urandom(12),
        "DTLS ClientHello from nowhere": bytes([22, 254, 253]) + os.urandom(60),
        "RTCP BYE from nowhere": struct.pack("!BBHI", 0x81, 203, 1, 1234),
        "64 KB datagram": os.urandom(60_000),
    }
    for name, data in kinds.items():
        if name == "one byte per class":
            for b in range(256):
                sock.sendto(bytes([b]) + os.urandom(30), server)
        elif name == "STUN with bad integrity":
            msg = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
            msg.attributes["USERNAME"] = "nobody:evil"
            msg.add_message_integrity(b"wrong-password")
            sock.sendto(bytes(msg), server)
        else:
            assert data is not None
            sock.sendto(data, server)
        await asyncio.sleep(0.02)
        r.add(c, f"{name}: node healthy", await t.healthy())
    sock.close()
    after = await t.metrics()
    dropped = sum(
        v2 for k, v2 in after.items() if k.startswith("eurelay_relay_dropped_packets_total")
    ) - sum(v2 for k, v2 in before.items() if k.startswith("eurelay_relay_dropped_packets_total"))
    r.add(c, "every garbage datagram counted as dropped", dropped >= 256, f"{dropped:.0f} dropped")


async def handover(t: Target, v: Victim, r: Results) -> None:
    """Hijack a victim leg by sending its own (captured) SRTP/SRTCP from a new address."""
    c = "handover"
    server = (SERVER_IP, t.node.udp_port)
    captured = list(v.media_log)
    r.add(
        c, "captured the victim's SRTP on the path", len(captured) > 50, f"{len(captured)} packets"
    )
    before = await t.metrics()
    changes = metric(before, "eurelay_relay_address_changes_total")
    sock = udp_socket(attacker_ip(30))
    sock2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # loopback: exempt from limits
    sock2.bind(("127.0.0.1", 0))
    sock2.setblocking(False)
    # replays of what the relay saw, from an attacker address and from loopback
    for _, data in captured[-400:]:
        with contextlib.suppress(BlockingIOError):
            sock.sendto(data, server)
            sock2.sendto(data, ("127.0.0.1", t.node.udp_port))
        await asyncio.sleep(0.001)
    # forgeries: the victim's SSRCs with a flipped byte in the payload or tag
    for _, data in captured[-200:]:
        forged = bytearray(data)
        forged[-1] ^= 0x55
        forged[2:4] = ((int.from_bytes(data[2:4], "big") + 50) & 0xFFFF).to_bytes(2, "big")
        with contextlib.suppress(BlockingIOError):
            sock2.sendto(bytes(forged), ("127.0.0.1", t.node.udp_port))
        await asyncio.sleep(0.001)
    # a fresh packet number with the victim's SSRC, random auth tag
    for data in (d for _, d in captured[-100:] if 191 < d[1] < 224):
        forged = bytearray(data)
        forged[-14:] = os.urandom(14)  # SRTCP index and tag
        with contextlib.suppress(BlockingIOError):
            sock2.sendto(bytes(forged), ("127.0.0.1", t.node.udp_port))
    await udp_barrier(t)  # replays and forgeries read: none authenticates, so no check starts
    after = await t.metrics()
    moved = metric(after, "eurelay_relay_address_changes_total") - changes
    r.add(
        c,
        "replayed and forged victim SRTP/SRTCP moved no leg",
        moved == 0,
        f"{moved:.0f} address changes",
    )
    got = 0
    with contextlib.suppress(BlockingIOError):
        while True:
            sock2.recv(2048)
            got += 1
    with contextlib.suppress(BlockingIOError):
        while True:
            sock.recv(2048)
            got += 1
    r.add(c, "nothing sent back to the replaying addresses", got == 0, f"{got} datagrams")
    sock.close()
    sock2.close()
    # the attacker's own leg, pointed by its own packets at addresses that never consent
    sig, peer, _offer = await raw_subscriber(t, "handover-own", "m")
    pub = await raw_publisher(t, "handover-own", "p")
    for _ in range(50):
        pub.rtp(pub.audio_ssrc, 111, os.urandom(60))
        await asyncio.sleep(0.005)
    assert peer.dtls is not None
    for _ in range(3):  # receiver reports from where it is: the relay learns its SSRC
        peer.send_raw(peer.dtls.tx_srtp.protect_rtcp(rtcp_rr(1)))
    await udp_barrier(t)
    # Stand-ins for spoofed sources, which never answer the relay's checks: one sends an
    # SRTCP packet the leg's keys authenticate; once the relay gave up on that one (a leg
    # has one check at a time), the other a binding request with the leg's credentials.
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    request.attributes["USERNAME"] = f"{peer.remote_creds[0]}:{peer.creds.ufrag}"
    request.attributes["PRIORITY"] = 0x6E0001FF
    request.attributes["ICE-CONTROLLING"] = 1
    request.add_message_integrity(peer.remote_creds[1].encode())
    attempts = (
        ("SRTCP", peer.dtls.tx_srtp.protect_rtcp(rtcp_rr(1)), "the relay's checks"),
        ("a binding request", bytes(request), "its answer, the relay's checks"),
    )
    for name, packet, stun_sent in attempts:
        spoofed = udp_socket("127.0.0.1")
        spoofed.sendto(packet, ("127.0.0.1", t.node.udp_port))
        for _ in range(100):  # past the relay's checks (~0.75 s)
            pub.rtp(pub.audio_ssrc, 111, os.urandom(60))
            await asyncio.sleep(0.01)
        media = checks = 0
        with contextlib.suppress(BlockingIOError):
            while True:
                data = spoofed.recv(2048)
                if data and data[0] < 4:
                    checks += 1
                elif data and 127 < data[0] < 192:
                    media += 1
        r.add(
            c,
            f"own leg not moved by {name} from an address that never answered a check",
            media == 0,
            f"{media} SRTP/SRTCP datagrams to it ({checks} STUN: {stun_sent})",
        )
        spoofed.close()
    await close_all(sig, pub.sig, peer, pub.peer)


async def red_rtx(t: Target, v: Victim, r: Results) -> None:
    c = "red/rtx"
    room = "redroom"
    pub = await raw_publisher(t, room, "p")
    sig, sub, offer = await raw_subscriber(t, room, "s")
    before = await t.metrics()
    malformed = [
        b"",  # no RED header at all
        b"\xe3",  # F=1 header cut short
        b"\xe3\x00\x00",  # 3 of 4 header bytes
        b"\xe3\x00\x03\xff" + b"\x6f" + b"x" * 10,  # redundant block longer than the payload
        b"\xe3" * 40,  # headers to the end
        b"\x6f",  # a primary block with no data
        b"\xe3\x00\x00\x00" * 200 + b"\x6f" + b"x",  # 200 empty redundant blocks
        b"\xff\xff\xff\xff\x6f",
    ]
    for i, payload in enumerate(malformed):
        for _ in range(5):
            pub.rtp(pub.audio_ssrc, 63, payload)
        await asyncio.sleep(0.02)
        r.add(c, f"malformed RED #{i} ({len(payload)} bytes): node healthy", await t.healthy())
    # RTX from the publisher (not negotiated by the relay) and short RTX payloads
    for payload in (b"", b"\x01", b"\x00\x01" + os.urandom(100)):
        for _ in range(20):
            pub.rtp(pub.video_ssrc, 97, payload)
            pub.rtp(secrets.randbits(32), 97, payload)
    # the subscriber NACKs RTX SSRCs and everything else
    assert sub.dtls is not None
    ssrcs = sender_ssrcs(offer)
    for ssrc in [*ssrcs, 0, 4294967295]:
        for pid in (0, 65535, 32768):
            sub.send_raw(sub.dtls.tx_srtp.protect_rtcp(rtcp_nack(1, ssrc, pid, 0xFFFF)))
    await udp_barrier(t)
    after = await t.metrics()
    r.add(
        c,
        "malformed RED counted (red_malformed)",
        metric(after, "eurelay_relay_dropped_packets_total", reason="red_malformed")
        > metric(before, "eurelay_relay_dropped_packets_total", reason="red_malformed"),
    )
    r.add(c, "node healthy after RED/RTX abuse", await t.healthy())
    await close_all(sig, pub.sig, sub, pub.peer)


async def rtcp_floods(t: Target, v: Victim, r: Results) -> None:
    c = "rtcp floods"
    room = "floodroom"
    pub = await raw_publisher(t, room, "p")
    subs = [await raw_subscriber(t, room, f"s{i}") for i in range(3)]
    # a keyframe: the video track exists once media flows
    for _i in range(30):
        pub.rtp(pub.video_ssrc, 96, b"\x10\x00" + os.urandom(200), marker=True)
        pub.rtp(pub.audio_ssrc, 63, b"\x6f" + os.urandom(60))
        await asyncio.sleep(0.01)
    before = await t.metrics()
    pub.peer.keyframe_requests_at.clear()
    started = time.monotonic()
    sent = 0
    while time.monotonic() - started < 3.0:
        for _, peer, offer in subs:
            assert peer.dtls is not None
            for ssrc in sender_ssrcs(offer):
                peer.send_raw(peer.dtls.tx_srtp.protect_rtcp(rtcp_pli(1, ssrc)))
                peer.send_raw(
                    peer.dtls.tx_srtp.protect_rtcp(rtcp_nack(1, ssrc, secrets.randbits(16), 0xFFFF))
                )
                sent += 2
        pub.rtp(pub.video_ssrc, 96, b"\x10\x01" + os.urandom(200), marker=True)
        await asyncio.sleep(0.002)
    await udp_barrier(t)  # the relay read all the PLIs and NACKs
    elapsed = time.monotonic() - started
    after = await t.metrics()
    plis = len(pub.peer.keyframe_requests_at)
    r.add(
        c,
        f"{sent} PLIs and NACKs in 3 s from 3 subscribers: publisher asked <= ~2/s",
        plis <= 3 * elapsed + 2,
        f"{plis} keyframe requests ({plis / elapsed:.1f}/s)",
    )
    nacks = metric(after, "eurelay_relay_nack_received_total") - metric(
        before, "eurelay_relay_nack_received_total"
    )
    r.add(
        c,
        "NACK flood counted and answered without harm",
        await t.healthy(),
        f"{nacks:.0f} NACKs received",
    )
    await close_all(*(x for sig, peer, _ in subs for x in (sig, peer)), pub.sig, pub.peer)


async def slow_clients(t: Target, v: Victim, r: Results) -> None:
    c = "slow clients"
    host, port = "127.0.0.1", t.port
    # slowloris: many connections sending headers a byte at a time
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    for i in range(300):
        reader, writer = await asyncio.open_connection(
            SERVER_IP, port, local_addr=(attacker_ip(40 + i % 100), 0)
        )
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        conns.append((reader, writer))
    # slow bodies: a WHIP POST announcing 60 KB and sending a byte a second
    slow_body: list[asyncio.StreamWriter] = []
    for i in range(50):
        reader, writer = await asyncio.open_connection(
            SERVER_IP, port, local_addr=(attacker_ip(140 + i), 0)
        )
        writer.write(
            "POST /whip/slow HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {tok('slow', f'm{i}')}\r\n"
            "Content-Type: application/sdp\r\nContent-Length: 60000\r\n\r\nv=0\r\n".encode()
        )
        slow_body.append(writer)
        conns.append((reader, writer))
    # WebSockets upgraded, never joining (their own session: the shared one pools 100)
    quiet_http = aiohttp.ClientSession()
    silent = [await quiet_http.ws_connect(t.node.ws_url) for _ in range(100)]
    r.add(
        c,
        "node healthy with 300 slowloris, 50 slow-body and 100 silent WebSocket connections",
        await t.healthy(),
    )

    async def closed_ws(ws: aiohttp.ClientWebSocketResponse) -> float:
        began = time.monotonic()
        with contextlib.suppress(TimeoutError):
            while True:
                msg = await ws.receive(timeout=45)
                if msg.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.CLOSING,
                    aiohttp.WSMsgType.ERROR,
                ):
                    return time.monotonic() - began
        return float("inf")

    async def closed_tcp(reader: asyncio.StreamReader) -> float:
        began = time.monotonic()
        with contextlib.suppress(TimeoutError, ConnectionError):
            while await asyncio.wait_for(reader.read(4096), 45):
                pass
            return time.monotonic() - began
        return float("inf")

    watching = [asyncio.ensure_future(closed_ws(ws)) for ws in silent]
    watching += [asyncio.ensure_future(closed_tcp(rd)) for rd, _ in conns]
    started = time.monotonic()
    while time.monotonic() < started + 40 and not all(w.done() for w in watching):
        for (_, writer), watch in zip(conns, watching[100:], strict=True):
            if not watch.done():  # still open: one more byte
                writer.write(b"X" if writer not in slow_body else b"a")
        await asyncio.sleep(1.0)
    elapsed = time.monotonic() - started
    for w in watching:
        w.cancel()
    done = [w.result() if w.done() and not w.cancelled() else float("inf") for w in watching]
    ws_times, header_times, body_times = done[:100], done[100:400], done[400:]

    def summary(times: list[float]) -> str:
        closed = [x for x in times if x != float("inf")]
        return f"{len(closed)}/{len(times)} closed" + (
            f", last after {max(closed):.0f} s" if closed else ""
        )

    r.add(
        c,
        "silent WebSockets closed by join_timeout (10 s)",
        all(x < 15 for x in ws_times),
        summary(ws_times),
    )
    r.add(
        c,
        f"slowloris connections (a header byte a second) closed within {elapsed:.0f} s",
        all(x != float("inf") for x in header_times),
        summary(header_times),
    )
    r.add(
        c,
        f"slow-body WHIP POSTs (a body byte a second) closed by the server within {elapsed:.0f} s",
        all(x != float("inf") for x in body_times),
        summary(body_times),
    )
    for _, writer in conns:
        writer.close()
    for ws in silent:
        await ws.close()
    await quiet_http.close()
    # malformed HTTP requests: each one answered 400; the log must not grow with them
    before_errors = t.log.read_text().count(" ERROR ")
    for i in range(200):
        reader, writer = await asyncio.open_connection(
            SERVER_IP, port, local_addr=(attacker_ip(60 + i % 50), 0)
        )
        writer.write(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"
            if i % 2
            else b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n"
        )
        with contextlib.suppress(ConnectionError, TimeoutError):
            await asyncio.wait_for(reader.read(1000), 5)
        writer.close()
    # no wait: each request's record was written before its answer was read
    errors = t.log.read_text().count(" ERROR ") - before_errors
    r.add(
        c,
        "200 malformed HTTP requests: logged at most once per kind",
        errors <= 2,
        f"{errors} ERROR records",
    )
    # a joined WebSocket client that stops reading (30,000 pings, tiny receive buffer)
    before_log = t.log.read_text().count("too slow to read")
    reader, writer = await asyncio.open_connection(host, port)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    writer.write(
        f"GET /v1/rtc HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    await reader.readuntil(b"\r\n\r\n")

    def frame(text: str) -> bytes:
        data = text.encode()
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        length = len(data)
        head = bytes([0x81]) + (
            bytes([0x80 | length])
            if length < 126
            else bytes([0x80 | 126]) + struct.pack("!H", length)
        )
        return head + mask + masked

    writer.write(frame(json.dumps({"type": "join", "token": tok("slowreader", "m")})))
    for _ in range(30_000):
        writer.write(frame('{"type":"ping","timestamp":1}'))
    with contextlib.suppress(ConnectionError):
        await asyncio.wait_for(writer.drain(), 20)
    # wait for the one log line (or its absence) rather than a fixed time
    await wait_for(lambda: t.log.read_text().count("too slow to read") > before_log, 10)
    lines = t.log.read_text().count("too slow to read") - before_log
    r.add(
        c,
        "a client that stops reading is cut off and logged once",
        lines <= 1,
        f"{lines} log lines",
    )
    writer.close()


CATEGORIES: dict[str, Category] = {
    "tokens": tokens,
    "cross-room": cross_room,
    "websocket": websocket,
    "resume": resume,
    "whip": whip_bodies,
    "admin": admin_api,
    "turn": turn_options,
    "limits": rate_limits,
    "udp": udp_garbage,
    "handover": handover,
    "red": red_rtx,
    "rtcp": rtcp_floods,
    "slow": slow_clients,
}


# the run ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def target_node(log: Path) -> AsyncIterator[Target]:
    config = Path(tempfile.mkdtemp()) / "attack.yaml"
    config.write_text(config_text())
    with log.open("wb") as sink:
        async with (
            spawn_node(config, "--log-level", "info", stderr=sink) as node,
            aiohttp.ClientSession() as http,
        ):
            yield Target(node, http, log)


async def run(only: list[str], log: Path) -> int:
    restrict_ice_host_addresses(LOOPBACK)
    results = Results()
    async with target_node(log) as target, victim_call(target) as victim:
        print(
            f"node pid {target.node.pid} http {target.base} udp {target.node.udp_port}", flush=True
        )
        baseline = time.monotonic()
        await asyncio.sleep(5)
        victim.phases.append(("before", baseline, time.monotonic()))
        sids = (victim.a.sid, victim.b.sid)
        for name, category in CATEGORIES.items():
            if only and name not in only:
                continue
            start = time.monotonic()
            try:
                await category(target, victim, results)
            except Exception as exc:  # a harness failure is a failed check, not the end
                results.add(name, "category ran to its end", False, repr(exc))
            victim.phases.append((name, start, time.monotonic()))
        during_end = time.monotonic()
        await asyncio.sleep(5)
        victim.phases.append(("after", during_end, time.monotonic()))
        people = await target.participants(VICTIM)
        results.add(
            "state",
            "victim room kept both participants, same sids",
            sorted(p["sid"] for p in people) == sorted(sids),
            str([p["sid"] for p in people]),
        )
        results.add(
            "state",
            "victim tracks still published",
            sum(len(p.get("tracks", [])) for p in people) == 2,
        )
        results.add("state", "node healthy at the end", await target.healthy())
        results.add("state", "server process alive", target.node.process.returncode is None)
        log_text = log.read_text()
        tracebacks = log_text.count("Traceback")
        results.add("state", "no traceback in the server's log", tracebacks == 0, f"{tracebacks}")
        report(results, victim)
    return 0 if all(c.ok for c in results.checks) else 1


def report(results: Results, victim: Victim) -> None:
    print("\n| category | checks | failed |\n|---|---|---|")
    by: dict[str, list[Check]] = defaultdict(list)
    for check in results.checks:
        by[check.category].append(check)
    for category, checks in by.items():
        print(f"| {category} | {len(checks)} | {sum(1 for x in checks if not x.ok)} |")
    print(f"| total | {len(results.checks)} | {sum(1 for x in results.checks if not x.ok)} |")
    print(
        "\nvictim call, frames decoded per second (slower direction): "
        "mean / worst second / longest gap"
    )
    whole_start = victim.phases[1][1] if len(victim.phases) > 1 else victim.phases[0][1]
    whole_end = victim.phases[-1][1]
    for name, start, end in victim.phases:
        if end - start < 1.0:
            print(f"  {name:12s} (under a second)")
            continue
        print(
            f"  {name:12s} {victim.fps(start, end):5.1f} / "
            f"{victim.worst_second(start, end):5.1f} / "
            f"{victim.longest_gap(start, end):.2f} s  ({end - start:.0f} s)"
        )
    print(
        f"  {'during all':12s} {victim.fps(whole_start, whole_end):5.1f} / "
        f"{victim.worst_second(whole_start, whole_end):5.1f} / "
        f"{victim.longest_gap(whole_start, whole_end):.2f} s"
    )
    for check in results.checks:
        if not check.ok:
            print(f"FAILED [{check.category}] {check.name}: {check.detail}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="*", default=[], choices=list(CATEGORIES))
    parser.add_argument("--keep-log", type=Path, default=None)
    args = parser.parse_args()
    if not any("10.77.0.0/24" in line for line in os.popen("ip -4 route show table local")):
        sys.exit(
            "run inside: unshare -n sh -c 'ip link set lo up && "
            "ip route add local 10.77.0.0/24 dev lo && python -m tests.security.attack'"
        )
    log = args.keep_log or Path(tempfile.mkdtemp()) / "server.log"
    sys.exit(asyncio.run(run(args.only, log)))


if __name__ == "__main__":
    main()
