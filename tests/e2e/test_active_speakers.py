"""Active speakers from the audio levels publishers send (RFC 6464): aiortc writes the level
of each frame once the relay's answer accepts the extension, as browsers do."""

from __future__ import annotations

import itertools

import pytest

from bench.loopback_node import RunningNode, running_node, token
from signaling import protocol as p
from signaling.client import EurelayClient

from ..helpers import bridge, eventually
from ..media import ToneTrack

pytestmark = pytest.mark.timeout(60)

LOUD, QUIET = 0.5, 0.05  # -9 dBov and -29 dBov


def speaking(client: EurelayClient) -> list[str]:
    return [s.identity for s in client.active_speakers]


async def test_speakers_are_ordered_by_level_and_follow_a_swap(relay_node: RunningNode) -> None:
    tones = {"alice": ToneTrack(LOUD), "bob": ToneTrack(QUIET), "carol": ToneTrack(0.0)}
    for identity, tone in tones.items():
        client = await relay_node.join("voices", identity)
        await client.publish(tone)
    listener = await relay_node.join("voices", "dave", publish=False)

    await eventually(lambda: speaking(listener) == ["alice", "bob"], timeout=10)
    alice, bob = listener.active_speakers
    assert alice.level > 3 * bob.level > 0, listener.active_speakers

    tones["alice"].amplitude, tones["bob"].amplitude = QUIET, LOUD
    await eventually(lambda: speaking(listener) == ["bob", "alice"], timeout=10)

    tones["alice"].amplitude = tones["bob"].amplitude = 0.0
    tones["carol"].amplitude = QUIET
    await eventually(lambda: speaking(listener) == ["carol"], timeout=10)

    # Every change came as an event on ``events``, none of them twice in a row.
    seen: list[list[str]] = []
    while not listener.events.empty():
        event = listener.events.get_nowait()
        if isinstance(event, p.ActiveSpeakers):
            seen.append([s.identity for s in event.speakers])
    assert seen[-1] == ["carol"]
    assert all(a != b for a, b in itertools.pairwise(seen)), seen

    # Someone joining while carol speaks is told at once, not at the next change.
    late = await relay_node.join("voices", "erin", publish=False)
    await eventually(lambda: speaking(late) == ["carol"], timeout=5)


async def test_a_muted_speaker_stops_speaking(relay_node: RunningNode) -> None:
    alice = await relay_node.join("mute", "alice")
    mids = await alice.publish(ToneTrack(LOUD))
    listener = await relay_node.join("mute", "bob", publish=False)
    await eventually(lambda: speaking(listener) == ["alice"], timeout=10)
    await alice.mute(next(iter(mids.values())))
    await eventually(lambda: speaking(listener) == [], timeout=5)


async def test_levels_cross_a_bridge_so_the_far_node_sees_the_speaker() -> None:
    """A speaker on one node is a speaker on the node its audio is bridged to: the origin
    writes the level into what it sends across, which the relay otherwise strips."""
    async with running_node() as origin, running_node() as viewing:
        alice = origin.client(token("far", "alice"))
        await alice.connect()
        await alice.publish(ToneTrack(LOUD))
        listener = viewing.client(token("far", "dave", publish=False))
        await listener.connect()
        await eventually(lambda: bool(origin.worker.rooms["far"].tracks()))
        bridge(origin, viewing, "far")
        await eventually(lambda: speaking(listener) == ["alice"], timeout=10)
        remote = viewing.worker.rooms["far"].by_identity("alice")
        assert remote is not None and listener.active_speakers[0].sid == remote.sid == alice.sid
