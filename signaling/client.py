"""Python client for eurelay: join a room, publish aiortc tracks, receive remote tracks,
events and data messages. Tests, benchmarks and server-side bots use it.

Like LiveKit's SDKs it keeps two peer connections: a subscriber connection the relay offers
(data channels and the tracks it forwards) and, once something is published, a publisher
connection the client offers. Every peer connection gets explicit ICE servers (none by
default): aiortc would otherwise use a public STUN server.

    client = EurelayClient("ws://127.0.0.1:7880/v1/rtc", token)
    await client.connect()
    await client.publish(VideoStreamTrack())
    track_sid, track = await client.next_track()

When the WebSocket ends without the server saying why (the network broke, the node died),
the client first resumes the session on a new WebSocket to the node that holds it
(``resume``): same participant sid, peer connections untouched, nobody else told; the
server's ``resumed`` on ``client.events`` says so and where the room stands. If the session
cannot be resumed (the node is gone, or kept it less long than the client was away), or the
server shut down, the client joins again by itself through the URL it was first given
(placement may choose another node), with fresh peer connections, and publishes the same
tracks again; ``Reconnecting`` and ``Reconnected`` on ``client.events`` say so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)

from . import protocol as p
from .audio_jitter import hold_audio_frames

logger = logging.getLogger(__name__)

HEARTBEAT = 10.0  # WebSocket ping interval: a silent network break ends the socket within 1.5x
RECONNECT_REASONS = ("server_shutdown",)  # a ``closed`` with one of these is worth rejoining
BACKOFF_FIRST, BACKOFF_MAX = 0.2, 2.0
RESUME_WINDOW = 5.0  # seconds a resume is tried before joining again
RESUME_ATTEMPT = 2.0  # seconds for one resume's connect and answer (a silent node: no wait)


@dataclass(frozen=True, slots=True)
class Reconnecting:
    """On ``client.events``: the session ended without the server saying why (``reason``
    ``connection_lost``) or with ``server_shutdown``; the client is joining again through its
    entry URL. Remote tracks of the old session have ended, and sending data fails until
    ``Reconnected``."""

    reason: str


@dataclass(frozen=True, slots=True)
class Reconnected:
    """On ``client.events``: joined again (``joined`` is also ``client.joined``: a new
    participant sid, maybe another node) and what was published is published again
    (``client.published`` has the new track sids). The room's tracks arrive on
    ``client.tracks`` as new aiortc tracks."""

    joined: p.Joined


@dataclass(slots=True)
class _Outgoing:
    """A track this client publishes, as it is published again after a reconnect."""

    track: MediaStreamTrack
    name: str
    video_codec: str | None
    sid: str = ""
    muted: bool = False
    source: p.Source | None = None  # None: microphone for audio, camera for video
    transceiver: Any = None  # on the current publisher connection


class ClientError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def stream_ids(sdp: str) -> dict[str, str]:
    """mid -> the a=msid stream id of each m-section that has one."""
    found: dict[str, str] = {}
    mid = ""
    for line in sdp.splitlines():
        if line.startswith("m="):
            mid = ""
        elif line.startswith("a=mid:"):
            mid = line[6:].strip()
        elif line.startswith("a=msid:") and mid:
            found[mid] = line[7:].split(" ", 1)[0]
    return found


def restrict_ice_host_addresses(addresses: Sequence[str]) -> None:
    """Make aiortc gather host candidates only on ``addresses`` (process-wide).

    aioice skips 127.0.0.1 when it lists interfaces, so on a loopback-only host (tests in
    a private network namespace) it would gather nothing at all.
    """
    import aioice.ice

    chosen = list(addresses)
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: list(chosen)


def candidates_via(sdp: str, via: tuple[str, int]) -> str:
    """The relay's host candidates in ``sdp`` pointed at ``via`` (a proxy in front of it)."""
    lines = []
    for line in sdp.split("\r\n"):
        if line.startswith("a=candidate:") and " typ host" in line:
            bits = line.split(" ")
            bits[4], bits[5] = via[0], str(via[1])
            line = " ".join(bits)
        lines.append(line)
    return "\r\n".join(lines)


