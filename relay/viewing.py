"""WHEP viewing: answering a viewer's recvonly offer and keeping each viewer pointed at the
publisher it follows as publishers come and go (``relay.viewer`` holds the state change)."""

from __future__ import annotations

import logging
import time

from .errors import PermissionDeniedError, SdpError
from .room import Participant, ParticipantKind, Room
from .rooms import Rooms
from .sdp_negotiation import (
    check_client_offer,
    describe_rejections,
    parse_description,
    rejections,
    viewer_answer,
    viewer_slots,
)
from .subscriptions import Subscriptions
from .track import random_ssrc
from .transport import Transports
from .viewer import rewire_viewer
from .viewer_leg import ViewerLeg

logger = logging.getLogger(__name__)


class Viewing:
    def __init__(
        self,
        rooms: Rooms,
        transports: Transports,
        subscriptions: Subscriptions,
        audio_red: bool = True,
    ) -> None:
        self.rooms = rooms
        self.transports = transports
        self.subscriptions = subscriptions
        self.audio_red = audio_red  # answer RED to viewers that offer it

    async def view(self, participant: Participant, offer_sdp: str, follow: str = "") -> str:
        """Answer a viewer's recvonly offer; it receives the room's publisher, whoever that is,
        or the one whose identity is ``follow``."""
        if not participant.permissions.can_subscribe:
            raise PermissionDeniedError("this token does not allow subscribing")
        if participant.kind is not ParticipantKind.VIEWER or participant.viewer_leg is not None:
            raise SdpError("this participant is not a new viewer")
        offer = parse_description(offer_sdp)
        check_client_offer(offer)
        slots = viewer_slots(offer, self.audio_red)
        refused = rejections(offer, {s.mid for s in slots}, relay_receives=False)
        if not slots:
            raise SdpError(
                "the offer has no receiving audio or video in a codec the relay sends: "
                + describe_rejections(offer, refused)
            )
        leg = self.transports.answering_leg(ViewerLeg, participant, offer)
        leg.follow = follow
        for slot in slots:
            slot.ssrc = random_ssrc()
            slot.rtx_ssrc = random_ssrc()
            slot.stream_id = participant.sid
            slot.track_id = f"{participant.sid}-{slot.mid}"
        leg.slots = slots
        participant.viewer_leg = leg
        answer = viewer_answer(offer, self.transports.local(leg), slots)
        if refused:
            logger.info(
                "%s: viewer answer rejects %s", participant.sid, describe_rejections(offer, refused)
            )
        self.rewire(self.rooms.get(participant.room), participant)
        self.transports.maybe_start(leg)
        return answer

    def rewire_all(self, room: Room) -> None:
        for participant in list(room.participants.values()):
            if participant.viewer_leg is not None:
                self.rewire(room, participant)

    def rewire(self, room: Room, viewer: Participant) -> None:
        leg = viewer.viewer_leg
        if leg is not None:
            rewire_viewer(room, viewer, leg, time.monotonic())
            self.subscriptions.activate(leg)
