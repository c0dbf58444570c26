"""The fuzz targets: every parser a peer controls, each as ``check(data: bytes)``.

A check returns when the property holds and raises otherwise: ``PropertyViolation`` when the
relay answered wrongly, or whatever unexpected exception escaped. The same checks run
under hypothesis (``tests/fuzz/test_fuzz.py``, a bounded run in ``make test``) and under
atheris (``tests/fuzz/run.py``, ``make fuzz``, coverage-guided and as long as asked).

The property, for every target: the parser returns a valid result or raises the
project's own error type, never another exception, a hang or unbounded state, and the
server keeps serving. Targets that need a server open one with ``open_target``, which
yields the check; pure ones need nothing.

- ``stun``: datagrams (``media.join_frames``) to the ICE-lite responder, the ICE
  initiator and the mux.
- ``rtp``: datagrams from a publisher: the RFC 7983 demux, the RTP header and its
  extensions (TWCC, mid, rid), keyframe detection, forwarding, RTCP sender reports, and
  the NACK, receiver report and TWCC feedback the relay writes back.
- ``rtcp``: datagrams from a subscriber: compound RTCP, PLI, FIR, REMB, NACK, RR/SR, TWCC.
- ``sdp``: an SDP text: ``parse_description``, the offer checks, the answers written.
- ``ws_parse``: one WebSocket frame through ``RtcSession._parse``.
- ``token``: an access token (``signaling.tokens.verify``), or a JSON payload the target
  signs with the node's key, so claims of any shape reach validation.
- ``data``: one data channel message (``relay.data_message.relay_data_message``).
- ``ws``: one WebSocket frame to a joined session on a loopback node (a ``join`` frame
  also as the first frame of a new socket).
- ``whip``, ``whep``: an SDP offer to ``POST /whip/{room}``, ``POST /whep/{room}``.
- ``trickle``: an sdpfrag to ``PATCH`` a live WHIP or WHEP session.

An HTTP target's input may open with a line of request options, ``?key=value&...\\n``:
``ct`` (Content-Type), ``rtt`` and ``participant`` (query), ``if-match`` (``ETAG`` stands for
the session's), ``kind`` (``whip`` or ``whep``, trickle only). Without it, defaults.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from aioice import stun
from aiortc import sdp as aiortc_sdp

from relay import rtcp
from relay.codecs import SUPPORTED, VP8, Codec
from relay.errors import SdpError
from relay.ice_initiator import IceInitiator
from relay.negotiation import SubscriberNegotiation
from relay.sdp_negotiation import (
    LocalTransport,
    SubscriberSlot,
    check_client_offer,
    choose_codec,
    parse_description,
    publisher_answer,
    subscriber_offer,
    twcc_extension,
    viewer_answer,
    viewer_slots,
)
from relay.udp_mux import UdpMux
from signaling import protocol as p
from signaling.rtc_session import RtcSession

from .media import (
    PUBLISHER_ADDR,
    PUBLISHER_ICE,
    STRANGER_ADDR,
    SUBSCRIBER_ADDR,
    MediaHarness,
    PropertyViolation,
    last_resort_watch,
    split_frames,
)

HERE = Path(__file__).parent
SEEDS = HERE / "seeds"
REGRESSIONS = HERE / "regressions"
INITIATOR_TXID = b"fuzz-txid-01"  # as in make_seeds
STUN_ANSWER_MAX = 128  # bytes: the relay's answers to checks stay small (no amplification)
HANG_SECONDS = 10.0  # one input taking longer than this on a loopback node is a hang

Check = Callable[[bytes], None]


def seeds(target: str) -> list[bytes]:
    folder = SEEDS / SEED_DIRS.get(target, target)
    return [path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()]


def regressions(target: str) -> list[Path]:
    folder = REGRESSIONS / target
    return sorted(folder.iterdir()) if folder.is_dir() else []


def save_failure(target: str, data: bytes) -> Path:
    """Keep a failing input as a regression case (``tests/fuzz/regressions/<target>/``)."""
    folder = REGRESSIONS / target
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (hashlib.sha1(data).hexdigest()[:16] + ".bin")
    path.write_bytes(data)
    return path


# datagrams ------------------------------------------------------------------------------------


def _rtcp_parse_contract(frame: bytes) -> None:
    """``relay.rtcp.parse`` says it raises ValueError on garbage: nothing else."""
    if not rtcp.is_rtcp(frame):
        return
    with contextlib.suppress(ValueError):
        rtcp.parse(frame)


def _check_stun_answer(request: bytes, answer: bytes) -> None:
    if len(answer) > STUN_ANSWER_MAX:
        raise PropertyViolation(f"a {len(request)}-byte check got a {len(answer)}-byte answer")
    parsed = stun.parse_message(answer)
    if parsed.transaction_id != request[8:20]:
        raise PropertyViolation("the answer does not carry the request's transaction id")


def check_stun(data: bytes) -> None:
    harness = MediaHarness()
    now = time.perf_counter()
    initiator = IceInitiator(PUBLISHER_ICE, _initiator_remote(), STRANGER_ADDR, now)
    initiator._outstanding[INITIATOR_TXID] = None
    # An initiating leg's own socket: STUN answers from its remote are for its initiator.
    own = UdpMux(harness.stats)
    own.connection_made(harness.transport)  # type: ignore[arg-type]
    harness.publisher.initiator = initiator
    own.initiating = harness.publisher
    responder = harness.mux.responder
    with last_resort_watch() as watch:
        for i, frame in enumerate(split_frames(data)):
            addr = (PUBLISHER_ADDR, STRANGER_ADDR)[i % 2]
            try:
                answer, _ = responder.handle(frame, addr)
            except ValueError:
                pass
            else:
                if answer is not None:
                    _check_stun_answer(frame, answer)
            with contextlib.suppress(ValueError):
                initiator.handle(frame, STRANGER_ADDR, now)
            harness.feed(frame, addr, watch)
            before = len(watch.records)
            own.datagram_received(frame, STRANGER_ADDR)
            if len(watch.records) > before:
                raise PropertyViolation("the initiating mux's catch-all fired")
            harness.check_output_and_bounds()


@functools.cache
def _initiator_remote() -> Any:
    from relay.ice_lite import IceCredentials

    return IceCredentials("remfrag1", "remote-password-0123456789")


def check_rtp(data: bytes) -> None:
    harness = MediaHarness()
    with last_resort_watch() as watch:
        for i, frame in enumerate(split_frames(data)):
            _rtcp_parse_contract(frame)
            harness.feed(frame, PUBLISHER_ADDR, watch)
            if i % 4 == 3:
                harness.tick(time.monotonic())
            harness.check_output_and_bounds()
        harness.tick(time.monotonic())
        harness.check_output_and_bounds()


@functools.cache
def _prefeed() -> list[bytes]:
    """A publisher's real stream (VP8, Opus, simulcast, H.264, an SR) that fills the caches
    and starts the subscriber's copies before its RTCP arrives."""
    return split_frames((SEEDS / "rtp" / "mixed.bin").read_bytes())


