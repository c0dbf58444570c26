"""A room's audio top-N (``audio_top_n``; 0: all): each listener is sent only the N loudest
audio tracks of the others, re-chosen on every tick from the tracks' smoothed levels.

A track left out is paused on that listener's m-line, not removed (no renegotiation): taken
back, it goes on with the next sequence number and its own timestamps
(``DownTrack.resume``), so the receiver sees a pause, never loss. Between ticks the choice
holds; a track already forwarded keeps its place against one less than ``CLEARLY_LOUDER``
times louder, so two voices of equal loudness do not take turns every tick.
"""

from __future__ import annotations

from .audio_level import CLEARLY_LOUDER
from .room import ParticipantKind, Room
from .track import DownTrack, UpTrack

Loudness = tuple[bool, float, float]  # speaking, smoothed level, when last voiced


def loudness(track: UpTrack) -> Loudness:
    level = track.level
    if level is None or track.muted:
        return (False, 0.0, float("-inf"))
    return (level.speaking, level.level if level.speaking else 0.0, level.voiced_at)


def select_loudest(room: Room) -> None:
    """Pause and resume each listener's audio so that it gets the room's N loudest."""
    n = room.audio_top_n
    if n <= 0:
        return
    measured: dict[str, Loudness] = {}
    for participant in room.participants.values():
        if participant.kind is not ParticipantKind.SIGNALLED:
            continue  # WHEP viewers follow one publisher; bridges carry every track
        downs = [d for d in participant.subscriptions.values() if d.up.kind == "audio"]
        if len(downs) > n:
            for sid, track in ((d.up.sid, d.up) for d in downs):
                if sid not in measured:
                    measured[sid] = loudness(track)
            downs.sort(key=lambda d: _rank(measured[d.up.sid], not d.paused), reverse=True)
        for i, down in enumerate(downs):
            if i < n:
                down.resume()
            else:
                down.pause()


def _rank(loud: Loudness, forwarded: bool) -> tuple[bool, float, float, bool]:
    speaking, level, voiced_at = loud
    if forwarded:
        level *= CLEARLY_LOUDER
    return (speaking, level, voiced_at, forwarded)


def starts_paused(room: Room, down: DownTrack) -> bool:
    """A new audio copy in a top-N room waits for the next tick to be chosen (at most one
    tick), rather than adding to what the listener gets until then."""
    return room.audio_top_n > 0 and down.up.kind == "audio"
