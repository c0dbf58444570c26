"""Voice agents (issue 16): the example agent with a scripted customer, and the toolkit it
is built on (``signaling.agent``) in a room with real aiortc peers."""

from __future__ import annotations

import asyncio

import pytest

from bench import agent_latency
from bench.loopback_node import RunningNode, token
from signaling import protocol as p
from signaling.agent import AgentSession, PcmFrame, SpeechEnded, SpeechStarted, tone
from signaling.client import Reconnected

from ..helpers import eventually
from ..media import ToneTrack

pytestmark = pytest.mark.timeout(180)


async def test_the_example_agent_answers_and_stops_when_spoken_over() -> None:
    """The customer (tone bursts) gets an answer to each utterance, and speaking over an
    answer stops it. The deadline here is generous; the numbers are printed (and measured
    properly by ``python -m bench.agent_latency``)."""
    result = await agent_latency.measure(rounds=2)
    print("agent latency", result.summary(), result)
    assert len(result.turn_ms) == 4  # two answers a round: to the utterance, to the barge-in
    assert len(result.barge_in_ms) == 2
    assert all(ms < 1000 for ms in result.barge_in_ms), result.barge_in_ms
    assert all(ms < 3000 for ms in result.turn_ms), result.turn_ms


async def _frame_from(session: AgentSession, identity: str, timeout: float = 10) -> PcmFrame:
    async def scan() -> PcmFrame:
        while True:
            frame = await session.frames.get()
            if frame.identity == identity and frame.dbov > -30:
                return frame

    return await asyncio.wait_for(scan(), timeout)


async def _event(session: AgentSession, kind: type, timeout: float = 10) -> object:
    async def scan() -> object:
        while True:
            event = await session.events.get()
            if isinstance(event, kind):
                return event

    return await asyncio.wait_for(scan(), timeout)


async def test_an_agent_hears_who_speaks_as_pcm_and_keeps_going_after_a_reconnect(
    relay_node: RunningNode,
) -> None:
    alice = await relay_node.join("desk", "alice")
    voice = ToneTrack(0.3)
    await alice.publish(voice)
    client = relay_node.client(token("desk", "agent"), audio_hold=0)
    await client.connect()
    agent = AgentSession(client)
    await agent.start()
    try:
        frames = [await _frame_from(agent, "alice") for _ in range(10)]
        assert all(f.participant_sid == alice.sid and len(f.pcm) == 1920 for f in frames)
        loudest = max(f.dbov for f in frames)  # the decoder's first frames ramp up
        # 0.3 of full scale is -13.5 dBov; aiortc's sender upmixes mono to stereo at -3 dB
        assert loudest == pytest.approx(-16.5, abs=1.5)
        started = await _event(agent, SpeechStarted)
        assert started.identity == "alice"  # type: ignore[attr-defined]

        # The agent speaks: alice hears it
        agent.say(tone(2.0, 500, 0.3))
        track_sid, track = await alice.next_track(10)
        assert alice.track_owners.get(track_sid) == client.sid
        assert alice.identity_of(client.sid) == "agent"
        heard = await asyncio.wait_for(track.recv(), 10)
        assert heard.samples > 0

        # The agent's connection drops: it resumes its session and listens on
        sid = client.sid
        await relay_node.node.sessions[sid].ws.close()
        await client.wait_for(p.Resumed, timeout=15)
        assert client.sid == sid
        frame = await _frame_from(agent, "alice", timeout=15)
        assert frame.participant_sid == alice.sid
        # Dropped where it cannot resume (a stale token): it joins again and listens on
        client.resume_token = "stale"
        await relay_node.node.sessions[sid].ws.close()
        await client.wait_for(Reconnected, timeout=15)
        frame = await _frame_from(agent, "alice", timeout=15)
        assert frame.participant_sid == alice.sid
        voice.amplitude = 0.0
        ended = await _event(agent, SpeechEnded)
        assert ended.identity == "alice"  # type: ignore[attr-defined]
    finally:
        await agent.close()


async def test_an_agent_can_follow_the_relays_active_speakers_instead(
    relay_node: RunningNode,
) -> None:
    client = relay_node.client(token("desk", "agent"))
    await client.connect()
    agent = AgentSession(client, speech_from="speakers")
    await agent.start()
    try:
        bob = await relay_node.join("desk", "bob")
        voice = ToneTrack(0.3)
        await bob.publish(voice)
        started = await _event(agent, SpeechStarted)
        assert started.identity == "bob"  # type: ignore[attr-defined]
        voice.amplitude = 0.0
        ended = await _event(agent, SpeechEnded)
        assert ended.identity == "bob" and ended.duration > 0  # type: ignore[attr-defined]
        await eventually(lambda: client.active_speakers == [], timeout=5)
    finally:
        await agent.close()
