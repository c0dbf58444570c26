"""One relay worker: a UDP socket, its rooms, and the periodic RTCP/consent tick.

The control plane calls the coroutine/methods here; the worker tells it what happened
through a ``RoomObserver``. Rooms and tracks stay plain state; the worker does the I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from . import rtcp
from .codecs import SUPPORTED, Codec
from .data_message import relay_data_message
from .dtls_adapter import generate_certificate, local_fingerprint
from .errors import NodeFullError, NotFoundError, PermissionDeniedError, SdpError, StateError
from .forwarder import fill_hole, resend
from .leg import Leg, PublisherLeg, SubscriberLeg
from .nack_tracker import NackTracker
from .packet_cache import PacketCache
from .rate_limiter import TokenBucket
from .room import Participant, Permissions, Room, new_sid
from .sdp_negotiation import (
    MAX_MESSAGE_SIZE,
    LocalTransport,
    OfferedMedia,
    RemoteDescription,
    SubscriberSlot,
    answer_role,
    choose_codec,
    parse_description,
    publisher_answer,
    subscriber_offer,
    twcc_extension,
    viewer_answer,
    viewer_slots,
)
from .simulcast import MID_URI, RID_URI, quality_layer
from .stats import RelayStats
from .track import DownTrack, UpTrack, random_ssrc
from .udp_mux import UdpMux
from .viewer import rewire_viewer

logger = logging.getLogger(__name__)
AnyLeg = TypeVar("AnyLeg", PublisherLeg, SubscriberLeg)
KEYFRAME_RETRY = 1.0  # seconds before a pending layer switch asks for its keyframe again
RESEND_MIN_INTERVAL = 0.1  # seconds between two retransmissions of one packet to one leg


@dataclass(slots=True)
class WorkerConfig:
    bind: str = "127.0.0.1"
    port: int = 7882
    announce: list[str] = field(default_factory=lambda: ["127.0.0.1"])
    consent_timeout: float = 15.0
    max_participants_per_room: int = 100
    max_participants: int = 1000
    data_max_bytes: int = 16384
    data_rate: float = 50.0
    data_burst: float = 100.0
    keyframe_interval: float = 0.5
    udp_buffer_bytes: int = 0  # 0: the kernel's default
    tick_interval: float = 0.1
    report_interval: float = 1.0
    nack_repair: bool = True


class RoomObserver(Protocol):
    """Events the control plane forwards to clients."""

    def participant_joined(self, room: Room, participant: Participant) -> None: ...
    def participant_left(self, room: Room, participant: Participant, reason: str) -> None: ...
    def track_published(self, room: Room, participant: Participant, track: UpTrack) -> None: ...
    def track_unpublished(self, room: Room, participant: Participant, track: UpTrack) -> None: ...
    def track_muted(self, room: Room, participant: Participant, track: UpTrack) -> None: ...
    def negotiation_needed(self, participant: Participant) -> None: ...
    def data_rejected(self, participant: Participant, code: str, message: str) -> None: ...


@dataclass(slots=True)
class PublishedTrackInfo:
    """What a publisher says about an m-line of its offer (name and source are informative)."""

    name: str = ""


class RelayWorker:
    def __init__(self, config: WorkerConfig, observer: RoomObserver) -> None:
        self.config = config
        self.observer = observer
        self.stats = RelayStats()
        self.rooms: dict[str, Room] = {}
        # Publisher legs in join order: the periodic work walks these, not every room, so
        # rooms where nobody publishes cost the ticks nothing.
        self.publisher_legs: dict[PublisherLeg, None] = {}
        self.certificate = generate_certificate()
        self.fingerprint = local_fingerprint(self.certificate)
        self.mux = UdpMux(self.stats, self._on_latch)
        self._transport: asyncio.DatagramTransport | None = None
        self._tick_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = config.port

    # lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self.mux, sock=self._bind_socket()
        )
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        self._tick_task = asyncio.create_task(self._tick_loop())
        logger.info("relay worker on udp %s:%s", self.config.bind, self.port)

    def _bind_socket(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.config.bind else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            size = self.config.udp_buffer_bytes
            if size:
                for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                    sock.setsockopt(socket.SOL_SOCKET, option, size)
                # Linux reports twice what it grants (bookkeeping overhead included)
                granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
                if granted < size:
                    logger.warning(
                        "UDP receive buffer is %d bytes, not %d: raise net.core.rmem_max",
                        granted,
                        size,
                    )
            sock.bind((self.config.bind, self.config.port))
        except OSError:
            sock.close()
            raise
        return sock

    async def stop(self) -> None:
        for room in list(self.rooms.values()):
            await self.delete_room(room.name, reason="server_shutdown")
        if self._tick_task is not None:
            self._tick_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick_task
        for task in list(self._tasks):
            task.cancel()
        if self._transport is not None:
            self._transport.close()

    @property
    def participant_count(self) -> int:
        return sum(len(r.participants) for r in self.rooms.values())

    @property
    def track_count(self) -> int:
        return sum(len(r.tracks()) for r in self.rooms.values())

    # rooms and participants ------------------------------------------------------------

    def create_room(
        self, name: str, max_participants: int | None = None, by_api: bool = False
    ) -> Room:
        room = self.rooms.get(name)
        if room is None:
            limit = (
                self.config.max_participants_per_room
                if max_participants is None
                else max_participants
            )
            room = Room(name=name, max_participants=limit, created_by_api=by_api)
            self.rooms[name] = room
        return room

    def get_room(self, name: str) -> Room:
        room = self.rooms.get(name)
        if room is None:
            raise NotFoundError(f"room {name} does not exist")
        return room

    async def delete_room(self, name: str, reason: str = "room_deleted") -> None:
        room = self.get_room(name)
        for participant in list(room.participants.values()):
            await self.leave(participant, reason)
        self.rooms.pop(name, None)

    async def join(
        self,
        room_name: str,
        identity: str,
        permissions: Permissions,
        auto_subscribe: bool = True,
        name: str = "",
        metadata: str = "",
        signaling_leg: bool = True,
    ) -> Participant:
        """Admit a participant. ``signaling_leg=False`` (WHIP) skips the subscriber leg that
        carries data channels and relay-offered tracks."""
        room = self.rooms.get(room_name)
        previous = room.by_identity(identity) if room else None
        if previous is not None:
            await self.leave(previous, "duplicate_identity")
        if self.config.max_participants and self.participant_count >= self.config.max_participants:
            raise NodeFullError("this node has reached its participant capacity")
        room = self.create_room(room_name)
        participant = Participant(
            room=room_name,
            identity=identity,
            permissions=permissions,
            data_limiter=TokenBucket(self.config.data_rate, self.config.data_burst),
            auto_subscribe=auto_subscribe,
            name=name,
            metadata=metadata,
            joined_at=time.time(),
        )
        try:
            room.admit(participant)
        except Exception:
            if not room.participants and not room.created_by_api:
                self.rooms.pop(room_name, None)
            raise
        if signaling_leg:
            leg = SubscriberLeg(self, participant, self.certificate, "server", time.perf_counter())
            leg.dtls.on_closed(lambda: self.leg_failed(leg))
            participant.subscriber_leg = leg
            self.mux.responder.add(leg.credentials, leg)
        if permissions.can_subscribe and auto_subscribe and signaling_leg:
            for track in room.tracks():
                self._subscribe(participant, track)
        self.observer.participant_joined(room, participant)
        return participant

    async def leave(self, participant: Participant, reason: str = "left") -> None:
        room = self.rooms.get(participant.room)
        if room is None or room.participants.get(participant.sid) is not participant:
            return
        del room.participants[participant.sid]
        for track in list(participant.published.values()):
            self._unpublish(room, participant, track)
        for down in list(participant.subscriptions.values()):
            down.detach()
        participant.subscriptions.clear()
        for leg in (participant.publisher_leg, participant.subscriber_leg):
            if leg is not None:
                await self._close_leg(leg)
        logger.info("participant %s left room %s (%s)", participant.sid, room.name, reason)
        self.observer.participant_left(room, participant, reason)
        if not room.participants:
            self.rooms.pop(room.name, None)

    async def _close_leg(self, leg: Leg) -> None:
        leg.closed = True
        if isinstance(leg, PublisherLeg):
            self.publisher_legs.pop(leg, None)
        self.mux.forget(leg)
        await leg.dtls.close()

    # publishing -----------------------------------------------------------------------

    async def publish(
        self,
        participant: Participant,
        offer_sdp: str,
        info: dict[str, PublishedTrackInfo] | None = None,
    ) -> str:
        """Answer a publisher offer; new m-lines become tracks, dropped ones are unpublished."""
        if not participant.permissions.can_publish:
            raise PermissionDeniedError("this token does not allow publishing")
        room = self.get_room(participant.room)
        offer = parse_description(offer_sdp)
        leg = participant.publisher_leg
        if leg is None:
            leg = self._answering_leg(PublisherLeg, participant, offer)
            participant.publisher_leg = leg
            self.publisher_legs[leg] = None
        elif offer.fingerprints != leg.remote_fingerprints:
            raise SdpError("the DTLS fingerprint changed; start a new session instead")
        leg.twcc_id = twcc_extension(offer) or 0
        for media in offer.media:
            if media.simulcast:
                leg.rid_id = media.extensions[RID_URI]
                leg.mid_id = media.extensions.get(MID_URI, 0)
        accepted = self._accept_publisher_media(room, participant, leg, offer, info or {})
        setup = "passive" if leg.dtls.role == "server" else "active"
        offer.setup = "passive" if setup == "active" else "actpass"
        answer = publisher_answer(offer, self._local_transport(leg), accepted)
        self._maybe_start_dtls(leg)
        return answer

    def _accept_publisher_media(
        self,
        room: Room,
        participant: Participant,
        leg: PublisherLeg,
        offer: RemoteDescription,
        info: dict[str, PublishedTrackInfo],
    ) -> dict[str, Codec]:
        by_mid = {t.mid: t for t in participant.published.values()}
        accepted: dict[str, Codec] = {}
        for media in offer.media:
            existing = by_mid.pop(media.mid, None)
            sending = media.port != 0 and media.direction in ("sendonly", "sendrecv")
            if media.kind not in ("audio", "video") or not sending:
                if existing is not None:
                    self._unpublish(room, participant, existing)
                continue
            if existing is not None:
                accepted[media.mid] = existing.codec
                continue
            codec = choose_codec(media)
            if codec is None:
                continue
            accepted[media.mid] = codec
            track = self._new_track(participant, media, codec, new_sid("TR"))
            track.name = info.get(media.mid, PublishedTrackInfo()).name
            if media.simulcast:
                for rid in media.rids:
                    layer = self._new_track(participant, media, codec, track.sid)
                    layer.rid, layer.ssrc = rid, None
                    track.layers.append(layer)
            participant.published[track.sid] = track
            leg.add_track(track)
            self.observer.track_published(room, participant, track)
            for other in room.others(participant):
                if other.permissions.can_subscribe and other.auto_subscribe:
                    self._subscribe(other, track)
            self._rewire_viewers(room)
        for gone in by_mid.values():  # m-lines missing from the new offer
            self._unpublish(room, participant, gone)
        return accepted

    def _new_track(
        self, participant: Participant, media: OfferedMedia, codec: Codec, sid: str
    ) -> UpTrack:
        track = UpTrack(
            sid=sid,
            kind=media.kind,
            codec=codec,
            mid=media.mid,
            publisher_sid=participant.sid,
            room=participant.room,
            ssrc=media.ssrc,
        )
        track.keyframes.interval = self.config.keyframe_interval
        if track.kind == "video":
            track.cache = PacketCache()
            track.nacks = NackTracker()
        return track

    def _unpublish(self, room: Room, participant: Participant, track: UpTrack) -> None:
        participant.published.pop(track.sid, None)
        if participant.publisher_leg is not None:
            participant.publisher_leg.remove_track(track)
        for down in track.all_downs():
            subscriber = room.participants.get(down.subscriber_sid)
            if subscriber is not None and subscriber.follow is None:  # viewers are rewired
                self._drop_down(subscriber, down)
        for stream in track.streams():
            stream.down_tracks = []
            stream.pending = []
        self.observer.track_unpublished(room, participant, track)
        self._rewire_viewers(room)

    def set_muted(self, participant: Participant, track_sid: str, muted: bool) -> None:
        track = participant.published.get(track_sid)
        if track is None:
            raise NotFoundError(f"track {track_sid} is not published by this participant")
        if track.muted != muted:
            for stream in track.streams():
                stream.muted = muted
            if not muted:
                for down in track.all_downs():
                    down.waiting_keyframe = True
                self.request_keyframe(track)
            self.observer.track_muted(self.get_room(participant.room), participant, track)

    # subscribing ------------------------------------------------------------------------

    def subscribe(self, participant: Participant, track_sid: str) -> None:
        if not participant.permissions.can_subscribe:
            raise PermissionDeniedError("this token does not allow subscribing")
        track = self.get_room(participant.room).find_track(track_sid)
        if track.publisher_sid == participant.sid:
            raise StateError("a participant cannot subscribe to its own track")
        self._subscribe(participant, track)

    def unsubscribe(self, participant: Participant, track_sid: str) -> None:
        down = participant.subscriptions.get(track_sid)
        if down is None:
            raise NotFoundError(f"not subscribed to {track_sid}")
        self._drop_down(participant, down)

    def _subscribe(self, participant: Participant, track: UpTrack) -> None:
        if track.sid in participant.subscriptions:
            return
        leg: SubscriberLeg = participant.subscriber_leg
        base = SUPPORTED[track.codec.mime.lower()]
        codec = Codec(
            track.codec.mime,
            base.clock_rate,
            base.payload_type,
            base.channels,
            dict(track.codec.fmtp) or dict(base.fmtp),
        )
        slot = SubscriberSlot(
            mid=leg.next_mid(),
            kind=track.kind,
            codec=codec,
            stream_id=track.publisher_sid,
            track_sid=track.sid,
        )
        down = DownTrack(
            up=track,
            subscriber_sid=participant.sid,
            mid=slot.mid,
            payload_type=codec.payload_type,
            sink=leg,
        )
        slot.ssrc = down.ssrc
        leg.slots.append(slot)
        leg.by_ssrc[down.ssrc] = down
        participant.subscriptions[track.sid] = down
        down.attach(track, time.monotonic())
        self._renegotiate(leg)

    def set_quality(self, participant: Participant, track_sid: str, quality: str) -> None:
        """A subscriber's ceiling for a simulcast track (low, medium, high)."""
        down = participant.subscriptions.get(track_sid)
        if down is None:
            raise NotFoundError(f"not subscribed to {track_sid}")
        if down.selector is not None and down.source is not None:
            down.selector.max_layer = quality_layer(quality, len(down.source.layers))
            self._select_layer(down, time.monotonic())

    def _drop_down(self, participant: Participant, down: DownTrack) -> None:
        leg: SubscriberLeg = participant.subscriber_leg
        down.active = False
        down.detach()
        participant.subscriptions.pop(down.up.sid, None)
        leg.by_ssrc.pop(down.ssrc, None)
        for slot in leg.slots:
            if slot.ssrc == down.ssrc:
                slot.codec = None  # the m-line stays, inactive
        self._renegotiate(leg)

    def _renegotiate(self, leg: SubscriberLeg) -> None:
        leg.needs_offer = True
        if not leg.offer_pending:
            self.observer.negotiation_needed(leg.participant)

    def subscriber_offer(self, participant: Participant) -> tuple[str, dict[str, str]] | None:
        """The next offer for the subscriber leg, or None while one is awaiting its answer."""
        leg: SubscriberLeg = participant.subscriber_leg
        if leg is None or leg.closed or leg.offer_pending or not leg.needs_offer:
            return None
        if leg.offer_version > 0 and leg.tx_srtp is None:
            # Renegotiating before the first negotiation has connected makes aiortc drop the
            # new receivers; wait for DTLS (``_run_dtls`` asks again when it connects).
            return None
        leg.offer_pending = True
        leg.needs_offer = False
        leg.offer_version += 1
        leg.offered_ssrcs = {s.ssrc for s in leg.slots if s.live}
        sdp = subscriber_offer(
            self._local_transport(leg), leg.slots, leg.offer_version, leg.session_id
        )
        return sdp, {s.mid: s.track_sid for s in leg.slots if s.live}

    async def subscriber_answer(self, participant: Participant, answer_sdp: str) -> None:
        leg: SubscriberLeg = participant.subscriber_leg
        if leg is None or not leg.offer_pending:
            raise StateError("no subscriber offer is awaiting an answer")
        answer = parse_description(answer_sdp)
        leg.offer_pending = False
        if not leg.dtls_started:
            leg.remote_fingerprints = answer.fingerprints
            leg.dtls.set_role("client" if answer.setup == "passive" else "server")
        accepted: set[int] = set()
        by_mid = {s.mid: s for s in leg.slots}
        for media in answer.media:
            if media.kind == "application" and media.sctp_port:
                leg.remote_sctp_port = media.sctp_port
            slot = by_mid.get(media.mid)
            if (
                slot is not None
                and slot.live
                and media.port != 0
                and media.direction in ("recvonly", "sendrecv")
            ):
                accepted.add(slot.ssrc)
        leg.accepted_ssrcs = accepted & leg.offered_ssrcs
        self._maybe_start_dtls(leg)
        self._activate(leg)
        if leg.needs_offer:
            self.observer.negotiation_needed(participant)

    def _activate(self, leg: SubscriberLeg) -> None:
        for down in leg.refresh_active():
            self.request_keyframe(down.up)

    # viewers (WHEP) --------------------------------------------------------------------------

    async def view(self, participant: Participant, offer_sdp: str) -> str:
        """Answer a viewer's recvonly offer; it receives the room's publisher, whoever that is."""
        if not participant.permissions.can_subscribe:
            raise PermissionDeniedError("this token does not allow subscribing")
        offer = parse_description(offer_sdp)
        slots = viewer_slots(offer)
        if not slots:
            raise SdpError("the offer has no receiving audio or video in a codec the relay sends")
        leg = self._answering_leg(SubscriberLeg, participant, offer)
        leg.has_data = False
        for slot in slots:
            slot.ssrc = random_ssrc()
            slot.stream_id = participant.sid
            slot.track_id = f"{participant.sid}-{slot.mid}"
        leg.viewer_slots = slots
        leg.offer_pending = False
        leg.needs_offer = False
        participant.subscriber_leg = leg
        if participant.follow is None:
            participant.follow = ""
        answer = viewer_answer(offer, self._local_transport(leg), slots)
        self._rewire_viewer(self.get_room(participant.room), participant)
        self._maybe_start_dtls(leg)
        return answer

    def _rewire_viewers(self, room: Room) -> None:
        for participant in list(room.participants.values()):
            if participant.follow is not None and participant.subscriber_leg is not None:
                self._rewire_viewer(room, participant)

    def _rewire_viewer(self, room: Room, viewer: Participant) -> None:
        rewire_viewer(room, viewer, time.monotonic())
        self._activate(viewer.subscriber_leg)

    # transport ---------------------------------------------------------------------------

    def _answering_leg(
        self, kind: type[AnyLeg], participant: Participant, offer: RemoteDescription
    ) -> AnyLeg:
        """A leg for which the peer offered: DTLS role and fingerprints come from its offer."""
        _, role = answer_role(offer.setup)
        leg = kind(self, participant, self.certificate, role, time.perf_counter())
        leg.remote_fingerprints = offer.fingerprints
        leg.dtls.on_closed(lambda: self.leg_failed(leg))
        self.mux.responder.add(leg.credentials, leg)
        return leg

    def _local_transport(self, leg: Leg) -> LocalTransport:
        return LocalTransport(
            credentials=leg.credentials,
            fingerprint=self.fingerprint,
            candidates=[(address, self.port) for address in self.config.announce],
        )

    def _on_latch(self, leg: Leg) -> None:
        self._maybe_start_dtls(leg)

    def _maybe_start_dtls(self, leg: Leg) -> None:
        if leg.ready_to_start:
            leg.dtls_started = True
            self._spawn(self._run_dtls(leg))

    async def _run_dtls(self, leg: Leg) -> None:
        try:
            ok = await leg.dtls.start(leg.remote_fingerprints)
        except Exception:  # a peer must never leave a leg half-open
            logger.exception("DTLS start crashed for %s", leg.participant.sid)
            ok = False
        if leg.closed:
            return
        if not ok:
            logger.info(
                "DTLS handshake failed for %s leg of %s", leg.direction, leg.participant.sid
            )
            self.leg_failed(leg)
            return
        if leg.dtls.handshake_seconds is not None:
            self.stats.dtls_handshake_seconds.observe(leg.dtls.handshake_seconds)
        leg.connected()
        if isinstance(leg, SubscriberLeg):
            if leg.has_data:
                self._open_data(leg)
            self._activate(leg)
            if leg.needs_offer:
                self.observer.negotiation_needed(leg.participant)
        else:
            # Subscribers that activated before the publisher connected still wait for a
            # keyframe; a publisher with nobody waiting sends its first keyframe anyway.
            for track in leg.participant.published.values():
                if any(d.active and d.waiting_keyframe for d in track.all_downs()):
                    self.request_keyframe(track)

    def _open_data(self, leg: SubscriberLeg) -> None:
        reliable, lossy, task = leg.dtls.open_data_channels(leg.remote_sctp_port, MAX_MESSAGE_SIZE)
        leg.reliable, leg.lossy = reliable, lossy
        participant = leg.participant
        reliable.on("message", lambda m: self.data_received(participant, False, m))
        lossy.on("message", lambda m: self.data_received(participant, True, m))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # LegHost -----------------------------------------------------------------------------

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.mux.sendto(data, addr)

    def request_keyframe(self, up: UpTrack) -> None:
        now = time.monotonic()
        for stream in up.streams():  # a simulcast track: every layer
            if stream.kind == "video" and stream.keyframes.request(now):
                self._send_pli(stream)

    def retransmit(self, down: DownTrack, lost: list[int]) -> None:
        """Answer a subscriber's NACK from the packet cache; what is gone needs a keyframe."""
        if not self.config.nack_repair:  # off only to measure what repair is worth
            return
        if down.up.cache is None:
            return
        now = time.perf_counter()
        leg: SubscriberLeg = down.sink
        # A packet is resent at most once per round trip: receivers that repeat every
        # missing number in each NACK would otherwise multiply the load on a link that is
        # already dropping packets.
        interval = max(RESEND_MIN_INTERVAL, 1.5 * (leg.rtt_ms or 0.0) / 1000.0)
        missing = False
        for out_seq in lost:
            if not down.may_resend(out_seq, now, interval):
                continue
            if not leg.retransmit_budget.allow(now):
                return  # flood: the rest is ignored
            origin = down.source_of(out_seq)  # the layer or publisher it was sent from
            if origin is None:
                missing = True
                fill_hole(down, out_seq, self.mux.sendto, self.stats)
                continue
            source, seq_offset, ts_offset = origin
            in_seq = (out_seq - seq_offset) & 0xFFFF
            rtp = source.cache.get(in_seq, now) if source.cache is not None else None
            if rtp is not None:
                resend(down, rtp, seq_offset, ts_offset, self.mux.sendto, self.stats)
                continue
            missing = True
            if not _awaited_upstream(source, in_seq):
                fill_hole(down, out_seq, self.mux.sendto, self.stats)
        if missing:
            self.stats.nack_unanswerable += 1
            self.request_keyframe(down.up)

    def _send_pli(self, up: UpTrack) -> None:
        room = self.rooms.get(up.room)
        publisher = room.participants.get(up.publisher_sid) if room else None
        leg = publisher.publisher_leg if publisher else None
        if leg is not None and up.ssrc is not None:
            leg.send_rtcp(rtcp.pli(leg.rtcp_ssrc, up.ssrc))
            self.stats.keyframe_requests_sent += 1

    def leg_failed(self, leg: Leg) -> None:
        if not leg.closed:
            reason = "transport_closed" if leg.tx_srtp is not None else "transport_failed"
            self._spawn(self.leave(leg.participant, reason))

    def data_received(self, participant: Participant, lossy: bool, message: bytes | str) -> None:
        rejected = relay_data_message(
            self.rooms.get(participant.room),
            participant,
            lossy,
            message,
            self.config.data_max_bytes,
            time.monotonic(),
            self.stats,
        )
        if rejected is not None:
            self.observer.data_rejected(participant, *rejected)

    # periodic work -------------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        last_report = 0.0
        while True:
            await asyncio.sleep(self.config.tick_interval)
            try:
                now = time.monotonic()
                self._send_due_keyframe_requests(now)
                self._send_due_nacks(time.perf_counter())
                if now - last_report >= self.config.report_interval:
                    self._select_layers(now, now - last_report)
                    last_report = now
                    self._send_receiver_reports(now)
                    self._expire_silent_peers()
            except Exception:
                logger.exception("relay tick failed")

    def _publishing(self) -> list[PublisherLeg]:
        """Connected publisher legs (a copy: the tick's work may end a session)."""
        return [leg for leg in self.publisher_legs if leg.tx_srtp is not None]

    def _send_due_keyframe_requests(self, now: float) -> None:
        for leg in self._publishing():
            for track in leg.participant.published.values():
                for stream in track.streams():
                    if stream.keyframes.due(now):
                        self._send_pli(stream)
                    elif stream.pending and now - stream.keyframes.last_sent > KEYFRAME_RETRY:
                        # a layer switch waits for this keyframe: senders may drop a request
                        self.request_keyframe(stream)

    def _select_layers(self, now: float, interval: float) -> None:
        """Once per report interval: measure each layer's rate, then re-choose layers."""
        for leg in self._publishing():
            for track in leg.participant.published.values():
                if not track.layers:
                    continue
                for layer in track.layers:
                    layer.measure_rate(interval)
                for down in track.all_downs():
                    self._select_layer(down, now)

    def _select_layer(self, down: DownTrack, now: float) -> None:
        track = down.source
        if down.selector is None or track is None or not track.layers:
            return
        wanted = down.pending_layer or down.up
        choice = down.selector.choose([t.rate_bps for t in track.layers], now)
        layer = track.layers[choice] if choice >= 0 else wanted
        if layer is not wanted and down.switch_layer(layer):
            self.request_keyframe(layer)

    def _send_due_nacks(self, now: float) -> None:
        """Each tick: repeat NACKs upstream and send transport-wide congestion feedback."""
        for leg in self._publishing():
            leg.send_due_nacks(now)
            leg.send_twcc_feedback()

    def _send_receiver_reports(self, now: float) -> None:
        for leg in self._publishing():
            leg.send_receiver_reports(now)

    def _expire_silent_peers(self) -> None:
        """Remove participants none of whose legs has been heard from within the timeout.

        A leg that only receives (a publisher's own data-only subscriber leg) may carry
        nothing but a consent check every ~5 s, so liveness is judged per participant.
        """
        now = time.perf_counter()
        timeout = self.config.consent_timeout
        for room in list(self.rooms.values()):
            for participant in list(room.participants.values()):
                legs = [
                    leg for leg in (participant.publisher_leg, participant.subscriber_leg) if leg
                ]
                if legs and now - max(leg.last_seen for leg in legs) > timeout:
                    logger.info("consent expired for %s", participant.sid)
                    self._spawn(self.leave(participant, "consent_timeout"))


def _awaited_upstream(up: UpTrack, in_seq: int) -> bool:
    """Whether the relay is still NACKing the publisher for ``in_seq``: once it arrives it is
    forwarded, so the number must not be taken by a filler meanwhile."""
    return up.nacks is not None and in_seq in up.nacks.missing
