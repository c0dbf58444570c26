"""Subscriptions of signalled participants: which tracks each one receives, the subscriber
offers that carry them (renegotiated as tracks come and go) and simulcast layer choice."""

from __future__ import annotations

import time

from .audio_top_n import starts_paused
from .codecs import OPUS, RED, SUPPORTED, Codec
from .down_leg import DownLeg
from .errors import NotFoundError, PermissionDeniedError, StateError
from .ice_lite import IceCredentials
from .red import red_codec
from .repair import Repair
from .room import Participant
from .rooms import Rooms
from .sdp_negotiation import SubscriberSlot, parse_description, subscriber_offer
from .simulcast import quality_layer
from .subscriber_leg import SubscriberLeg
from .track import DownTrack, UpTrack
from .transport import Transports


class Subscriptions:
    def __init__(self, rooms: Rooms, transports: Transports, repair: Repair) -> None:
        self.rooms = rooms
        self.transports = transports
        self.repair = repair

    def subscribe(self, participant: Participant, track_sid: str) -> None:
        if not participant.permissions.can_subscribe:
            raise PermissionDeniedError("this token does not allow subscribing")
        track = self.rooms.get(participant.room).find_track(track_sid)
        if track.publisher_sid == participant.sid:
            raise StateError("a participant cannot subscribe to its own track")
        self.add(participant, track)

    def unsubscribe(self, participant: Participant, track_sid: str) -> None:
        down = participant.subscriptions.get(track_sid)
        if down is None:
            raise NotFoundError(f"not subscribed to {track_sid}")
        self.drop(participant, down)

    def add(self, participant: Participant, track: UpTrack) -> None:
        """Give a signalled participant a copy of ``track`` on a new m-line."""
        leg = participant.subscriber_leg
        if leg is None or track.sid in participant.subscriptions:
            return
        base = SUPPORTED[track.codec.mime.lower()]
        codec = Codec(
            track.codec.mime,
            base.clock_rate,
            base.payload_type,
            base.channels,
            dict(track.codec.fmtp) or dict(base.fmtp),
        )
        slot = SubscriberSlot(
            mid=leg.negotiation.next_mid(),
            kind=track.kind,
            codec=codec,
            stream_id=track.publisher_sid,
            track_sid=track.sid,
            # RED as the publisher sends it, if it does: taken or not, the answer says
            red=red_codec(RED.payload_type, OPUS.payload_type)
            if track.red_payload_type >= 0
            else None,
        )
        down = DownTrack(
            up=track,
            subscriber_sid=participant.sid,
            mid=slot.mid,
            payload_type=codec.payload_type,
            sink=leg,
        )
        slot.ssrc = down.ssrc
        if track.kind == "video":
            slot.rtx_ssrc = down.rtx_ssrc
        leg.negotiation.add(slot)
        room = self.rooms.by_name.get(participant.room)
        down.paused = room is not None and starts_paused(room, down)
        leg.by_ssrc[down.ssrc] = down
        participant.subscriptions[track.sid] = down
        down.attach(track, time.monotonic())
        self.renegotiate(leg)

    def drop(self, participant: Participant, down: DownTrack) -> None:
        leg = participant.subscriber_leg
        down.active = False
        down.detach()
        participant.subscriptions.pop(down.up.sid, None)
        if leg is not None:
            leg.by_ssrc.pop(down.ssrc, None)
            leg.negotiation.deactivate(down.ssrc)
            self.renegotiate(leg)

    def set_quality(self, participant: Participant, track_sid: str, quality: str) -> None:
        """A subscriber's ceiling for a simulcast track (low, medium, high)."""
        down = participant.subscriptions.get(track_sid)
        if down is None:
            raise NotFoundError(f"not subscribed to {track_sid}")
        if down.selector is not None and down.source is not None:
            down.selector.max_layer = quality_layer(quality, len(down.source.layers))
            select_layer(down, time.monotonic(), self.repair)

    def renegotiate(self, leg: SubscriberLeg) -> None:
        if leg.negotiation.changed():
            ask_for_offer(leg)

    def offer(self, participant: Participant) -> tuple[str, dict[str, str]] | None:
        """The next offer for the subscriber leg, or None while one is awaiting its answer."""
        leg = participant.subscriber_leg
        if leg is None or leg.closed:
            return None
        version = leg.negotiation.start_offer(connected=leg.tx_srtp is not None)
        if version is None:
            return None
        negotiation = leg.negotiation
        sdp = subscriber_offer(
            self.transports.local(leg), negotiation.slots, version, negotiation.session_id
        )
        return sdp, negotiation.live_mids()

    async def answer(self, participant: Participant, answer_sdp: str) -> None:
        leg = participant.subscriber_leg
        if leg is None or not leg.negotiation.offer_pending:
            raise StateError("no subscriber offer is awaiting an answer")
        answer = parse_description(answer_sdp)
        leg.remote_credentials = IceCredentials(answer.ice_ufrag, answer.ice_pwd)
        if not leg.dtls_started:
            leg.remote_fingerprints = answer.fingerprints
            leg.dtls.set_role("client" if answer.setup == "passive" else "server")
        leg.negotiation.apply_answer(answer)
        for ssrc, rtx in leg.negotiation.rtx_payload_types.items():
            down = leg.by_ssrc.get(ssrc)
            if down is not None:
                down.rtx_payload_type = rtx
        red = leg.negotiation.red_payload_types
        for ssrc, down in leg.by_ssrc.items():
            down.red_payload_type = red.get(ssrc, -1)
        self.transports.maybe_start(leg)
        self.activate(leg)
        if leg.negotiation.needs_offer:
            ask_for_offer(leg)

    def activate(self, leg: DownLeg) -> None:
        """Down tracks that just became sendable start at a keyframe: a recent one from
        the cache, or the next one the publisher sends."""
        for down in leg.refresh_active():
            self.repair.start(down)

    def connected(self, leg: SubscriberLeg) -> None:
        self.activate(leg)
        if leg.negotiation.needs_offer:
            ask_for_offer(leg)


def ask_for_offer(leg: SubscriberLeg) -> None:
    controller = leg.participant.controller
    if controller is not None:
        controller.offer_needed()


def select_layer(down: DownTrack, now: float, repair: Repair) -> None:
    """Re-choose a simulcast subscriber's layer from the layers' measured rates."""
    track = down.source
    if down.selector is None or track is None or not track.layers:
        return
    wanted = down.pending_layer or down.up
    share = down.nack_share()
    if share is not None:
        down.selector.on_nack_loss(share)
    choice = down.selector.choose([t.rate_bps for t in track.layers], now)
    layer = track.layers[choice] if choice >= 0 else wanted
    if layer is not wanted and down.switch_layer(layer):
        repair.request_keyframe(layer)
