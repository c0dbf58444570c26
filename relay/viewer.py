"""WHEP viewers: which publisher a viewer receives, and re-pointing it when that changes.

Plain state changes on rooms, legs and tracks; the worker activates what this sets up.
"""

from __future__ import annotations

from .codecs import RED
from .room import Participant, ParticipantKind, Room
from .track import DownTrack
from .viewer_leg import ViewerLeg


def viewer_source(room: Room, viewer: Participant, follow: str) -> Participant | None:
    """The publisher a viewer receives: the named one, else the earliest publishing."""
    candidates = [
        p
        for p in room.participants.values()
        if p is not viewer
        and p.kind is not ParticipantKind.VIEWER
        and p.published
        and (not follow or p.identity == follow)
    ]
    return min(candidates, key=lambda p: p.joined_at, default=None)


def rewire_viewer(room: Room, viewer: Participant, leg: ViewerLeg, now: float) -> None:
    """Point each of the viewer's m-lines at the current source's track of that kind.

    A new source continues the same SSRC and numbering and starts at a keyframe, so the
    viewer's player sees one uninterrupted stream (a host reconnecting mid-livestream).
    """
    source = viewer_source(room, viewer, leg.follow)
    for slot in leg.slots:
        current = leg.by_ssrc.get(slot.ssrc)
        previous = current or leg.history.get(slot.ssrc)
        wanted = None
        if source is not None:
            wanted = next(
                (
                    t
                    for t in source.published.values()
                    if t.kind == slot.kind and slot.payload_type_for(t.codec.mime) is not None
                ),
                None,
            )
        if current is not None and current.source is wanted:
            continue
        if current is not None:
            current.active = False
            current.detach()
            viewer.subscriptions.pop(current.up.sid, None)
            del leg.by_ssrc[slot.ssrc]
            leg.history[slot.ssrc] = current
        if wanted is None:
            continue
        payload_type = slot.payload_type_for(wanted.codec.mime)
        assert payload_type is not None
        red = slot.payload_type_for(RED.mime) if wanted.red_payload_type >= 0 else None
        down = DownTrack(
            up=wanted,
            subscriber_sid=viewer.sid,
            mid=slot.mid,
            payload_type=payload_type,
            sink=leg,
            rtx_payload_type=slot.rtx.get(payload_type, 0),
            red_payload_type=-1 if red is None else red,  # else the primary blocks alone
        )
        if previous is not None:
            down.continue_from(previous)
        else:
            down.ssrc = slot.ssrc
            down.rtx_ssrc = slot.rtx_ssrc
        leg.by_ssrc[slot.ssrc] = down
        viewer.subscriptions[wanted.sid] = down
        down.attach(wanted, now)
