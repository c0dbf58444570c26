"""What a voice agent needs on top of the Python client: each remote participant's audio as
48 kHz mono PCM frames with its identity, an outgoing audio track fed with PCM from a queue
that can be cleared at once (barge-in), and speech events, from a voice-activity check on
the frames received or from the room's active speakers.

    client = EurelayClient(url, token)
    await client.connect()
    session = AgentSession(client)
    await session.start()                      # publishes session.output
    async for event in session.speech():       # SpeechStarted, SpeechEnded, Interrupted
        if isinstance(event, SpeechEnded):
            session.say(answer_pcm)            # s16 mono 48 kHz, any length
    # session.frames: PcmFrame(identity, pcm, ...) for whoever speaks, 20 ms each

When someone starts speaking while the agent's audio is still queued, the queue is cleared
(``interrupt=True``) and ``Interrupted`` says how much was dropped. The client reconnects by
itself after a drop (see ``signaling.client``): the output track is published again and the
new session's tracks are read like the first ones.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fractions
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Literal

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from . import protocol as p
from .client import EurelayClient

logger = logging.getLogger(__name__)

SAMPLE_RATE = 48_000
FRAME_SAMPLES = 960  # 20 ms, Opus's usual frame
FRAME_BYTES = 2 * FRAME_SAMPLES
FRAME_SECONDS = FRAME_SAMPLES / SAMPLE_RATE
SILENT_DBOV = -127.0
FULL_SCALE = 32767.0


def level_dbov(pcm: bytes) -> float:
    """RMS level of s16 PCM in dBov (RFC 6465's measure): 0 is full scale, -127 silence."""
    samples = array.array("h", pcm[: len(pcm) // 2 * 2])
    if not samples:
        return SILENT_DBOV
    energy = math.fsum(s * s for s in samples) / len(samples)
    if energy <= 0:
        return SILENT_DBOV
    return max(SILENT_DBOV, 10 * math.log10(energy / (FULL_SCALE * FULL_SCALE)))


def tone(seconds: float, frequency: float = 440.0, amplitude: float = 0.3) -> bytes:
    """A sine as s16 mono 48 kHz PCM (amplitude 0-1 of full scale)."""
    count = round(seconds * SAMPLE_RATE)
    step = 2 * math.pi * frequency / SAMPLE_RATE
    scale = FULL_SCALE * amplitude
    return array.array("h", (round(scale * math.sin(step * i)) for i in range(count))).tobytes()


def silence(seconds: float) -> bytes:
    return bytes(2 * round(seconds * SAMPLE_RATE))


@dataclass(frozen=True, slots=True)
class PcmFrame:
    """20 ms of one remote participant's audio: s16 mono 48 kHz, as it was received."""

    identity: str  # "" while the roster has not named the participant yet
    participant_sid: str
    track_sid: str
    pcm: bytes
    at: float  # event-loop time it was read (asyncio's clock, monotonic)

    @property
    def dbov(self) -> float:
        return level_dbov(self.pcm)


class PcmSource(MediaStreamTrack):
    """An aiortc audio track playing the PCM pushed into it (s16 mono 48 kHz), in real time,
    and silence when there is none. ``clear()`` drops everything queued: the next frame out
    (within 20 ms) is silent."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._queued = bytearray()
        self._started: float | None = None
        self._sent = 0  # frames sent since _started
        self.on_frame: Callable[[bytes, float], None] | None = None  # (pcm, loop time) as sent

    def push(self, pcm: bytes) -> None:
        self._queued += pcm[: len(pcm) // 2 * 2]

    def clear(self) -> float:
        """Drop what is queued; returns how many seconds of audio that was."""
        dropped = len(self._queued) / 2 / SAMPLE_RATE
        self._queued.clear()
        return dropped

    @property
    def queued(self) -> float:
        """Seconds of audio not yet sent."""
        return len(self._queued) / 2 / SAMPLE_RATE

    @property
    def playing(self) -> bool:
        return bool(self._queued)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._started is None:
            self._started = time.time()
        else:
            wait = self._started + self._sent * FRAME_SECONDS - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -0.2:  # the sender stalled (a reconnect): start the clock again
                self._started, self._sent = time.time(), 0
        chunk = bytes(self._queued[:FRAME_BYTES])
        del self._queued[:FRAME_BYTES]
        if len(chunk) < FRAME_BYTES:
            chunk += bytes(FRAME_BYTES - len(chunk))
        frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(chunk)
        frame.sample_rate = SAMPLE_RATE
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        frame.pts = self._sent * FRAME_SAMPLES
        self._sent += 1
        if self.on_frame is not None:
            self.on_frame(chunk, asyncio.get_running_loop().time())
        return frame


class VoiceActivity:
    """Speech in a stream of 20 ms frames by level: it starts after ``start`` seconds of
    frames at ``threshold`` dBov or louder, and ends after ``end`` seconds below."""

    def __init__(self, threshold: float = -40.0, start: float = 0.04, end: float = 0.4) -> None:
        self.threshold = threshold
        self.start_frames = max(1, round(start / FRAME_SECONDS))
        self.end_frames = max(1, round(end / FRAME_SECONDS))
        self.speaking = False
        self.started_at = 0.0
        self._voiced = 0
        self._quiet = 0

    def update(self, dbov: float, at: float) -> Literal["started", "ended"] | None:
        if dbov >= self.threshold:
            self._voiced += 1
            self._quiet = 0
            if not self.speaking and self._voiced >= self.start_frames:
                self.speaking = True
                self.started_at = at - (self._voiced - 1) * FRAME_SECONDS
                return "started"
        else:
            self._quiet += 1
            self._voiced = 0
            if self.speaking and self._quiet >= self.end_frames:
                self.speaking = False
                return "ended"
        return None


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    identity: str
    participant_sid: str
    at: float  # loop time of the first voiced frame (VAD) or of the event (active speakers)


@dataclass(frozen=True, slots=True)
class SpeechEnded:
    """An utterance ended: the moment to answer."""

    identity: str
    participant_sid: str
    at: float  # loop time the end was decided (``end`` seconds after the last voiced frame)
    duration: float  # seconds from its start to its last voiced frame


@dataclass(frozen=True, slots=True)
class Interrupted:
    """Someone spoke while the agent's audio was playing: what was queued is dropped."""

    identity: str
    participant_sid: str
    at: float
    dropped: float  # seconds of the agent's audio that will never be heard


SpeechEvent = SpeechStarted | SpeechEnded | Interrupted


class AgentSession:
    """One agent in a room through an ``EurelayClient``: PCM in (``frames``), PCM out
    (``say``, ``output``), speech events (``events`` or ``speech()``).

    ``speech_from``: ``"vad"`` runs ``VoiceActivity`` on each participant's frames here
    (20 ms steps: quick enough to stop talking within a tenth of a second); ``"speakers"``
    follows the relay's ``active_speakers`` events (no decoding needed here, but 0.1-0.4 s
    slower). The session reads ``client.tracks`` (do not read it too); video is
    unsubscribed, an agent listens.
    """

    def __init__(
        self,
        client: EurelayClient,
        *,
        interrupt: bool = True,
        speech_from: Literal["vad", "speakers"] = "vad",
        vad: Callable[[], VoiceActivity] = VoiceActivity,
        keep_frames: float = 10.0,
        name: str = "agent",
    ) -> None:
        self.client = client
        self.interrupt = interrupt
        self.speech_from = speech_from
        self.vad = vad
        self.name = name
        self.output = PcmSource()
        # what was heard, oldest dropped first past ``keep_frames`` seconds
        self.frames: asyncio.Queue[PcmFrame] = asyncio.Queue(round(keep_frames / FRAME_SECONDS))
        self.events: asyncio.Queue[SpeechEvent] = asyncio.Queue()
        self._readers: dict[str, asyncio.Task[None]] = {}
        self._taker: asyncio.Task[None] | None = None
        self._speaking: dict[str, float] = {}  # active speakers: participant sid -> since
        if speech_from == "speakers":
            client.listeners.append(self._on_message)

    async def start(self) -> None:
        """Publish the agent's voice and start listening."""
        await self.client.publish(self.output, names=[self.name], sources=["microphone"])
        self._taker = asyncio.create_task(self._take_tracks())

    def say(self, pcm: bytes) -> None:
        """Queue speech (s16 mono 48 kHz) after whatever is queued already."""
        self.output.push(pcm)

    def stop_speaking(self) -> float:
        """Drop the agent's queued audio now; returns the seconds dropped."""
        return self.output.clear()

    @property
    def speaking(self) -> bool:
        return self.output.playing

    async def speech(self) -> AsyncIterator[SpeechEvent]:
        while True:
            yield await self.events.get()

    async def close(self) -> None:
        tasks = [t for t in (self._taker, *self._readers.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.output.stop()

    # listening ---------------------------------------------------------------------------

    async def _take_tracks(self) -> None:
        while True:
            track_sid, track = await self.client.tracks.get()
            if track.kind != "audio":
                with contextlib.suppress(Exception):
                    await self.client.unsubscribe(track_sid)
                continue
            previous = self._readers.pop(track_sid, None)
            if previous is not None:
                previous.cancel()
            self._readers[track_sid] = asyncio.create_task(self._read(track_sid, track))

    async def _read(self, track_sid: str, track: MediaStreamTrack) -> None:
        loop = asyncio.get_running_loop()
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        vad = self.vad() if self.speech_from == "vad" else None
        owner = identity = ""
        try:
            while True:
                try:
                    received = await track.recv()
                except MediaStreamError:
                    break
                if not isinstance(received, av.AudioFrame):
                    continue
                owner = self.client.track_owners.get(track_sid, "")
                identity = self.client.identity_of(owner)
                at = loop.time()
                for out in resampler.resample(received):
                    pcm = bytes(out.planes[0])[: 2 * out.samples]
                    frame = PcmFrame(identity, owner, track_sid, pcm, at)
                    self._keep(frame)
                    if vad is not None:
                        change = vad.update(frame.dbov, at)
                        if change is not None:
                            self._heard(change, identity, owner, at, vad)
        finally:
            if vad is not None and vad.speaking:  # the track ended mid-utterance
                self._heard("ended", identity, owner, loop.time(), vad)
            if self._readers.get(track_sid) is asyncio.current_task():
                del self._readers[track_sid]

    def _keep(self, frame: PcmFrame) -> None:
        if self.frames.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.frames.get_nowait()
        self.frames.put_nowait(frame)

    def _heard(
        self,
        change: Literal["started", "ended"],
        identity: str,
        sid: str,
        at: float,
        vad: VoiceActivity,
    ) -> None:
        if change == "started":
            self._started(identity, sid, vad.started_at)
        else:
            last_voiced = at - vad.end_frames * FRAME_SECONDS
            self.events.put_nowait(
                SpeechEnded(identity, sid, at, max(0.0, last_voiced - vad.started_at))
            )

    def _started(self, identity: str, sid: str, at: float) -> None:
        self.events.put_nowait(SpeechStarted(identity, sid, at))
        if self.interrupt and self.output.playing:
            dropped = self.output.clear()
            self.events.put_nowait(Interrupted(identity, sid, at, dropped))

    def _on_message(self, message: p._Message) -> None:
        """``speech_from="speakers"``: speech starts and ends as the relay ranks speakers."""
        if not isinstance(message, p.ActiveSpeakers):
            return
        now = asyncio.get_running_loop().time()
        own = self.client.joined.participant.sid if self.client.joined else ""
        current = {s.sid: s.identity for s in message.speakers if s.sid != own}
        for sid, identity in current.items():
            if sid not in self._speaking:
                self._speaking[sid] = now
                self._started(identity, sid, now)
        for sid in [s for s in self._speaking if s not in current]:
            since = self._speaking.pop(sid)
            self.events.put_nowait(SpeechEnded(self.client.identity_of(sid), sid, now, now - since))
