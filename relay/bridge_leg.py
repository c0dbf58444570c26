"""Relay-to-relay legs. A bridge carries one room's tracks from the worker they originate on
(``BridgeOutLeg``, which answers) to a worker with viewers of them (``BridgeInLeg``, which
initiates: two ICE-lite answerers could not meet otherwise). Each track crosses once,
however many viewers it has there; RTCP is terminated at each end, as on any leg.
"""

from __future__ import annotations

from .down_leg import DownLeg
from .publisher_leg import PublisherLeg


class BridgeOutLeg(DownLeg):
    """On the origin: a down leg toward one viewing worker; its peer asked for every stream
    it carries, so every one is accepted."""

    direction = "bridge-out"

    def accepted_ssrcs(self) -> set[int]:
        return set(self.by_ssrc)


class BridgeInLeg(PublisherLeg):
    """On the viewing worker: the origin's streams arrive here as the tracks of stand-in
    publishers (``ParticipantKind.REMOTE``), bound by the SSRCs the origin announced."""

    direction = "bridge-in"