def check_rtcp(data: bytes) -> None:
    harness = MediaHarness()
    with last_resort_watch() as watch:
        for frame in _prefeed():
            harness.feed(frame, PUBLISHER_ADDR, watch)
        harness.tick(time.monotonic())
        harness.check_output_and_bounds()
        for i, frame in enumerate(split_frames(data)):
            _rtcp_parse_contract(frame)
            harness.feed(frame, SUBSCRIBER_ADDR, watch)
            if i % 4 == 3:
                harness.tick(time.monotonic())
            harness.check_output_and_bounds()


# SDP ------------------------------------------------------------------------------------------

_LOCAL = LocalTransport(PUBLISHER_ICE, ("sha-256", ":".join(["CD"] * 32)), [("192.0.2.1", 7882)])


def _check_answer(offer_mids: list[str], answer: str) -> None:
    """What the relay writes parses, and an answer has every offered m-line in order
    (RFC 3264 section 6)."""
    try:
        parsed = aiortc_sdp.SessionDescription.parse(answer)
    except Exception as exc:
        raise PropertyViolation(f"the relay wrote SDP aiortc cannot parse: {exc!r}") from exc
    mids = [m.rtp.muxId for m in parsed.media]
    if mids != offer_mids:
        raise PropertyViolation(f"answer m-lines {mids} for offered {offer_mids}")


