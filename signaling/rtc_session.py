"""One client's WebSocket on ``/v1/rtc``: authenticate, join, then dispatch its messages.

The token is checked before anything else; a refused token creates no room state. Outgoing
messages go through a bounded queue and one writer task, so room events (which arrive
synchronously from the relay) never wait on a slow socket.

A session outlives its WebSocket: when the socket drops without ``leave``, the participant
stays in its room, media flowing, for ``signaling.resume_timeout``; a new WebSocket whose
first message is ``resume`` (the session's sid and resume token, and an access token that
covers the session) takes it over, and nobody else hears of it. What happened meanwhile is
not replayed: ``resumed`` says where things stand. Past the timeout the session ends as a
disconnect. The session lives on the node that holds it: a ``resume`` reaching another node
fails (``resume_failed``) and the client joins afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import time

import pydantic
from aiohttp import WSMsgType, web

from relay.control import ParticipantInfo, PublishedTrackInfo, RoomConfig
from relay.errors import RelayError
from relay.rate_limiter import TokenBucket

from . import protocol as p
from .authz import AccessDenied, OnRoom, OnSession, authorize
from .cascade import ANNOUNCED_KINDS, describe_member
from .client_address import client_ip
from .cluster import PlacementUnavailable
from .node import Node, describe_grants, describe_participant
from .settings import Settings
from .tokens import Claims, TokenError, verify
from .turn import ice_servers

logger = logging.getLogger(__name__)

OUTBOX_LIMIT = 1024
SLOW_CONSUMER = "slow_consumer"
_OFFER = object()  # outbox marker: build a subscriber offer when this is written
_CLOSE = object()

# WebSocket close codes (4000-4999 are application codes).
CLOSE_NORMAL = 1000
CLOSE_PROTOCOL = 1002
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_AUTH = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_UNAVAILABLE = 4503
CLOSE_REDIRECT = 4307
CLOSE_NOT_HERE = 4404  # resume_failed: no such session on this node


def resume_timeout(settings: Settings) -> float:
    timeout = settings.signaling.resume_timeout
    return settings.rtc.consent_timeout if timeout is None else timeout


def close_code_for(code: str) -> int:
    """Map an error code to the WebSocket close code sent with it (Galene does the same)."""
    if code.startswith("token_"):
        return CLOSE_AUTH
    if code in ("permission_denied",):
        return CLOSE_FORBIDDEN
    if code in (
        "room_full",
        "node_full",
        "node_draining",
        "registry_unavailable",
        "no_eligible_node",
    ):
        return CLOSE_UNAVAILABLE
    if code == "message_too_large":
        return CLOSE_TOO_BIG
    if code == "internal_error":
        return CLOSE_INTERNAL
    if code == "resume_failed":
        return CLOSE_NOT_HERE
    return CLOSE_PROTOCOL


class RtcSession:
    def __init__(self, node: Node, ws: web.WebSocketResponse) -> None:
        self.node = node
        self.ws = ws
        self.participant: ParticipantInfo | None = None
        self._outbox: asyncio.Queue[object] = asyncio.Queue(maxsize=OUTBOX_LIMIT)
        self._closing: str | None = None
        self._transport: asyncio.Transport | None = None
        self._writer_task: asyncio.Task[None] | None = None
        self.resume_token = ""
        # Set while the session waits for a resume: its WebSocket dropped without leave.
        self._away: asyncio.TimerHandle | None = None
        self._ended = False
        cfg = node.settings.signaling
        self._limiter = TokenBucket(cfg.messages_per_second, cfg.messages_per_second * 2)

    # outgoing ---------------------------------------------------------------------------

    def send(self, message: p._Message | str) -> None:
        """A message, or one already serialized (broadcasts serialize once for everyone).

        A client whose outbox is full has stopped reading: it is cut off at once (its
        socket aborted; a close frame would wait behind what it does not read), logged
        once, and nothing more is queued for it."""
        if self._closing == SLOW_CONSUMER or self._away is not None:
            return  # away: ``resumed`` will say where things stand instead
        try:
            self._outbox.put_nowait(message)
        except asyncio.QueueFull:
            logger.warning("session %s too slow to read its events; disconnected", self._sid)
            self._closing = SLOW_CONSUMER
            self.node.slow_consumers += 1
            if self._transport is not None:
                self._transport.abort()  # the reader ends; the session leaves the room

    def offer_needed(self) -> None:
        """The relay's ``NegotiationController``: an offer goes out after ``joined``."""
        if self.participant is not None:  # during join: ``_join`` asks once it has joined
            self.send_marker(_OFFER)

    def send_marker(self, marker: object) -> None:
        if self._away is not None:
            return  # an offer due is asked for again on resume
        with contextlib.suppress(asyncio.QueueFull):
            self._outbox.put_nowait(marker)

    def close(self, reason: str) -> None:
        if self._closing is None:
            self._closing = reason
            if self._away is not None:  # no socket to say it on: it just ends
                self._away.cancel()
                self._away = None
                self.node.spawn(self._end(reason))
            else:
                self.send_marker(_CLOSE)

    @property
    def _sid(self) -> str:
        return self.participant.sid if self.participant else "-"

    async def _writer(self, ws: web.WebSocketResponse) -> None:
        while True:
            item = await self._outbox.get()
            if item is _CLOSE:
                reason = self._closing or "closed"
                with contextlib.suppress(Exception):
                    await ws.send_str(p.Closed(reason=reason).model_dump_json())
                await ws.close(code=CLOSE_NORMAL, message=reason.encode()[:120])
                return
            if item is _OFFER:
                if self.participant is None:
                    continue
                offer = self.node.relay.subscriber_offer(
                    self.participant.room, self.participant.sid
                )
                if offer is None:
                    continue
                item = p.SubscriberOffer(sdp=offer[0], tracks=offer[1])
            if isinstance(item, p._Message):
                item = item.model_dump_json()
            assert isinstance(item, str)
            try:
                await ws.send_str(item)
            except ConnectionResetError:  # the client went away; the reader ends the session
                return

    async def _fail(self, code: str, message: str) -> None:
        """Send a fatal error and close with the matching close code."""
        with contextlib.suppress(Exception):
            await self.ws.send_str(
                p.Error(code=code, message=message, fatal=True).model_dump_json()
            )
        await self.ws.close(code=close_code_for(code), message=code.encode())

    # lifecycle --------------------------------------------------------------------------

    async def run(self, request: web.Request) -> None:
        self._transport = request.transport
        query_token = request.query.get("access_token")
        header = request.headers.get("Authorization", "")
        if not query_token and header.startswith("Bearer "):
            query_token = header[7:]
        try:
            join = await self._await_join()
            if join is None:
                return
            if isinstance(join, p.Resume):
                await self._resume(join, query_token, request)
                return
            claims = self._authorize(join, query_token)
            redirected = "redirected" in request.query
            room_config = await self._placed_here(join, client_ip(request), redirected)
            if room_config is None:
                return
            await self._join(join, claims, room_config)
        except PlacementUnavailable as exc:
            await self._fail(exc.code, str(exc))
            return
        except (TokenError, AccessDenied) as exc:
            await self._fail(exc.code, str(exc))
            return
        except RelayError as exc:
            await self._fail(exc.code, str(exc))
            return
        await self._connection(self.ws, request.transport)

    async def _connection(
        self, ws: web.WebSocketResponse, transport: asyncio.BaseTransport | None
    ) -> None:
        """Serve the session on ``ws`` until it ends; then the session ends too, waits for a
        resume (dropped without leave), or goes on on another socket (resumed)."""
        self.ws = ws
        self._transport = transport  # type: ignore[assignment]
        writer = asyncio.create_task(self._writer(ws))
        self._writer_task = writer
        try:
            await self._serve(ws)
        finally:
            if self.ws is not ws:  # taken over by a resume, which stopped the writer
                pass
            elif self._closing is None and resume_timeout(self.node.settings) > 0:
                writer.cancel()
                self._wait_for_resume()
            else:
                await self._end(self._closing or "disconnected")
                if not writer.done():
                    self.close(self._closing or "disconnected")
                    with contextlib.suppress(asyncio.TimeoutError, Exception):
                        await asyncio.wait_for(writer, 2.0)
                    writer.cancel()

    async def _end(self, reason: str) -> None:
        participant = self.participant
        if participant is None or self._ended:
            return
        self._ended = True
        self.node.drop_session(participant.room, participant.sid)
        await self.node.relay.leave(participant.room, participant.sid, reason)

    # resume -----------------------------------------------------------------------------

    def _wait_for_resume(self) -> None:
        timeout = resume_timeout(self.node.settings)
        logger.info("session %s: WebSocket dropped; kept %.1f s for a resume", self._sid, timeout)
        self._away = asyncio.get_running_loop().call_later(timeout, self._expired)

    def _expired(self) -> None:
        self._away = None
        self._closing = "disconnected"
        logger.info("session %s: not resumed in time; ends", self._sid)
        self.node.spawn(self._end("disconnected"))

    def may_resume(self, resume_token: str) -> bool:
        return (
            not self._ended
            and self._closing is None
            and bool(self.resume_token)
            and hmac.compare_digest(self.resume_token.encode(), resume_token.encode())
        )

    async def _resume(
        self, resume: p.Resume, query_token: str | None, request: web.Request
    ) -> None:
        """This WebSocket takes over the session ``resume`` names, here or nowhere."""
        session = self.node.sessions.get(resume.sid)
        if session is None or not session.may_resume(resume.resume_token):
            self.node.resumes_refused += 1
            await self._fail("resume_failed", "no session to resume here: join again")
            return
        participant = session.participant
        assert participant is not None
        claims = verify(resume.token or query_token, self.node.settings.keys)
        authorize(claims, OnSession(participant.room, participant.identity))
        await session.resumed_on(self.ws, request.transport)

    async def resumed_on(
        self, ws: web.WebSocketResponse, transport: asyncio.BaseTransport | None
    ) -> None:
        """Go on on ``ws``: the old socket, if the server has not noticed it is gone yet,
        is cut off; what was queued for it is dropped for a snapshot."""
        participant = self.participant
        assert participant is not None
        self.ws = ws  # the old socket's loop sees it replaced and ends without ending this
        if self._away is not None:
            self._away.cancel()
            self._away = None
        if self._writer_task is not None:
            self._writer_task.cancel()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.abort()  # the old socket, if the server had not noticed yet
        while not self._outbox.empty():
            self._outbox.get_nowait()
        self.node.resumed += 1
        logger.info("session %s resumed on a new WebSocket", participant.sid)
        relay = self.node.relay
        current = relay.participant(participant.room, participant.sid)
        assert current is not None  # it ends the session when it leaves the room
        self.resume_token = secrets.token_urlsafe(24)
        self.send(
            p.Resumed(
                participant=describe_participant(current),
                others=self._others(participant.room, participant.sid),
                permissions=describe_grants(current.permissions),
                resume_token=self.resume_token,
            )
        )
        speaking = self.node.speakers.get(participant.room)
        if speaking is not None:
            self.send(speaking)
        relay.subscriber_offer_lost(participant.room, participant.sid)
        self.offer_needed()
        await self._connection(ws, transport)

    async def _await_join(self) -> p.Join | p.Resume | None:
        timeout = self.node.settings.signaling.join_timeout
        try:
            msg = await self.ws.receive(timeout=timeout)
        except TimeoutError:
            await self._fail("join_timeout", "no join message received in time")
            return None
        if msg.type != WSMsgType.TEXT:
            if msg.type not in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING):
                await self._fail("invalid_message", "the first message must be a JSON join")
            return None
        message = self._parse(msg.data)
        if isinstance(message, p.Error):
            await self._fail(message.code, message.message)
            return None
        if not isinstance(message, p.Join | p.Resume):
            await self._fail("not_joined", "the first message must be join (or resume)")
            return None
        if message.version != p.PROTOCOL_VERSION:
            await self._fail("unsupported_version", f"server speaks version {p.PROTOCOL_VERSION}")
            return None
        return message

    def _authorize(self, join: p.Join, query_token: str | None) -> Claims:
        claims = verify(join.token or query_token, self.node.settings.keys)
        room = join.room or claims.grant.room
        if not room:
            raise TokenError("token_wrong_room", "the token names no room and join names none")
        authorize(claims, OnRoom(room, "join"))
        join.room = room
        return claims

    async def _placed_here(
        self, join: p.Join, client_ip: str | None, redirected: bool
    ) -> RoomConfig | None:
        """Place the session: the room's settings when it belongs here; when it belongs
        elsewhere, None, and the client is redirected there (once: the node it is sent to
        takes it)."""
        assert join.room is not None
        placement = await self.node.cluster.place(join.room, client_ip, join.rtts, redirected)
        if placement.local:
            return placement.room_config
        target = placement.decision.node
        assert target is not None
        url = target.signaling_url.replace("http://", "ws://").replace("https://", "wss://")
        message = p.Redirect(
            url=url.rstrip("/") + "/v1/rtc?redirected=1",
            node_id=target.id,
            region=target.region,
            reason=placement.decision.reason,
        )
        with contextlib.suppress(Exception):
            await self.ws.send_str(message.model_dump_json())
        await self.ws.close(code=CLOSE_REDIRECT, message=b"redirect")
        return None

    async def _join(self, join: p.Join, claims: Claims, room_config: RoomConfig) -> None:
        grant = claims.grant
        assert join.room is not None
        relay = self.node.relay
        participant = await relay.join(
            join.room,
            claims.sub,
            grant.permissions(),
            controller=self,
            auto_subscribe=join.auto_subscribe,
            name=claims.name,
            room_config=room_config,
        )
        self.participant = participant
        self.node.add_session(participant.room, participant.sid, self)
        room = relay.room(join.room)
        assert room is not None  # it holds this participant
        settings = self.node.settings
        self.resume_token = secrets.token_urlsafe(24)
        self.send(
            p.Joined(
                room=room.name,
                room_sid=room.sid,
                participant=describe_participant(participant),
                others=self._others(room.name, participant.sid),
                ice_servers=ice_servers(settings.rtc),
                node_id=settings.node_id,
                region=settings.region,
                resume_token=self.resume_token,
            )
        )
        speaking = self.node.speakers.get(room.name)
        if speaking is not None:  # the next change may be long: say who speaks now
            self.send(speaking)
        self.offer_needed()

    def _others(self, room: str, sid: str) -> list[p.ParticipantDescription]:
        """The room as a joiner sees it: announced participants here and on other nodes."""
        others = [
            describe_participant(o)
            for o in self.node.relay.participants(room)
            if o.sid != sid and o.kind.announced
        ]
        remote = self.node.cascade.remote_members(room)
        return others + [describe_member(m) for m in remote if m.kind in ANNOUNCED_KINDS]

    def _parse(self, data: str) -> p._Message | p.Error:
        if len(data) > self.node.settings.signaling.max_message_bytes:
            return p.Error(code="message_too_large", message="message exceeds the size limit")
        try:
            return p.client_message.validate_json(data)
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            if first["type"] == "json_invalid":
                return p.Error(code="invalid_json", message="the message is not valid JSON")
            where = ".".join(str(x) for x in first["loc"])
            return p.Error(code="invalid_message", message=f"{where}: {first['msg']}")

    async def _serve(self, ws: web.WebSocketResponse) -> None:
        async for msg in ws:
            if msg.type == WSMsgType.ERROR:
                return
            if msg.type != WSMsgType.TEXT:
                self.send(p.Error(code="invalid_message", message="only text frames are accepted"))
                continue
            if not self._limiter.allow(time.monotonic()):
                self.send(p.Error(code="rate_limited", message="too many messages; slow down"))
                continue
            message = self._parse(msg.data)
            if isinstance(message, p.Error):
                self.send(message)
                continue
            if isinstance(message, p.Leave):
                self._closing = "left"
                return
            try:
                await self._dispatch(message)
            except RelayError as exc:
                self.send(p.Error(code=exc.code, message=str(exc)))
            except Exception:
                logger.exception(
                    "session %s: handling %s failed", self._sid, type(message).__name__
                )
                self.send(
                    p.Error(code="internal_error", message="the server failed to handle this")
                )

    async def _dispatch(self, message: p._Message) -> None:
        relay = self.node.relay
        assert self.participant is not None
        room, sid = self.participant.room, self.participant.sid  # its own room, always
        match message:
            case p.PublishOffer(sdp=sdp, tracks=tracks):
                info = {
                    t.mid: PublishedTrackInfo(name=t.name, source=t.source or "") for t in tracks
                }
                answer, mids = await relay.publish(room, sid, sdp, info)
                self.send(p.PublishAnswer(sdp=answer, tracks=mids))
            case p.SubscriberAnswer(sdp=sdp):
                await relay.subscriber_answer(room, sid, sdp)
            case p.Subscribe(track_sid=track_sid):
                relay.subscribe(room, sid, track_sid)
            case p.Unsubscribe(track_sid=track_sid):
                relay.unsubscribe(room, sid, track_sid)
            case p.SetQuality(track_sid=track_sid, quality=quality):
                relay.set_quality(room, sid, track_sid, quality)
            case p.Mute(track_sid=track_sid, muted=muted):
                relay.set_muted(room, sid, track_sid, muted)
            case p.Ping(timestamp=ts):
                self.send(p.Pong(timestamp=ts))
            case p.Trickle():
                pass  # ICE-lite: addresses are learnt from authenticated checks
            case p.Join() | p.Resume():
                self.send(p.Error(code="already_joined", message="this session already joined"))
