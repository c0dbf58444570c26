"""Publishing: answering a publisher's offers (new m-lines become tracks, dropped ones are
unpublished), handing new tracks to the room's subscribers and viewers, and muting."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol

from .audio_level import AUDIO_LEVEL_URI, AudioLevel
from .codecs import Codec
from .errors import NotFoundError, PermissionDeniedError, SdpError
from .ice_lite import IceCredentials
from .nack_tracker import NackTracker
from .packet_cache import PacketCache
from .publisher_leg import PublisherLeg
from .repair import Repair
from .room import Participant, ParticipantKind, Room, default_source, new_sid
from .rooms import Rooms
from .sdp_negotiation import (
    RemoteDescription,
    check_client_offer,
    choose_codec,
    describe_rejections,
    offered_red,
    parse_description,
    publisher_answer,
    rejections,
    twcc_extension,
)
from .simulcast import MID_URI, RID_URI
from .subscriptions import Subscriptions
from .track import UpTrack
from .transport import Transports
from .viewing import Viewing

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class PublishedTrackInfo:
    """What a publisher says about an m-line of its offer (name and source are informative)."""

    name: str = ""
    source: str = ""  # empty: the kind's usual source (relay.room.default_source)


class TrackEvents(Protocol):
    def track_published(self, room: Room, participant: Participant, track: UpTrack) -> None: ...
    def track_unpublished(self, room: Room, participant: Participant, track: UpTrack) -> None: ...
    def track_muted(self, room: Room, participant: Participant, track: UpTrack) -> None: ...


class Publishing:
    def __init__(
        self,
        rooms: Rooms,
        transports: Transports,
        repair: Repair,
        subscriptions: Subscriptions,
        viewing: Viewing,
        events: TrackEvents,
        keyframe_interval: float,
        audio_red: bool = True,
    ) -> None:
        self.rooms = rooms
        self.transports = transports
        self.repair = repair
        self.subscriptions = subscriptions
        self.viewing = viewing
        self.events = events
        self.keyframe_interval = keyframe_interval
        self.audio_red = audio_red  # take RED (RFC 2198) from publishers that offer it

    async def publish(
        self,
        participant: Participant,
        offer_sdp: str,
        info: dict[str, PublishedTrackInfo] | None = None,
    ) -> str:
        """Answer a publisher offer; new m-lines become tracks, dropped ones are unpublished."""
        if not participant.permissions.can_publish:
            raise PermissionDeniedError("this token does not allow publishing")
        room = self.rooms.get(participant.room)
        offer = parse_description(offer_sdp)
        check_client_offer(offer)
        leg = participant.publisher_leg
        if leg is None:
            leg = self.transports.answering_leg(PublisherLeg, participant, offer)
            participant.publisher_leg = leg
        elif offer.fingerprints != leg.remote_fingerprints:
            raise SdpError("the DTLS fingerprint changed; start a new session instead")
        else:  # the peer's ICE credentials, should it have restarted ICE
            leg.remote_credentials = IceCredentials(offer.ice_ufrag, offer.ice_pwd)
        leg.twcc_id = twcc_extension(offer) or 0
        for media in offer.media:
            if media.simulcast:
                leg.rid_id = media.extensions[RID_URI]
                leg.mid_id = media.extensions.get(MID_URI, 0)
        accepted = self._accept_media(room, participant, leg, offer, info or {})
        setup = "passive" if leg.dtls.role == "server" else "active"
        offer.setup = "passive" if setup == "active" else "actpass"
        answer = publisher_answer(
            offer, self.transports.local(leg), accepted, self._red(participant, offer)
        )
        refused = rejections(offer, accepted, relay_receives=True)
        for mid, why in refused.items():
            if why == "not used":  # sendable, with a codec: its source is not granted
                refused[mid] = "this participant may not publish that source"
        if refused:
            logger.info(
                "%s: publish answer rejects %s",
                participant.sid,
                describe_rejections(offer, refused),
            )
        self.transports.maybe_start(leg)
        return answer

    def _red(self, participant: Participant, offer: RemoteDescription) -> dict[str, Codec]:
        """The RED codec each published audio m-line is answered with, by mid: the one
        its track was created with (a track keeps what it began with)."""
        red: dict[str, Codec] = {}
        if not self.audio_red:
            return red
        by_mid = {t.mid: t for t in participant.published.values()}
        for media in offer.media:
            track = by_mid.get(media.mid)
            if track is None or track.red_payload_type < 0:
                continue
            wrapper = offered_red(media, track.codec)
            if wrapper is not None and wrapper.payload_type == track.red_payload_type:
                red[media.mid] = wrapper
        return red

    def _accept_media(
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
            sending = not media.rejected and media.direction in ("sendonly", "sendrecv")
            if media.kind not in ("audio", "video") or not sending:
                if existing is not None:
                    self.unpublish(room, participant, existing)
                codec = choose_codec(media) if media.kind in ("audio", "video") else None
                if codec is not None and not media.rejected:
                    # A sender set inactive (a track stopped without renegotiating it away)
                    # is answered inactive, not rejected: rejecting the section that tags
                    # the offer's BUNDLE group moves the group, which Chromium cannot follow.
                    accepted[media.mid] = codec
                continue
            if existing is not None:
                accepted[media.mid] = existing.codec
                continue
            said = info.get(media.mid, PublishedTrackInfo())
            source = said.source or default_source(media.kind)
            if not participant.permissions.may_publish(source):
                continue  # answered as rejected: this participant may not publish that source
            codec = choose_codec(media)
            if codec is None:
                continue
            accepted[media.mid] = codec
            sid = new_sid("TR")
            track = self.new_track(participant, media.kind, codec, media.mid, sid, media.ssrc)
            track.name = said.name
            track.source = source
            wrapper = offered_red(media, codec) if self.audio_red else None
            if wrapper is not None:  # the track arrives as RED around its Opus
                track.red_payload_type = wrapper.payload_type
            level_id = media.extensions.get(AUDIO_LEVEL_URI)
            if level_id and media.kind == "audio":  # the publisher says how loud each packet is
                track.level = AudioLevel(level_id)
            if media.simulcast:
                for rid in media.rids:
                    layer = self.new_track(participant, media.kind, codec, media.mid, sid, None)
                    layer.rid = rid
                    track.layers.append(layer)
            self.add_track(room, participant, leg, track)
        for gone in by_mid.values():  # m-lines missing from the new offer
            self.unpublish(room, participant, gone)
        return accepted

    def add_track(
        self, room: Room, participant: Participant, leg: PublisherLeg, track: UpTrack
    ) -> None:
        """A new published track: announced, and handed to subscribers and viewers."""
        participant.published[track.sid] = track
        leg.add_track(track)
        self.events.track_published(room, participant, track)
        for other in room.others(participant):
            if other.permissions.can_subscribe and other.auto_subscribe:
                self.subscriptions.add(other, track)
        self.viewing.rewire_all(room)

    def new_track(
        self,
        participant: Participant,
        kind: str,
        codec: Codec,
        mid: str,
        sid: str,
        ssrc: int | None,
    ) -> UpTrack:
        track = UpTrack(
            sid=sid,
            kind=kind,
            codec=codec,
            mid=mid,
            publisher_sid=participant.sid,
            room=participant.room,
            ssrc=ssrc,
        )
        track.keyframes.interval = self.keyframe_interval
        if track.kind == "video":
            track.cache = PacketCache()
            track.nacks = NackTracker()
        return track

    def unpublish(self, room: Room, participant: Participant, track: UpTrack) -> None:
        participant.published.pop(track.sid, None)
        if participant.publisher_leg is not None:
            participant.publisher_leg.remove_track(track)
        for down in track.all_downs():
            subscriber = room.participants.get(down.subscriber_sid)
            if subscriber is not None and subscriber.kind is not ParticipantKind.VIEWER:
                self.subscriptions.drop(subscriber, down)  # viewers are rewired below
        for stream in track.streams():
            stream.down_tracks = []
            stream.pending = []
        self.events.track_unpublished(room, participant, track)
        self.viewing.rewire_all(room)

    def set_muted(self, participant: Participant, track_sid: str, muted: bool) -> None:
        track = participant.published.get(track_sid)
        if track is None:
            raise NotFoundError(f"track {track_sid} is not published by this participant")
        if track.muted != muted:
            now = time.perf_counter()
            for stream in track.streams():
                stream.muted = muted
                stream.replay_since = now  # what a muted track sent is never replayed
            if not muted:
                for down in track.all_downs():
                    down.waiting_keyframe = True
                self.repair.request_keyframe(track)
            self.events.track_muted(self.rooms.get(participant.room), participant, track)
