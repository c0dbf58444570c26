"""Bridges between workers: one per (room, peer worker) and direction, each track carried
once. The origin opens a ``BridgeOutLeg`` and says how to reach it (``BridgeEndpoint``);
the viewing worker connects a ``BridgeInLeg`` to it, asks for tracks, and publishes what
arrives as the tracks of stand-in ``REMOTE`` participants, so its own subscribers and
viewers take them like any local track. Simulcast crosses as the layers asked for, so layer
choice stays per viewer on the viewer's worker.

How the two workers exchange these DTOs (the cluster's control channel) is not this unit's
business: it takes and returns plain data.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .audio_level import BRIDGE_LEVEL_ID, AudioLevel
from .bridge_leg import BridgeInLeg, BridgeOutLeg
from .codecs import Codec
from .errors import NotFoundError, StateError
from .ice_lite import IceCredentials
from .leg import Address
from .publishing import Publishing
from .rate_limiter import TokenBucket
from .room import Participant, ParticipantKind, Permissions, Room
from .rooms import Rooms
from .subscriptions import Subscriptions
from .track import DownTrack
from .transport import RemoteTransport, Transports


@dataclass(frozen=True, slots=True)
class BridgeEndpoint:
    """How to reach an origin's bridge leg: where, its ICE credentials, its certificate."""

    addresses: tuple[Address, ...]
    ufrag: str
    pwd: str
    fingerprints: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class BridgedStream:
    rid: str  # "" for a track without simulcast
    ssrc: int  # as it crosses the bridge


@dataclass(frozen=True, slots=True)
class BridgedTrack:
    """A track as it crosses: who publishes it, its codec, and its streams on the bridge."""

    sid: str
    kind: str
    name: str
    muted: bool
    mime: str
    clock_rate: int
    payload_type: int
    channels: int | None
    fmtp: tuple[tuple[str, str | int], ...]
    publisher_sid: str
    publisher_identity: str
    publisher_name: str
    streams: tuple[BridgedStream, ...]
    # Its packets carry the audio level (extension id BRIDGE_LEVEL_ID), so the viewing node
    # counts this speaker too. Absent from an older node's: False.
    audio_level: bool = False


@dataclass(frozen=True, slots=True)
class BridgeReport:
    """One bridge as metrics see it: its peer worker, what it carries, how the hop fares."""

    direction: str  # "out" (origin side) or "in" (viewing side)
    peer: str
    streams: int
    packets: int
    octets: int
    rtt_ms: float | None  # out: from the viewing side's receiver reports
    loss: float | None  # out: fraction lost the viewing side last reported; in: cumulative


def _owner(room: str, peer: str) -> Participant:
    """The participant a bridge leg belongs to: never admitted to the room."""
    return Participant(
        room=room,
        identity=f"bridge:{peer}",
        permissions=Permissions(can_publish=False, can_subscribe=True, can_publish_data=False),
        data_limiter=TokenBucket(1.0, 1.0),
        auto_subscribe=False,
        kind=ParticipantKind.BRIDGE,
    )