class EurelayClient:
    def __init__(
        self,
        url: str,
        token: str,
        *,
        room: str | None = None,
        auto_subscribe: bool = True,
        ice_servers: list[RTCIceServer] | None = None,
        host_addresses: Sequence[str] | None = None,
        probe: bool = False,
        probe_urls: dict[str, str] | None = None,
        media_via: tuple[str, int] | None = None,
        reconnect: bool = True,
        reconnect_timeout: float = 30.0,
        audio_hold: int | None = None,
    ) -> None:
        """``probe``: time each region's /v1/ping before joining (``probe_urls`` overrides
        the list the server offers at /v1/regions) and send the RTTs with the join.

        ``reconnect``: when the connection is lost (no ``closed`` from the server) or the
        server shuts down, join again through ``url`` for up to ``reconnect_timeout``
        seconds (backoff 0.2 s doubling to 2 s); ``leave()``, ``close()`` and any other
        ``closed`` reason end the session for good.

        ``audio_hold``: how many later frames aiortc waits for before decoding a received
        audio frame (aiortc's default, None, is 4: 80 ms). A listener that does not play out,
        such as an agent, takes 0: frames 60 ms sooner (``signaling.audio_jitter``)."""
        self.url = url  # where the session is (after redirects)
        self.entry_url = url  # where every join starts, so placement decides again
        self.token = token
        self.room = room
        self.auto_subscribe = auto_subscribe
        self.ice_servers = list(ice_servers or [])
        if host_addresses is not None:
            restrict_ice_host_addresses(host_addresses)
        self.reconnect = reconnect
        self.reconnect_timeout = reconnect_timeout
        self.audio_hold = audio_hold
        self.joined: p.Joined | None = None
        self.permissions: p.PermissionGrants | None = None  # set by permissions_changed
        # Who speaks in the room now, loudest first (the last active_speakers event; each one
        # is also put on ``events``).
        self.active_speakers: list[p.Speaker] = []
        # Who is who, kept from the session's messages: participant sid -> identity (the
        # others), and the publisher of each track received (track sid -> participant sid).
        self.identities: dict[str, str] = {}
        self.track_owners: dict[str, str] = {}
        # Called with every server message as it is handled, before it is put on ``events``
        # (an agent's speech detection listens to active speakers without taking events).
        self.listeners: list[Callable[[p._Message], None]] = []
        self.events: asyncio.Queue[Any] = asyncio.Queue()
        self.errors: asyncio.Queue[p.Error] = asyncio.Queue()
        self.data: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.tracks: asyncio.Queue[tuple[str, MediaStreamTrack]] = asyncio.Queue()
        self.published: dict[str, str] = {}  # mid -> track sid
        self.closed_reason: str | None = None
        self.resume_token = ""  # from joined, then each resumed: resumes the session
        self.probe = probe or probe_urls is not None
        self.probe_urls = probe_urls
        self.media_via = media_via  # send media through e.g. an impairment proxy
        self.rtts: dict[str, float] = {}
        self.redirects: list[p.Redirect] = []
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pub: RTCPeerConnection | None = None
        self._sub_tracks: dict[str, str] = {}  # mid -> track sid from the last offer
        self._sub_owners: dict[str, str] = {}  # mid -> publisher sid (a=msid) from the offers
        self._answer: asyncio.Future[p.PublishAnswer] | None = None
        self._negotiation = asyncio.Lock()
        self._outgoing: list[_Outgoing] = []  # what to publish again after a reconnect
        self._choices: dict[tuple[str, str], p._Message] = {}  # (what, track sid) -> last ask
        self._closing = False  # leave() or close() was called: never reconnect
        self._rejoining = False
        self._session_servers: list[RTCIceServer] = []
        self._sub, self.reliable, self.lossy = self._subscriber()

    def _peer_connection(self) -> RTCPeerConnection:
        # max-bundle: with aiortc's default (balanced), a second video m-line in one offer
        # stays on a transport aiortc then stops, and its packets reach the first decoder.
        servers = self.ice_servers + self._session_servers
        return RTCPeerConnection(
            RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )

    def _take_servers(self, joined: p.Joined) -> None:
        """The session's own ICE servers (a TURN credential minted for it) join the
        client's: every peer connection made from here on uses them."""
        self._session_servers = []
        for server in joined.ice_servers:
            urls = server.get("urls")
            listed = [urls] if isinstance(urls, str) else urls if isinstance(urls, list) else []
            usable = [url for url in listed if isinstance(url, str) and "[" not in url]
            if usable:
                # aiortc 1.16 parses ICE server URLs with a regex that takes no IPv6 literal
                # (turn:[2001:db8::1]) and raises for one, which would end the session: such
                # URLs are for browsers, this client gathers with the others
                self._session_servers.append(
                    RTCIceServer(
                        urls=usable,
                        username=server.get("username"),  # type: ignore[arg-type]
                        credential=server.get("credential"),  # type: ignore[arg-type]
                    )
                )

    def _subscriber(self) -> tuple[RTCPeerConnection, RTCDataChannel, RTCDataChannel]:
        """The connection the relay offers, with the two pre-negotiated data channels."""
        pc = self._peer_connection()
        reliable = pc.createDataChannel("_reliable", negotiated=True, id=0)
        lossy = pc.createDataChannel(
            "_lossy", negotiated=True, id=1, ordered=False, maxRetransmits=0
        )
        for channel in (reliable, lossy):
            channel.on("message", self._on_data)
        pc.on("track", lambda track: self._on_track(pc, track))
        return pc, reliable, lossy

    # connection ---------------------------------------------------------------------------

    async def measure_rtts(self, attempts: int = 3) -> dict[str, float]:
        """Best of ``attempts`` GETs of each region's /v1/ping, in milliseconds."""
        assert self._session is not None
        urls = self.probe_urls
        if urls is None:
            base = self.url.replace("ws://", "http://").replace("wss://", "https://")
            base = base.rsplit("/v1/rtc", 1)[0]
            async with self._session.get(base + "/v1/regions") as resp:
                urls = {r["region"]: r["ping_url"] for r in (await resp.json())["regions"]}
        rtts: dict[str, float] = {}
        loop = asyncio.get_running_loop()
        for region, url in urls.items():
            best: float | None = None
            for _ in range(attempts):
                started = loop.time()
                try:
                    async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=2)):
                        pass
                except (aiohttp.ClientError, TimeoutError):
                    continue
                elapsed = (loop.time() - started) * 1000
                best = elapsed if best is None else min(best, elapsed)
            if best is not None:
                rtts[region] = round(best, 2)
        return rtts

    async def connect(self, timeout: float = 10.0, max_redirects: int = 3) -> p.Joined:
        """Join; follows ``redirect`` answers to the node the session belongs on."""
        self._session = aiohttp.ClientSession()
        if self.probe:
            self.rtts = await self.measure_rtts()
        try:
            joined = await self._place(timeout, max_redirects)
        except BaseException:
            await self.close()
            raise
        self.joined = joined
        self.resume_token = joined.resume_token
        self._learn_roster(joined)
        self._take_servers(joined)
        if self._session_servers:  # the first subscriber connection predates them
            old = self._sub
            self._sub, self.reliable, self.lossy = self._subscriber()
            await old.close()
        self._reader = asyncio.create_task(self._run())
        return joined

    async def _place(self, timeout: float, max_redirects: int = 3) -> p.Joined:
        """Join through the entry URL, following redirects; the socket stays open."""
        self.url = self.entry_url
        for _ in range(max_redirects + 1):
            try:
                first = await self._join_once(timeout)
            except aiohttp.ClientConnectorError:
                if self.url == self.entry_url:
                    raise
                # The node we were sent to just went away: ask the entry node again.
                await asyncio.sleep(0.5)
                self.url = self.entry_url
                continue
            if not isinstance(first, p.Redirect):
                break
            self.redirects.append(first)
            assert self._ws is not None
            await self._ws.close()
            self.url = first.url
        else:
            raise ClientError("too_many_redirects", f"redirected more than {max_redirects} times")
        if isinstance(first, p.Error):
            raise ClientError(first.code, first.message)
        if not isinstance(first, p.Joined):
            raise ClientError("unexpected_message", type(first).__name__)
        return first

    async def _join_once(self, timeout: float) -> Any:
        assert self._session is not None
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        connecting = self._session.ws_connect(self.url, heartbeat=HEARTBEAT)
        self._ws = await asyncio.wait_for(connecting, timeout)  # a black-holed node, too
        # The token goes in the join message, not the URL, so it never lands in access logs.
        join = p.Join(
            type="join",
            token=self.token,
            room=self.room,
            auto_subscribe=self.auto_subscribe,
            rtts=self.rtts,
        )
        await self._send(join)
        msg = await self._ws.receive(timeout=timeout)
        if msg.type != aiohttp.WSMsgType.TEXT:
            await self._ws.close()
            raise ClientError("connection_closed", f"server closed the connection ({msg.type})")
        return p.server_message.validate_json(msg.data)

    @property
    def sid(self) -> str:
        assert self.joined is not None
        return self.joined.participant.sid

    async def _send(self, message: p._Message) -> None:
        assert self._ws is not None
        await self._ws.send_str(message.model_dump_json(exclude_none=True))

    async def send_raw(self, text: str) -> None:
        """Send a frame as is (tests use it for malformed input)."""
        assert self._ws is not None
        await self._ws.send_str(text)

    async def _run(self) -> None:
        """Read the session; after a loss the server did not explain, resume it, or join
        again."""
        rejoined = False
        try:
            while True:
                reading = asyncio.create_task(self._read())
                try:
                    if rejoined:
                        rejoined = False
                        await self._republish()
                        assert self.joined is not None
                        await self.events.put(Reconnected(self.joined))
                    await reading
                finally:
                    reading.cancel()
                if self._closing or not self.reconnect:
                    break
                if self.closed_reason is None and await self._resume():
                    continue
                if self.closed_reason is not None and self.closed_reason not in RECONNECT_REASONS:
                    break
                await self.events.put(Reconnecting(self.closed_reason or "connection_lost"))
                # The old connections went to a node that is gone; their remote tracks end
                # now. Our own tracks are detached first: closing a sender stops its track.
                # Not cancellable by close(): aiortc's close() cut short never finishes.
                await self._close_peer_connections(detach=True)
                self._rejoining = True
                try:
                    rejoined = await self._rejoin()
                finally:
                    self._rejoining = False
                if not rejoined:
                    break
        finally:
            if self.closed_reason is None:
                self.closed_reason = "connection_closed"
            self.events.put_nowait(p.Closed(reason=self.closed_reason))

    async def _read(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            try:
                message = p.server_message.validate_json(msg.data)
            except ValueError:
                logger.warning("unparseable server message: %.200s", msg.data)
                continue
            try:
                await self._handle(message)
            except ConnectionError as exc:  # the socket is going away: the loop ends next
                logger.debug("handling %s: %r", type(message).__name__, exc)
            except Exception:
                logger.exception("handling %s failed", type(message).__name__)
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(ClientError("connection_closed", "the session ended"))

    async def _resume(self) -> bool:
        """Take the session over on a new WebSocket to its node, trying for up to
        ``RESUME_WINDOW`` seconds; True once ``resumed``. False when it cannot be: the node
        refuses connections (it is gone, and its sessions with it) or answers
        ``resume_failed``, or the token is refused (``closed_reason`` says so)."""
        if not self.resume_token or self.joined is None:
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(RESUME_WINDOW, self.reconnect_timeout)
        delay = BACKOFF_FIRST
        self._rejoining = True  # close() stops the attempts at once
        try:
            while not self._closing:
                try:
                    first = await self._resume_once(RESUME_ATTEMPT)
                except aiohttp.ClientConnectorError as exc:
                    logger.info("resume: %s", exc)
                    return False
                except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                    logger.info("resume: %s", exc or type(exc).__name__)
                else:
                    if isinstance(first, p.Resumed):
                        await self._handle(first)
                        return True
                    if isinstance(first, p.Error) and (
                        first.code.startswith("token_") or first.code == "permission_denied"
                    ):
                        self.closed_reason = first.code  # joining again will never work
                    logger.info("resume refused: %s", first)
                    return False
                if loop.time() + delay > deadline:
                    return False
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
            return False
        finally:
            self._rejoining = False

    async def _resume_once(self, timeout: float) -> Any:
        assert self._session is not None and self.joined is not None
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        connecting = self._session.ws_connect(self.url, heartbeat=HEARTBEAT)
        self._ws = await asyncio.wait_for(connecting, timeout)
        resume = p.Resume(
            type="resume", sid=self.sid, resume_token=self.resume_token, token=self.token
        )
        await self._send(resume)
        msg = await self._ws.receive(timeout=timeout)
        if msg.type != aiohttp.WSMsgType.TEXT:
            await self._ws.close()
            raise ValueError(f"server closed the connection ({msg.type})")
        return p.server_message.validate_json(msg.data)

    async def _rejoin(self) -> bool:
        """Join again through the entry URL until ``reconnect_timeout``; True once joined."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.reconnect_timeout
        delay = BACKOFF_FIRST
        while not self._closing:
            try:
                joined = await self._place(min(10.0, max(0.5, deadline - loop.time())))
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                logger.info("reconnect: %s", exc or type(exc).__name__)
            except ClientError as exc:
                if exc.code.startswith("token_") or exc.code in ("permission_denied",):
                    self.closed_reason = exc.code  # joining again will never work
                    return False
                logger.info("reconnect: %s", exc)
            else:
                self.joined = joined
                self.resume_token = joined.resume_token
                self.closed_reason = None
                self.active_speakers = []  # the new session says who speaks, if anyone
                self._learn_roster(joined)
                self._take_servers(joined)
                self._sub, self.reliable, self.lossy = self._subscriber()
                self._sub_tracks = {}
                self._sub_owners = {}
                return True
            if loop.time() + delay > deadline:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)
        return False

    async def _republish(self) -> None:
        """After joining again: the asks about tracks still in the room hold again, and what
        was published (still live) is published again, muted if it was."""
        assert self.joined is not None
        present = {t.sid for other in self.joined.others for t in other.tracks}
        self._choices = {key: ask for key, ask in self._choices.items() if key[1] in present}
        outgoing = [o for o in self._outgoing if o.track.readyState == "live"]
        self._outgoing = []
        self.published = {}
        try:
            for ask in self._choices.values():
                await self._send(ask)
            if outgoing:
                await self._publish(outgoing, 10.0)
            for item in outgoing:
                if item.muted:
                    await self.mute(item.sid)
        except Exception as exc:  # the session may be gone again: the read loop says so
            logger.warning("resuming after reconnecting failed: %r", exc)
            if not self._outgoing:
                self._outgoing = outgoing  # the next reconnect tries again

    def _learn_roster(self, joined: p.Joined) -> None:
        self.identities = {o.sid: o.identity for o in joined.others}
        self.track_owners = {t.sid: o.sid for o in joined.others for t in o.tracks}

    def _follow_roster(self, message: p._Message) -> None:
        if isinstance(message, p.Resumed):  # where the room stands now: events were missed
            self.identities = {o.sid: o.identity for o in message.others}
            self.track_owners.update({t.sid: o.sid for o in message.others for t in o.tracks})
        elif isinstance(message, p.ParticipantJoined):
            self.identities[message.participant.sid] = message.participant.identity
            for track in message.participant.tracks:
                self.track_owners[track.sid] = message.participant.sid
        elif isinstance(message, p.TrackPublished):
            self.track_owners[message.track.sid] = message.participant_sid
        elif isinstance(message, p.ParticipantLeft):
            self.identities.pop(message.sid, None)

    def identity_of(self, participant_sid: str) -> str:
        """The identity of another participant in the room ("" if unknown here)."""
        return self.identities.get(participant_sid, "")

    async def _handle(self, message: Any) -> None:
        self._follow_roster(message)
        for listener in self.listeners:
            try:
                listener(message)
            except Exception:
                logger.exception("a listener failed on %s", type(message).__name__)
        if isinstance(message, p.SubscriberOffer):
            await self._answer_subscriber_offer(message)
        elif isinstance(message, p.PublishAnswer):
            if self._answer is not None and not self._answer.done():
                self._answer.set_result(message)
        elif isinstance(message, p.Error):
            if self._answer is not None and not self._answer.done():
                self._answer.set_exception(ClientError(message.code, message.message))
            await self.errors.put(message)
            await self.events.put(message)
        else:
            if isinstance(message, p.Closed):
                self.closed_reason = message.reason
            elif isinstance(message, p.Resumed):
                self.resume_token = message.resume_token
                self.permissions = message.permissions
            elif isinstance(message, p.PermissionsChanged):
                self.permissions = message.permissions
                if not message.permissions.can_publish:
                    self._drop_outgoing()
            elif isinstance(message, p.ActiveSpeakers):
                self.active_speakers = message.speakers
            await self.events.put(message)

    def _drop_outgoing(self) -> None:
        """Publishing was taken away: the relay has unpublished our tracks already. Their
        senders stop and their sections go inactive in the next offer (stopping them would
        close the connection's transport once none is left, ending the session), and they
        are forgotten, so neither a later publish nor a reconnect offers them again."""
        for item in self._outgoing:
            if item.transceiver is not None and not item.transceiver.stopped:
                item.transceiver.sender.replaceTrack(None)
                item.transceiver.direction = "inactive"
        self._outgoing = []
        self.published = {}

    async def _answer_subscriber_offer(self, offer: p.SubscriberOffer) -> None:
        async with self._negotiation:
            self._sub_tracks.update(offer.tracks)
            self._sub_owners.update(stream_ids(offer.sdp))
            await self._sub.setRemoteDescription(
                RTCSessionDescription(self._via(offer.sdp), "offer")
            )
            answer = await self._sub.createAnswer()
            await self._sub.setLocalDescription(answer)
            await self._send(
                p.SubscriberAnswer(type="subscriber_answer", sdp=self._sub.localDescription.sdp)
            )

    def _via(self, sdp: str) -> str:
        """Point the relay's candidates at ``media_via`` (the relay is ICE-lite: it learns
        our address from the checks, so only our side needs to know)."""
        return sdp if self.media_via is None else candidates_via(sdp, self.media_via)

    def _on_track(self, pc: RTCPeerConnection, track: MediaStreamTrack) -> None:
        transceiver = next((t for t in pc.getTransceivers() if t.receiver.track is track), None)
        mid = transceiver.mid if transceiver is not None else None
        if transceiver is not None and track.kind == "audio" and self.audio_hold is not None:
            hold_audio_frames(transceiver.receiver, self.audio_hold)
        track_sid = self._sub_tracks.get(mid or "", track.id)
        owner = self._sub_owners.get(mid or "")
        if owner:  # the relay names each track's stream by its publisher's sid
            self.track_owners[track_sid] = owner
        self.tracks.put_nowait((track_sid, track))

    def _on_data(self, message: str | bytes) -> None:
        with contextlib.suppress(ValueError):
            self.data.put_nowait(json.loads(message))

    # publishing and subscribing --------------------------------------------------------------

    async def publish(
        self,
        *tracks: MediaStreamTrack,
        names: Sequence[str] | None = None,
        video_codec: str | None = None,
        timeout: float = 10.0,
        sources: Sequence[p.Source] | None = None,
    ) -> dict[str, str]:
        """Publish tracks (renegotiating if already publishing); returns mid -> track sid.

        ``video_codec`` ("video/VP8" or "video/H264") restricts what video tracks offer.
        ``sources`` says what each track is (camera, microphone, screen, screen_audio) where
        the kind does not: a token may allow only some sources. A track whose source is not
        allowed is answered as rejected and gets no sid.
        """
        outgoing = [
            _Outgoing(
                track,
                names[i] if names else track.kind,
                video_codec,
                source=sources[i] if sources else None,
            )
            for i, track in enumerate(tracks)
        ]
        return await self._publish(outgoing, timeout)

    async def _publish(self, outgoing: list[_Outgoing], timeout: float) -> dict[str, str]:
        if self._pub is None:
            self._pub = self._peer_connection()
        pc = self._pub
        # aiortc loses transceivers added while its first negotiation is still connecting.
        if pc.connectionState == "connecting":
            await self._connected(pc, timeout)
        added: list[tuple[_Outgoing, Any]] = []
        for item in outgoing:
            transceiver = pc.addTransceiver(item.track, direction="sendonly")
            if item.video_codec and item.track.kind == "video":
                capabilities = RTCRtpSender.getCapabilities("video").codecs
                transceiver.setCodecPreferences(
                    [c for c in capabilities if c.mimeType.lower() == item.video_codec.lower()]
                )
            added.append((item, transceiver))
        offer = await pc.createOffer()
        await pc.setLocalDescription(offer)
        # mids are only known after setLocalDescription
        infos = [
            p.TrackInfo(mid=t.mid or "", name=item.name, source=item.source) for item, t in added
        ]
        self._answer = asyncio.get_running_loop().create_future()
        await self._send(
            p.PublishOffer(type="publish_offer", sdp=pc.localDescription.sdp, tracks=infos)
        )
        answer = await asyncio.wait_for(self._answer, timeout)
        await pc.setRemoteDescription(RTCSessionDescription(self._via(answer.sdp), "answer"))
        self.published = dict(answer.tracks)
        for item, transceiver in added:
            item.sid = answer.tracks.get(transceiver.mid or "", "")
            item.transceiver = transceiver
        self._outgoing += [item for item, _ in added]
        return self.published

    @staticmethod
    async def _connected(pc: RTCPeerConnection, timeout: float) -> None:
        async def wait() -> None:
            while pc.connectionState == "connecting":
                await asyncio.sleep(0.01)

        await asyncio.wait_for(wait(), timeout)

    async def subscribe(self, track_sid: str) -> None:
        await self._ask("subscription", p.Subscribe(type="subscribe", track_sid=track_sid))

    async def unsubscribe(self, track_sid: str) -> None:
        await self._ask("subscription", p.Unsubscribe(type="unsubscribe", track_sid=track_sid))

    async def set_quality(self, track_sid: str, quality: p.Quality) -> None:
        """The highest simulcast layer to receive of ``track_sid``."""
        message = p.SetQuality(type="set_quality", track_sid=track_sid, quality=quality)
        await self._ask("quality", message)

    async def _ask(self, what: str, message: p.Subscribe | p.Unsubscribe | p.SetQuality) -> None:
        """Send, and remember it to say again after a reconnect."""
        self._choices[(what, message.track_sid)] = message
        await self._send(message)

    async def mute(self, track_sid: str, muted: bool = True) -> None:
        for item in self._outgoing:
            if item.sid == track_sid:
                item.muted = muted
        await self._send(p.Mute(type="mute", track_sid=track_sid, muted=muted))

    async def next_track(self, timeout: float = 10.0) -> tuple[str, MediaStreamTrack]:
        return await asyncio.wait_for(self.tracks.get(), timeout)

    async def wait_for(
        self, kind: type[Any], predicate: Callable[[Any], bool] | None = None, timeout: float = 10.0
    ) -> Any:
        """Next event of ``kind`` matching ``predicate``; other events are dropped."""

        async def scan() -> Any:
            while True:
                event = await self.events.get()
                if isinstance(event, kind) and (predicate is None or predicate(event)):
                    return event

        return await asyncio.wait_for(scan(), timeout)

    # data ---------------------------------------------------------------------------------

    async def wait_data_channels(self, timeout: float = 10.0) -> None:
        async def opened() -> None:
            while self.reliable.readyState != "open" or self.lossy.readyState != "open":
                await asyncio.sleep(0.02)

        await asyncio.wait_for(opened(), timeout)

    def send_data(
        self,
        payload: str,
        *,
        topic: str | None = None,
        to: Sequence[str] = (),
        lossy: bool = False,
    ) -> None:
        envelope: dict[str, Any] = {"payload": payload}
        if topic is not None:
            envelope["topic"] = topic
        if to:
            envelope["destination_identities"] = list(to)
        (self.lossy if lossy else self.reliable).send(json.dumps(envelope))

    # teardown --------------------------------------------------------------------------------

    async def leave(self) -> None:
        self._closing = True
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(Exception):
                await self._send(p.Leave(type="leave"))
        await self.close()

    async def close(self) -> None:
        self._closing = True
        if self._reader is not None and self._rejoining:
            self._reader.cancel()  # between sessions: nothing to read, stop trying now
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        await self._close_peer_connections(detach=False)
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._reader, 2.0)
        if self._session is not None:
            await self._session.close()

    async def _close_peer_connections(self, *, detach: bool) -> None:
        for pc in (self._pub, self._sub):
            if pc is None:
                continue
            if detach:
                for transceiver in pc.getTransceivers():
                    transceiver.sender.replaceTrack(None)
            with contextlib.suppress(Exception):
                await pc.close()
        self._pub = None
