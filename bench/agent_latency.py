"""Turn and barge-in latency of the example voice agent (``examples/voice_agent.py``) on
loopback: a node in this process, the agent in a process of its own (as deployed), and a
scripted customer here that speaks in tone bursts and listens to the agent's audio.

Per round the customer says something (0.6 s of tone), waits for the answer, speaks over
it 0.4 s in, and listens to the answer to that too, until the agent is quiet again:

- **turn latency**: the customer's last voiced frame sent -> the agent's first voiced frame
  heard by the customer. It includes the agent's end-of-utterance wait (its
  ``VoiceActivity`` waits ``end`` = 0.4 s of quiet before deciding the customer is done),
  the customer's aiortc jitter buffer (4 frames, ~80 ms, before decoding; the agent takes
  each frame as soon as it is complete, ``audio_hold=0``) and the network; agent
  processing is excluded (the chime is ready at once). Two per round.
- **barge-in latency**: the customer's first voiced frame sent while the agent talks -> the
  first frame of the agent's lasting silence (0.2 s or more: the chime's own gaps are 50 ms)
  heard by the customer.

Times are the customer's: when its audio track handed a frame to the encoder, and when a
decoded frame of the agent's came out of its receiver.

    python -m bench.agent_latency --rounds 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from signaling.agent import FRAME_SECONDS, AgentSession, PcmFrame, tone

from .loopback_node import LOOPBACK, RunningNode, running_node, token

HEADING = "## Voice agent: turn and barge-in latency"
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "voice_agent.py"
VOICED = -40.0  # dBov: a frame at least this loud is speech (the agent's VAD threshold)
QUIET = -60.0  # ... at most this loud is silence
UTTERANCE = 0.6  # seconds the customer speaks
BARGE_AFTER = 0.4  # seconds into the answer the customer speaks over it
LASTING_SILENCE = 0.2  # seconds: the agent has stopped (its chime pauses 50 ms between notes)
AGENT_END_OF_TURN = 0.4  # the agent's VoiceActivity end: the customer is done after this


@dataclass
class AgentLatency:
    rounds: int
    turn_ms: list[float] = field(default_factory=list)
    barge_in_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        return {
            "turn_p50_ms": percentile(self.turn_ms, 50),
            "turn_p95_ms": percentile(self.turn_ms, 95),
            "barge_in_p50_ms": percentile(self.barge_in_ms, 50),
            "barge_in_p95_ms": percentile(self.barge_in_ms, 95),
        }


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)  # nearest rank
    return round(ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)], 1)


class Customer:
    """A scripted caller: speaks tone bursts through an ``AgentSession`` (no interruption
    of its own) and notes when its voiced frames went out and the agent's came in."""

    def __init__(self, session: AgentSession) -> None:
        self.session = session
        self.first_voiced_sent: float | None = None
        self.last_voiced_sent: float | None = None
        session.output.on_frame = self._sent

    def _sent(self, pcm: bytes, at: float) -> None:
        if any(pcm):  # the customer's silence is digital zero
            if self.first_voiced_sent is None:
                self.first_voiced_sent = at
            self.last_voiced_sent = at

    def speak(self, seconds: float) -> None:
        """Start speaking (the times of what is sent from here on are noted afresh)."""
        self.first_voiced_sent = self.last_voiced_sent = None
        self.session.say(tone(seconds, 300.0, 0.3))

    async def started(self) -> float:
        """When the first voiced frame went out."""
        while self.first_voiced_sent is None:
            await asyncio.sleep(FRAME_SECONDS / 4)
        return self.first_voiced_sent

    async def finished(self) -> float:
        """When the last voiced frame went out, once all of it has."""
        while self.session.output.playing or self.last_voiced_sent is None:
            await asyncio.sleep(FRAME_SECONDS / 4)
        return self.last_voiced_sent

    async def heard(self, check: Callable[[PcmFrame], bool], timeout: float) -> PcmFrame:
        """The next frame from the agent that passes ``check``."""

        async def scan() -> PcmFrame:
            while True:
                frame = await self.session.frames.get()
                if check(frame):
                    return frame

        return await asyncio.wait_for(scan(), timeout)

    async def silent_from(self, after: float, timeout: float) -> float:
        """When the agent's lasting silence began (its first frame), from ``after`` on."""
        needed = round(LASTING_SILENCE / FRAME_SECONDS)
        run: list[float] = []

        def quiet_long_enough(frame: PcmFrame) -> bool:
            if frame.at < after:
                return False
            if frame.dbov > QUIET:
                run.clear()
                return False
            run.append(frame.at)
            return len(run) >= needed

        await self.heard(quiet_long_enough, timeout)
        return run[0]


