"""Negotiation of a subscriber leg: the m-lines the relay offers and where the offer/answer
exchange stands. Plain state, no I/O: the subscriptions unit writes the SDP, and whoever
carries the participant's signaling (a WebSocket session, later a bridge controller) is
asked for an exchange through ``NegotiationController``.
"""

from __future__ import annotations

from typing import Protocol

from .sdp_negotiation import RemoteDescription, SubscriberSlot, rtx_payload_types
from .track import random_ssrc


class NegotiationController(Protocol):
    """The participant's signaling channel, as the relay sees it."""

    def offer_needed(self) -> None:
        """Ask for ``subscriber_offer`` soon and deliver it; the answer comes back by command."""
        ...


class SubscriberNegotiation:
    """The relay offers; the subscriber answers. One exchange at a time."""

    def __init__(self) -> None:
        self.slots: list[SubscriberSlot] = []
        self.version = 0
        self.session_id = random_ssrc()
        self.offer_pending = False  # an offer is out and its answer not back yet
        self.needs_offer = True  # state changed since the last offer
        self.offered_ssrcs: set[int] = set()
        self.accepted_ssrcs: set[int] = set()
        self.rtx_payload_types: dict[int, int] = {}  # by SSRC: 0 where the answer took no RTX
        # accepted SSRCs whose answer kept the RED offered around their codec -> its type
        self.red_payload_types: dict[int, int] = {}
        self.remote_sctp_port = 5000

    def next_mid(self) -> str:
        return str(len(self.slots))

    def add(self, slot: SubscriberSlot) -> None:
        self.slots.append(slot)

    def deactivate(self, ssrc: int) -> None:
        for slot in self.slots:
            if slot.ssrc == ssrc:
                slot.codec = None  # the m-line stays, inactive

    def changed(self) -> bool:
        """Note a change; True when the controller should be asked for an offer now."""
        self.needs_offer = True
        return not self.offer_pending

    def start_offer(self, connected: bool) -> int | None:
        """Begin an exchange: the offer's version, or None when none is due or allowed."""
        if self.offer_pending or not self.needs_offer:
            return None
        if self.version > 0 and not connected:
            # Renegotiating before the first negotiation has connected makes aiortc drop the
            # new receivers; wait for DTLS (the leg asks again when it connects).
            return None
        self.offer_pending = True
        self.needs_offer = False
        self.version += 1
        self.offered_ssrcs = {s.ssrc for s in self.slots if s.live}
        return self.version

    def offer_lost(self) -> None:
        """The offer out may never have reached the peer (its signaling channel was
        replaced): the next one takes its place, whatever became of it."""
        if self.offer_pending:
            self.offer_pending = False
            self.needs_offer = True

    def live_mids(self) -> dict[str, str]:
        return {s.mid: s.track_sid for s in self.slots if s.live}

    def apply_answer(self, answer: RemoteDescription) -> None:
        """Take the subscriber's answer: which offered SSRCs it receives."""
        self.offer_pending = False
        accepted: set[int] = set()
        red: dict[int, int] = {}
        by_mid = {s.mid: s for s in self.slots}
        for media in answer.media:
            if media.kind == "application" and media.sctp_port:
                self.remote_sctp_port = media.sctp_port
            slot = by_mid.get(media.mid)
            if (
                slot is not None
                and slot.live
                and not media.rejected
                and media.direction in ("recvonly", "sendrecv")
            ):
                accepted.add(slot.ssrc)
                if slot.codec is not None and slot.rtx_ssrc:
                    rtx = rtx_payload_types(media).get(slot.codec.payload_type, 0)
                    self.rtx_payload_types[slot.ssrc] = rtx
                wrapper = slot.red
                if wrapper is not None and any(
                    c.mime == wrapper.mime and c.payload_type == wrapper.payload_type
                    for c in media.codecs
                ):
                    red[slot.ssrc] = wrapper.payload_type
        self.accepted_ssrcs = accepted & self.offered_ssrcs
        self.red_payload_types = {s: pt for s, pt in red.items() if s in self.accepted_ssrcs}
