"""The worker's periodic work, every ``tick_interval``: keyframe requests that are due,
NACKs repeated upstream, congestion feedback and audio levels (active speakers); every
``report_interval``: simulcast layer choice, receiver reports to publishers and consent
expiry.

It walks the connected publisher legs, not every room, so idle rooms cost it nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from .active_speakers import ActiveSpeakers
from .publisher_leg import PublisherLeg
from .repair import Repair
from .room import Participant
from .rooms import Rooms
from .subscriptions import select_layer

logger = logging.getLogger(__name__)
KEYFRAME_RETRY = 1.0  # seconds before a pending layer switch asks for its keyframe again


class Ticker:
    def __init__(
        self,
        publisher_legs: dict[PublisherLeg, None],
        rooms: Rooms,
        repair: Repair,
        speakers: ActiveSpeakers,
        expire: Callable[[Participant], None],
        tick_interval: float,
        report_interval: float,
        consent_timeout: float,
    ) -> None:
        self.publisher_legs = publisher_legs
        self.rooms = rooms
        self.repair = repair
        self.speakers = speakers
        self.expire = expire
        self.tick_interval = tick_interval
        self.report_interval = report_interval
        self.consent_timeout = consent_timeout

    async def run(self) -> None:
        last_report = 0.0
        while True:
            await asyncio.sleep(self.tick_interval)
            try:
                now = time.monotonic()
                self.send_due_keyframe_requests(now)
                self.send_due_nacks(time.perf_counter())
                self.speakers.tick(now)
                if now - last_report >= self.report_interval:
                    self.select_layers(now, now - last_report)
                    last_report = now
                    self.send_receiver_reports(now)
                    self.expire_silent_peers()
            except Exception:
                logger.exception("relay tick failed")

    def _publishing(self) -> list[PublisherLeg]:
        """Connected publisher legs (a copy: the tick's work may end a session)."""
        return [leg for leg in self.publisher_legs if leg.tx_srtp is not None]

    def send_due_keyframe_requests(self, now: float) -> None:
        for leg in self._publishing():
            for track in leg.tracks.values():
                for stream in track.streams():
                    if stream.keyframes.due(now):
                        self.repair.send_pli(stream)
                    elif stream.pending and now - stream.keyframes.last_sent > KEYFRAME_RETRY:
                        # a layer switch waits for this keyframe: senders may drop a request
                        self.repair.request_keyframe(stream)

    def select_layers(self, now: float, interval: float) -> None:
        """Once per report interval: measure each layer's rate, then re-choose layers."""
        for leg in self._publishing():
            for track in leg.tracks.values():
                if not track.layers:
                    continue
                for layer in track.layers:
                    layer.measure_rate(interval)
                for down in track.all_downs():
                    select_layer(down, now, self.repair)

    def send_due_nacks(self, now: float) -> None:
        """Each tick: repeat NACKs upstream and send transport-wide congestion feedback."""
        for leg in self._publishing():
            leg.send_due_nacks(now)
            leg.send_twcc_feedback()

    def send_receiver_reports(self, now: float) -> None:
        for leg in self._publishing():
            leg.send_receiver_reports(now)

    def expire_silent_peers(self) -> None:
        """Remove participants none of whose legs has been heard from within the timeout.

        A leg that only receives (a publisher's own data-only subscriber leg) may carry
        nothing but a consent check every ~5 s, so liveness is judged per participant.
        """
        now = time.perf_counter()
        for room in list(self.rooms.by_name.values()):
            for participant in list(room.participants.values()):
                legs = participant.legs()
                if legs and now - max(leg.last_seen for leg in legs) > self.consent_timeout:
                    logger.info("consent expired for %s", participant.sid)
                    self.expire(participant)
