"""Who is speaking in each room, loudest first: on every tick each audio track's level is
smoothed (``AudioLevel.tick``), a room with an audio top-N re-chooses what each listener
gets (``audio_top_n``), and a room whose speakers changed is told so, at most once per
``interval``. Stand-ins of publishers on other nodes count like local ones (their levels
cross the bridge), so each node sees the whole room.
"""

from __future__ import annotations

from collections.abc import Callable

from .audio_level import CLEARLY_LOUDER
from .audio_top_n import select_loudest
from .room import Participant, Room
from .rooms import Rooms

SPEAKERS_INTERVAL = 0.3  # seconds between two active-speaker events of a room, at least

Speakers = list[tuple[Participant, float]]  # (participant, smoothed level 0-1), loudest first


def rank(previous: tuple[str, ...], levels: dict[Participant, float]) -> Speakers:
    """Speakers loudest first, keeping the previous order between two of similar loudness
    (a list that flips with every breath would be an event every interval)."""
    position = {sid: i for i, sid in enumerate(previous)}
    order = sorted(
        levels.items(), key=lambda item: (position.get(item[0].sid, len(position)), -item[1])
    )
    swapped = True
    while swapped:  # a bubble sort under a strict order: it ends; lists are short
        swapped = False
        for i in range(len(order) - 1):
            if order[i + 1][1] > order[i][1] * CLEARLY_LOUDER:
                order[i], order[i + 1] = order[i + 1], order[i]
                swapped = True
    return order


class ActiveSpeakers:
    def __init__(
        self,
        rooms: Rooms,
        changed: Callable[[Room, Speakers], None],
        interval: float = SPEAKERS_INTERVAL,
    ) -> None:
        self.rooms = rooms
        self.changed = changed
        self.interval = interval

    def tick(self, now: float) -> None:
        """Close every audio track's tick; tell rooms whose speakers changed."""
        for room in list(self.rooms.by_name.values()):
            levels: dict[Participant, float] = {}
            measured = False
            for participant in room.participants.values():
                for track in participant.published.values():
                    level = track.level
                    if level is None:
                        continue
                    measured = True
                    if level.tick(now, track.packets) and not track.muted:
                        levels[participant] = max(levels.get(participant, 0.0), level.level)
            if room.audio_top_n:
                select_loudest(room)
            if not measured and not room.speakers:
                continue
            if now - room.speakers_sent_at < self.interval:
                continue
            order = rank(room.speakers, levels)
            sids = tuple(p.sid for p, _ in order)
            if sids != room.speakers:
                room.speakers = sids
                room.speakers_sent_at = now
                self.changed(room, order)