class Bridging:
    def __init__(
        self,
        rooms: Rooms,
        transports: Transports,
        publishing: Publishing,
        subscriptions: Subscriptions,
        joined: Callable[[Room, Participant], None],
    ) -> None:
        self.rooms = rooms
        self.transports = transports
        self.publishing = publishing
        self.subscriptions = subscriptions
        self.joined = joined  # a stand-in publisher is announced like any joiner
        self.outgoing: dict[tuple[str, str], BridgeOutLeg] = {}  # (room, viewing peer)
        self.incoming: dict[tuple[str, str], BridgeInLeg] = {}  # (room, origin peer)

    # on the origin ----------------------------------------------------------------------

    def open_out(
        self, room: str, peer: str, peer_fingerprints: tuple[tuple[str, str], ...]
    ) -> BridgeEndpoint:
        """The bridge toward ``peer`` for ``room`` (opened once, then reused while ``peer``
        is the same process: one that restarted under its id has a new certificate, and
        gets a new bridge)."""
        self.rooms.get(room)  # only for a room this worker hosts
        leg = self.outgoing.get((room, peer))
        if leg is not None and leg.remote_fingerprints != list(peer_fingerprints):
            self.close_out(room, peer)
            if not leg.closed:
                self.transports.spawn(self.transports.close(leg))
            leg = None
        if leg is None or leg.closed:
            leg = self.transports.new_leg(BridgeOutLeg, _owner(room, peer), "server")
            leg.remote_fingerprints = list(peer_fingerprints)
            self.outgoing[(room, peer)] = leg
        local = self.transports.local(leg)
        return BridgeEndpoint(
            addresses=tuple(local.candidates),
            ufrag=leg.credentials.ufrag,
            pwd=leg.credentials.pwd,
            fingerprints=(local.fingerprint,),
        )

    def close_out(self, room: str, peer: str) -> BridgeOutLeg | None:
        """Forget the bridge toward ``peer`` (it died, or restarted) and stop feeding it; the
        caller closes the returned leg."""
        leg = self.outgoing.pop((room, peer), None)
        if leg is not None:
            for down in leg.by_ssrc.values():
                down.detach()
        return leg

    def send(self, room: str, peer: str, track_sid: str, rids: tuple[str, ...]) -> BridgedTrack:
        """Carry a track across the bridge to ``peer``: the layers named in ``rids`` (all
        when empty), each stream once, however often it is asked for."""
        leg = self.outgoing.get((room, peer))
        if leg is None or leg.closed:
            raise StateError(f"no bridge to {peer} for room {room}")
        hosted = self.rooms.get(room)
        track = hosted.find_track(track_sid)
        publisher = hosted.get(track.publisher_sid)
        layers = [s for s in track.layers if not rids or s.rid in rids]
        streams = []
        for stream in layers or [track]:
            down = next((d for d in leg.by_ssrc.values() if d.up is stream), None)
            if down is None:
                down = DownTrack(
                    up=stream,
                    subscriber_sid=leg.participant.sid,
                    mid=track.sid,
                    payload_type=track.codec.payload_type,
                    sink=leg,
                )
                leg.by_ssrc[down.ssrc] = down
                down.attach(stream, time.monotonic())  # a layer has no layers: pinned to it
            down.carries_level = stream.level is not None
            streams.append(BridgedStream(rid=stream.rid, ssrc=down.ssrc))
        self.subscriptions.activate(leg)
        codec = track.codec
        return BridgedTrack(
            sid=track.sid,
            kind=track.kind,
            name=track.name,
            muted=track.muted,
            mime=codec.mime,
            clock_rate=codec.clock_rate,
            payload_type=codec.payload_type,
            channels=codec.channels,
            fmtp=tuple(codec.fmtp.items()),
            publisher_sid=publisher.sid,
            publisher_identity=publisher.identity,
            publisher_name=publisher.name,
            streams=tuple(streams),
            audio_level=track.level is not None,
        )

    # on the viewing worker -------------------------------------------------------------

    def open_in(self, room: str, origin: str, endpoint: BridgeEndpoint) -> None:
        """Connect the bridge from ``origin`` for ``room``: checks, then DTLS as client."""
        leg = self.incoming.get((room, origin))
        if leg is not None and not leg.closed:
            return
        if not endpoint.addresses:
            raise StateError(f"{origin} announced no media address")
        remote = RemoteTransport(
            addr=endpoint.addresses[0],
            credentials=IceCredentials(endpoint.ufrag, endpoint.pwd),
            fingerprints=list(endpoint.fingerprints),
        )
        owner = _owner(room, origin)
        self.incoming[(room, origin)] = self.transports.initiating_leg(BridgeInLeg, owner, remote)

    def receive(self, room: str, origin: str, bridged: BridgedTrack) -> None:
        """Publish a track arriving from ``origin`` under a stand-in of its publisher."""
        leg = self.incoming.get((room, origin))
        if leg is None or leg.closed:
            raise NotFoundError(f"no bridge from {origin} for room {room}")
        hosted = self.rooms.create(room)
        publisher = hosted.participants.get(bridged.publisher_sid)
        if publisher is None:
            publisher = Participant(
                room=room,
                identity=bridged.publisher_identity,
                permissions=Permissions(
                    can_publish=True, can_subscribe=False, can_publish_data=False
                ),
                data_limiter=TokenBucket(1.0, 1.0),
                auto_subscribe=False,
                name=bridged.publisher_name,
                sid=bridged.publisher_sid,  # the same participant, seen from here
                kind=ParticipantKind.REMOTE,
                joined_at=time.time(),
            )
            publisher.publisher_leg = leg  # shared with the origin's other publishers
            self.rooms.admit(publisher)
            self.joined(hosted, publisher)
        elif publisher.kind is not ParticipantKind.REMOTE:
            raise StateError(f"{bridged.publisher_sid} is a local participant here")
        if bridged.sid in publisher.published:
            return
        codec = Codec(
            bridged.mime,
            bridged.clock_rate,
            bridged.payload_type,
            bridged.channels,
            dict(bridged.fmtp),
        )
        simulcast = [s for s in bridged.streams if s.rid]
        plain = None if simulcast else bridged.streams[0].ssrc
        track = self.publishing.new_track(
            publisher, bridged.kind, codec, bridged.sid, bridged.sid, plain
        )
        track.name, track.muted = bridged.name, bridged.muted
        if bridged.audio_level and bridged.kind == "audio":
            track.level = AudioLevel(BRIDGE_LEVEL_ID)
        for stream in simulcast:
            layer = self.publishing.new_track(
                publisher, bridged.kind, codec, bridged.sid, bridged.sid, stream.ssrc
            )
            layer.rid, layer.muted = stream.rid, bridged.muted
            track.layers.append(layer)
        self.publishing.add_track(hosted, publisher, leg, track)

    def carried(self, room: str, origin: str) -> set[str]:
        """Sids of the tracks arriving from ``origin`` for ``room`` (an open bridge's)."""
        leg = self.incoming.get((room, origin))
        hosted = self.rooms.by_name.get(room)
        if leg is None or leg.closed or hosted is None:
            return set()
        return {
            sid
            for p in hosted.participants.values()
            if p.publisher_leg is leg
            for sid in p.published
        }

    def load(self) -> dict[str, tuple[int, int]]:
        """(open legs, streams carried) per direction."""
        out = [leg for leg in self.outgoing.values() if not leg.closed]
        inbound = [leg for leg in self.incoming.values() if not leg.closed]
        return {
            "out": (len(out), sum(len(leg.by_ssrc) for leg in out)),
            "in": (len(inbound), sum(len(leg.by_ssrc) for leg in inbound)),
        }

    def reports(self) -> list[BridgeReport]:
        reports = []
        for (_, peer), out in self.outgoing.items():
            if out.closed:
                continue
            downs = list(out.by_ssrc.values())
            reports.append(
                BridgeReport(
                    "out",
                    peer,
                    len(downs),
                    sum(d.packets_sent for d in downs),
                    sum(d.octets_sent for d in downs),
                    out.rtt_ms,
                    out.fraction_lost,
                )
            )
        for (_, peer), inbound in self.incoming.items():
            if inbound.closed:
                continue
            ups = [s for t in inbound.tracks.values() for s in (t.layers or [t])]
            expected = sum(
                u.stats.extended_max - u.stats.base_seq + 1 for u in ups if u.stats.base_seq >= 0
            )
            received = sum(u.stats.received for u in ups)
            reports.append(
                BridgeReport(
                    "in",
                    peer,
                    len(ups),
                    sum(u.packets for u in ups),
                    sum(u.octets for u in ups),
                    None,
                    max(0, expected - received) / expected if expected else None,
                )
            )
        return reports

    def legs_of(self, room: str) -> list[BridgeOutLeg | BridgeInLeg]:
        """The room's bridges, both ways, forgotten here (the caller closes them)."""
        legs: list[BridgeOutLeg | BridgeInLeg] = []
        for table in (self.outgoing, self.incoming):
            for key in [k for k in table if k[0] == room]:
                legs.append(table.pop(key))
        return legs