async def one_round(customer: Customer, result: AgentLatency, timeout: float) -> None:
    customer.speak(UTTERANCE)
    said = await customer.finished()
    answer = await customer.heard(lambda f: f.at > said and f.dbov >= VOICED, timeout)
    result.turn_ms.append((answer.at - said) * 1000)

    await customer.heard(lambda f: f.at >= answer.at + BARGE_AFTER, timeout)
    customer.speak(UTTERANCE)
    barge = await customer.started()
    stopped = await customer.silent_from(barge, timeout)
    result.barge_in_ms.append((stopped - barge) * 1000)

    said = await customer.finished()
    answer = await customer.heard(lambda f: f.at > said and f.dbov >= VOICED, timeout)
    result.turn_ms.append((answer.at - said) * 1000)
    await customer.silent_from(answer.at, timeout=10.0)  # the whole answer, then quiet


@contextlib.asynccontextmanager
async def agent_process(
    node: RunningNode, room: str, reply_seconds: float
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``examples/voice_agent.py`` joined to ``room``; stopped (SIGTERM, then kill) on exit."""
    if not EXAMPLE.exists():
        raise FileNotFoundError(f"{EXAMPLE}: run from a source checkout")
    root = str(EXAMPLE.parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        "--url", node.url,
        "--token", token(room, "agent"),
        "--reply-seconds", str(reply_seconds),
        *[arg for address in LOOPBACK for arg in ("--host-address", address)],
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 20)
        if not line.startswith(b"agent ready"):
            raise RuntimeError(f"the agent did not start: {line!r}")
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
                await process.wait()


async def measure(rounds: int = 10, timeout: float = 10.0) -> AgentLatency:
    """Rounds with the example agent on a node in this process (after one not counted)."""
    result = AgentLatency(rounds)
    async with running_node() as node, agent_process(node, "agent-bench", reply_seconds=3.0):
        client = node.client(token("agent-bench", "customer"))
        await client.connect()
        session = AgentSession(client, interrupt=False, name="customer")
        await session.start()
        try:
            customer = Customer(session)
            await customer.heard(lambda f: True, timeout)  # the agent's track plays here
            await _agent_hears(node, "agent-bench", timeout)
            await one_round(customer, AgentLatency(0), timeout)  # warm-up: both sides connected
            for _ in range(rounds):
                await one_round(customer, result, timeout)
        finally:
            await session.close()
    return result


async def _agent_hears(node: RunningNode, room: str, timeout: float) -> None:
    """Until the relay forwards the customer's audio to the agent (a look inside: in one
    process a benchmark may)."""
    deadline = time.monotonic() + timeout
    while True:
        hosted = node.worker.rooms.get(room)
        agent = hosted.by_identity("agent") if hosted else None
        if agent is not None and any(d.started for d in agent.subscriptions.values()):
            return
        if time.monotonic() > deadline:
            raise TimeoutError("the agent never received the customer's audio")
        await asyncio.sleep(0.05)


def render(result: AgentLatency, today: str) -> str:
    s = result.summary()
    return (
        f"{HEADING} ({today})\n\n"
        f"`python -m bench.agent_latency --rounds {result.rounds}`: the example agent "
        "(`examples/voice_agent.py`, its own process) and a scripted customer (tone bursts) "
        "in a room on a loopback node; times at the customer. Turn: the customer's last "
        "voiced frame sent to the agent's first voiced frame heard, including the agent's "
        f"{AGENT_END_OF_TURN:.1f} s end-of-utterance wait and the customer's aiortc jitter "
        "buffer (~80 ms; the agent holds none), agent processing excluded. Barge-in: the "
        "customer's first voiced "
        "frame sent over the agent's answer to the first frame of the agent's silence heard. "
        f"{len(result.turn_ms)} turns, {len(result.barge_in_ms)} barge-ins.\n\n"
        "| | p50 | p95 |\n|---|---|---|\n"
        f"| turn latency | {s['turn_p50_ms']} ms | {s['turn_p95_ms']} ms |\n"
        f"| turn latency less the {AGENT_END_OF_TURN:.1f} s end-of-utterance wait | "
        f"{round(s['turn_p50_ms'] - AGENT_END_OF_TURN * 1000, 1)} ms | "
        f"{round(s['turn_p95_ms'] - AGENT_END_OF_TURN * 1000, 1)} ms |\n"
        f"| barge-in latency | {s['barge_in_p50_ms']} ms | {s['barge_in_p95_ms']} ms |\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    result = asyncio.run(measure(args.rounds))
    print(json.dumps({**asdict(result), **result.summary()}, indent=1))
    print(render(result, time.strftime("%Y-%m-%d")))


if __name__ == "__main__":
    main()