def _check_subscriber_offer(published: list[Codec]) -> None:
    """The offer a subscriber of these tracks gets (codecs as ``Subscriptions.add`` derives
    them from the publisher's) parses too."""
    slots = []
    for i, codec in enumerate(published):
        base = SUPPORTED[codec.mime.lower()]
        fmtp = dict(codec.fmtp) or dict(base.fmtp)
        derived = Codec(codec.mime, base.clock_rate, base.payload_type, base.channels, fmtp)
        slots.append(SubscriberSlot(str(i), codec.kind, derived, 0xA000 + i, "PA_x", f"TR_{i}"))
    offer = subscriber_offer(_LOCAL, slots, 1, 1)
    _check_answer(["data", *(s.mid for s in slots)], offer)


def check_sdp(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    try:
        offer = parse_description(text)
    except SdpError:
        return
    with contextlib.suppress(SdpError):
        check_client_offer(offer)  # the writers below must cope with any parsed offer
    mids = [m.mid for m in offer.media]
    accepted = {}
    for media in offer.media:
        codec = choose_codec(media)
        if codec is not None and media.kind in ("audio", "video"):
            accepted[media.mid] = codec
    _check_answer(mids, publisher_answer(offer, _LOCAL, accepted))
    _check_answer(mids, viewer_answer(offer, _LOCAL, viewer_slots(offer)))
    _check_subscriber_offer(list(accepted.values()))
    twcc_extension(offer)
    negotiation = SubscriberNegotiation()  # the same text as a subscriber's answer
    negotiation.add(SubscriberSlot("0", "video", VP8, 0xA001, "PA_x", "TR_x"))
    negotiation.start_offer(connected=True)
    negotiation.apply_answer(offer)


# WebSocket ------------------------------------------------------------------------------------


class _ParseOnly:
    """What ``RtcSession._parse`` reads of a session."""

    class node:
        class settings:
            class signaling:
                max_message_bytes = 256 * 1024


_CLIENT_TYPES = tuple(
    model for model in vars(p).values() if isinstance(model, type) and issubclass(model, p._Message)
)


def _frame_text(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def check_ws_parse(data: bytes) -> None:
    text = _frame_text(data)
    if text is None:
        return  # a binary frame: refused before parsing (covered by the ws target)
    result = RtcSession._parse(_ParseOnly(), text)  # type: ignore[arg-type]
    if isinstance(result, p.Error):
        if result.code not in p.ERROR_CODES:
            raise PropertyViolation(f"undocumented error code {result.code}")
    elif not isinstance(result, _CLIENT_TYPES):
        raise PropertyViolation(f"parsed to {type(result).__name__}")


# tokens and data messages ---------------------------------------------------------------------

TOKEN_KEYS = {"fuzz-key": "fuzz-secret-0123456789-0123456789-abcdef"}


def check_token(data: bytes) -> None:
    import jwt

    from signaling.tokens import Claims, TokenError, verify

    text = data.decode("utf-8", "replace")
    if text.startswith("{"):  # a payload to sign: claims of any shape, validly signed
        try:
            payload = json.loads(text)
        except ValueError:
            return
        if not isinstance(payload, dict):
            return
        try:
            text = jwt.encode(payload, TOKEN_KEYS["fuzz-key"], algorithm="HS256")
        except (TypeError, ValueError, jwt.PyJWTError):
            return  # PyJWT would not mint it; no client could send it signed either
    try:
        claims = verify(text, TOKEN_KEYS)
    except TokenError as exc:
        if exc.code not in p.ERROR_CODES:
            raise PropertyViolation(f"undocumented token error {exc.code}") from exc
        return
    if not isinstance(claims, Claims):
        raise PropertyViolation(f"verify returned {claims!r}")


def check_data(data: bytes) -> None:
    from relay.data_message import DeliveredData, Relayed, relay_data_message
    from relay.rate_limiter import TokenBucket
    from relay.room import Participant, Permissions, Room
    from relay.stats import RelayStats

    room = Room(name="fuzz", max_participants=0)
    sender, other = (
        Participant("fuzz", who, Permissions(), TokenBucket(rate=1e6, burst=1e6))
        for who in ("sender", "other")
    )
    room.participants = {sender.sid: sender, other.sid: other}
    message: bytes | str = _frame_text(data) or data
    result = relay_data_message(room, sender, False, message, 16384, 0.0, RelayStats())
    if isinstance(result, tuple):
        if result[0] not in p.ERROR_CODES:
            raise PropertyViolation(f"undocumented data error {result[0]}")
    elif isinstance(result, Relayed):
        DeliveredData.model_validate_json(result.delivered)
    elif result is not None:
        raise PropertyViolation(f"relay_data_message returned {result!r}")


# Targets needing a node ------------------------------------------------------------------------


def _options(data: bytes) -> tuple[dict[str, str], bytes]:
    """Split an HTTP target's input into its options line and body."""
    if not data.startswith(b"?"):
        return {}, data
    head, _, body = data[1:].partition(b"\n")
    text = head.decode("utf-8", "replace")
    return dict(parse_qsl(text, keep_blank_values=True)), body


def _header(value: str) -> str | None:
    """A header value aiohttp's client will send (it refuses control characters)."""
    if all(32 <= ord(c) < 127 for c in value):
        return value
    return None


class NodeHarness:
    """A loopback node in this process, on its own event loop, driven synchronously."""

    ROOM = "fuzz"

    def __init__(self) -> None:
        self.runner = asyncio.Runner()
        self.inputs = 0
        self.outcomes: Counter[str] = Counter()  # what the inputs got, for the run's report
        self._node: Any = None
        self._stack: contextlib.AsyncExitStack | None = None
        self.http: aiohttp.ClientSession | None = None

    def __enter__(self) -> NodeHarness:
        self.runner.__enter__()
        self.run(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.run(self._stop())
        finally:
            self.runner.__exit__(None, None, None)

    def run(self, coro: Any) -> Any:
        async def bounded() -> Any:
            try:
                return await asyncio.wait_for(coro, HANG_SECONDS)
            except TimeoutError:
                raise PropertyViolation(f"no answer within {HANG_SECONDS} s") from None

        return self.runner.run(bounded())

    async def _start(self) -> None:
        from bench.loopback_node import node_settings, running_node

        settings = node_settings(
            # A socket closed without leave is kept for a resume (which the fuzzer may send)
            # only briefly: the joiners it closes must not pile up.
            signaling={"messages_per_second": 1e6, "join_timeout": 5.0, "resume_timeout": 0.05},
            # No peer here ever connects: sessions must outlive the run, not consent expiry.
            rtc={"consent_timeout": 1e6},
        )
        self._stack = contextlib.AsyncExitStack()
        self._node = await self._stack.enter_async_context(running_node(settings))
        self.http = await self._stack.enter_async_context(aiohttp.ClientSession())

    async def _stop(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()

    @property
    def worker(self) -> Any:
        return self._node.worker

    def url(self, path: str) -> str:
        return str(self._node.http(path))

    @staticmethod
    def auth(identity: str, **grant: Any) -> dict[str, str]:
        from bench.loopback_node import token

        return {"Authorization": "Bearer " + token(NodeHarness.ROOM, identity, **grant)}

    async def expect_error_json(self, resp: aiohttp.ClientResponse, what: str) -> None:
        """A refusal: 4xx, the usual JSON error with a documented-looking code, CORS."""
        if resp.status >= 500:
            body = await resp.text()
            raise PropertyViolation(f"{what}: {resp.status} {body[:200]}")
        try:
            body = await resp.json(content_type=None)
        except (json.JSONDecodeError, aiohttp.ContentTypeError) as exc:
            raise PropertyViolation(f"{what}: {resp.status} without a JSON body") from exc
        if not (isinstance(body.get("code"), str) and isinstance(body.get("message"), str)):
            raise PropertyViolation(f"{what}: {resp.status} body {body!r}")
        self.outcomes[f"{resp.status} {body['code']}"] += 1
        if resp.url.path.startswith(("/whip/", "/whep/")) and (
            resp.headers.get("Access-Control-Allow-Origin") != "*"
        ):
            raise PropertyViolation(f"{what}: a refusal without CORS headers")

    async def still_serving(self) -> None:
        assert self.http is not None
        async with self.http.get(self.url("/healthz")) as resp:
            if resp.status != 200:
                raise PropertyViolation(f"/healthz answered {resp.status} after the input")

    def no_state_left(self, but: set[str] | None = None) -> None:
        """Every session the input created is gone (``but``: sessions kept on purpose)."""
        kept = but or set()
        for room in self.worker.rooms.values():
            extra = [sid for sid in room.participants if sid not in kept]
            if extra:
                raise PropertyViolation(f"sessions left behind in {room.name}: {extra}")


class SessionPostHarness(NodeHarness):
    """``POST /whip/{room}`` or ``/whep/{room}`` with the fuzzed offer."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.valid = seeds(kind)[0]

    def __enter__(self) -> SessionPostHarness:
        super().__enter__()
        return self

    def check(self, data: bytes) -> None:
        options, body = _options(data)
        self.run(self._post(options, body, must_succeed=False))
        self.inputs += 1
        if self.inputs % 25 == 0:
            self.follow_up()

    def follow_up(self) -> None:
        """A well-formed request of the same kind still gets its session."""
        self.run(self._post({}, self.valid, must_succeed=True))

    async def _post(self, options: dict[str, str], body: bytes, must_succeed: bool) -> None:
        assert self.http is not None
        grant = {"publish": True} if self.kind == "whip" else {"subscribe": True}
        headers = self.auth(f"{self.kind}-fuzzer", **grant)
        headers["Content-Type"] = _header(options.get("ct", "application/sdp")) or "text/plain"
        query = {k: options[k] for k in ("rtt", "participant") if k in options}
        url = self.url(f"/{self.kind}/{self.ROOM}")
        async with self.http.post(url, data=body, headers=headers, params=query) as resp:
            what = f"POST /{self.kind}"
            if resp.status == 201:
                self.outcomes["201"] += 1
                answer = await resp.text()
                try:
                    aiortc_sdp.SessionDescription.parse(answer)
                except Exception as exc:
                    raise PropertyViolation(f"{what}: an answer aiortc cannot parse") from exc
                location = resp.headers.get("Location")
                if not location:
                    raise PropertyViolation(f"{what}: 201 without a Location")
                async with self.http.delete(self.url(location), headers=headers) as gone:
                    if gone.status != 200:
                        raise PropertyViolation(f"DELETE {location}: {gone.status}")
            elif must_succeed:
                raise PropertyViolation(
                    f"{what} of a valid offer: {resp.status} {await resp.text()}"
                )
            else:
                await self.expect_error_json(resp, what)
        await self.still_serving()
        self.no_state_left()


class TrickleHarness(NodeHarness):
    """``PATCH`` of a live WHIP and a live WHEP session with the fuzzed fragment."""

    def __enter__(self) -> TrickleHarness:
        super().__enter__()
        self.sessions: dict[str, tuple[str, str, dict[str, str]]] = {}
        for kind in ("whip", "whep"):
            self.sessions[kind] = self.run(self._create(kind))
        return self

    async def _create(self, kind: str) -> tuple[str, str, dict[str, str]]:
        assert self.http is not None
        offer = seeds(kind)[0]
        grant = {"publish": True} if kind == "whip" else {"subscribe": True}
        headers = self.auth(f"{kind}-trickler", **grant)
        async with self.http.post(
            self.url(f"/{kind}/{self.ROOM}"),
            data=offer,
            headers={**headers, "Content-Type": "application/sdp"},
        ) as resp:
            assert resp.status == 201, await resp.text()
            return resp.headers["Location"], resp.headers["ETag"], headers

    def check(self, data: bytes) -> None:
        options, body = _options(data)
        self.run(self._patch(options, body))

    async def _patch(self, options: dict[str, str], body: bytes) -> None:
        assert self.http is not None
        kind = "whep" if options.get("kind") == "whep" else "whip"
        location, etag, headers = self.sessions[kind]
        headers = dict(headers)
        ct = options.get("ct", "application/trickle-ice-sdpfrag")
        headers["Content-Type"] = _header(ct) or "text/plain"
        if "if-match" in options:
            headers["If-Match"] = _header(options["if-match"].replace("ETAG", etag)) or "x"
        async with self.http.patch(self.url(location), data=body, headers=headers) as resp:
            if resp.status == 204:
                self.outcomes["204"] += 1
            else:
                await self.expect_error_json(resp, f"PATCH {location}")
        await self.still_serving()
        sids = {loc.rsplit("/", 1)[1] for loc, _, _ in self.sessions.values()}
        for sid in sids:
            if self._node.node.relay.participant(self.ROOM, sid) is None:
                raise PropertyViolation(f"the PATCH ended session {sid}")
        self.no_state_left(but=sids)


class WsHarness(NodeHarness):
    """A joined WebSocket session that receives every fuzzed frame; a ping after each must
    still be answered. A frame that parses as ``join`` is also sent first on a new socket."""

    def __enter__(self) -> WsHarness:
        super().__enter__()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.run(self._connect())
        return self

    async def _connect(self) -> None:
        assert self.http is not None
        if self.ws is not None and not self.ws.closed:
            await self.ws.close()
        from bench.loopback_node import token

        url = self.url("/v1/rtc") + "?access_token=" + token(self.ROOM, "ws-fuzzer")
        self.ws = await self.http.ws_connect(url, max_msg_size=0)
        await self.ws.send_str(json.dumps({"type": "join"}))
        first = await self.ws.receive_json()
        if first.get("type") != "joined":
            raise PropertyViolation(f"a valid join was answered {first!r}")

    def check(self, data: bytes) -> None:
        self.inputs += 1
        self.run(self._send(data))

    async def _send(self, data: bytes) -> None:
        assert self.ws is not None
        text = _frame_text(data)
        if text is None:
            await self.ws.send_bytes(data)
        else:
            await self.ws.send_str(text)
        marker = float(self.inputs)
        await self.ws.send_str(json.dumps({"type": "ping", "timestamp": marker}))
        ended = await self._until_pong(marker, text)
        if ended:
            await self._connect()  # the session ended as it should: a new one must work
        if text is not None and _looks_like_join(text):
            await self._fresh_join(text)
        await self.still_serving()

    async def _until_pong(self, marker: float, text: str | None) -> bool:
        """Read up to the pong; True if the session ended, as only leave or an oversized
        frame may end it."""
        assert self.ws is not None
        while True:
            msg = await self.ws.receive()
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                code = self.ws.close_code
                if text is not None and _is_leave(text):
                    return True
                raise PropertyViolation(f"the session was closed ({code}) by a bad frame")
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise PropertyViolation(f"unexpected frame {msg.type}")
            message = json.loads(msg.data)
            kind = message.get("type")
            if kind != "pong":
                self.outcomes[f"{kind} {message.get('code', '')}".strip()] += 1
            if kind == "error":
                _check_error(message)
            elif kind == "closed":
                if text is not None and _is_leave(text):
                    continue
                raise PropertyViolation(f"the session was ended: {message!r}")
            elif kind == "pong" and message.get("timestamp") == marker:
                return False

    async def _fresh_join(self, text: str) -> None:
        """The frame as the first of a new session (with a valid token on the URL)."""
        assert self.http is not None
        from bench.loopback_node import token

        url = self.url("/v1/rtc") + "?access_token=" + token(self.ROOM, "ws-joiner")
        async with self.http.ws_connect(url, max_msg_size=0) as ws:
            await ws.send_str(text)
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.TEXT:
                message = json.loads(msg.data)
                if message.get("type") == "error":
                    _check_error(message)
                elif message.get("type") not in ("joined", "redirect"):
                    raise PropertyViolation(f"a join was answered {message!r}")
            elif msg.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 1011:
                raise PropertyViolation("a join frame made the server fail (1011)")
            await ws.close()
        # the joiner left: only the fuzzer's own session remains
        for _ in range(50):
            room = self.worker.rooms.get(self.ROOM)
            if room is None or len(room.participants) <= 1:
                return
            await asyncio.sleep(0.01)
        raise PropertyViolation("a closed join left its session behind")


def _check_error(message: dict[str, Any]) -> None:
    code = message.get("code")
    if code == "internal_error" or code not in p.ERROR_CODES:
        raise PropertyViolation(f"error {message!r}")


def _parsed(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _is_leave(text: str) -> bool:
    try:
        return isinstance(p.client_message.validate_json(text), p.Leave)
    except ValueError:
        return False


def _looks_like_join(text: str) -> bool:
    message = _parsed(text)
    return isinstance(message, dict) and message.get("type") == "join"


# the registry ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    open: Callable[[], contextlib.AbstractContextManager[Check]]
    networked: bool = False


@contextlib.contextmanager
def _pure(check: Check) -> Iterator[Check]:
    yield check


@contextlib.contextmanager
def _served(harness: NodeHarness) -> Iterator[Check]:
    with harness as running:
        yield running.check  # type: ignore[attr-defined]


TARGETS: dict[str, Target] = {
    "stun": Target("stun", lambda: _pure(check_stun)),
    "rtp": Target("rtp", lambda: _pure(check_rtp)),
    "rtcp": Target("rtcp", lambda: _pure(check_rtcp)),
    "sdp": Target("sdp", lambda: _pure(check_sdp)),
    "ws_parse": Target("ws_parse", lambda: _pure(check_ws_parse)),
    "token": Target("token", lambda: _pure(check_token)),
    "data": Target("data", lambda: _pure(check_data)),
    "ws": Target("ws", lambda: _served(WsHarness()), networked=True),
    "whip": Target("whip", lambda: _served(SessionPostHarness("whip")), networked=True),
    "whep": Target("whep", lambda: _served(SessionPostHarness("whep")), networked=True),
    "trickle": Target("trickle", lambda: _served(TrickleHarness()), networked=True),
}
SEED_DIRS = {"ws_parse": "ws"}


def open_target(name: str) -> contextlib.AbstractContextManager[Check]:
    return TARGETS[name].open()


def saving(name: str, check: Check) -> Check:
    """``check`` that keeps failing inputs as regression cases when ``FUZZ_SAVE_FAILURES``
    is set (long runs): under hypothesis the shrunk ones only, which it replays last."""
    if not os.environ.get("FUZZ_SAVE_FAILURES"):
        return check

    def wrapped(data: bytes) -> None:
        try:
            check(data)
        except Exception:
            if _final_example():
                save_failure(name, data)
            raise

    return wrapped


def _final_example() -> bool:
    """False while hypothesis is still generating or shrinking (its failing inputs are
    not the ones to keep); True on its final replay, and outside hypothesis."""
    from hypothesis.control import current_build_context
    from hypothesis.errors import InvalidArgument

    try:
        return bool(getattr(current_build_context(), "is_final", True))
    except InvalidArgument:  # not inside a hypothesis test
        return True
