"""A voice agent in a eurelay room: it listens to everyone, answers each utterance with
synthetic speech (espeak-ng if it is installed, else a chime of tones: no model to
download), and stops talking as soon as someone speaks over it.

    python examples/voice_agent.py --url ws://127.0.0.1:7880/v1/rtc --room demo \\
        --api-key KEY --api-secret SECRET        # or --token TOKEN; neither: a dev node's

(with eurelay installed, e.g. ``pip install -e .``; from a bare checkout, ``PYTHONPATH=.``).

Join the same room from the demo page (http://127.0.0.1:7880/?room=demo), say something and
pause: the agent answers; talk while it answers and it stops at once. What it is built on
(``signaling.agent``): ``AgentSession`` publishes the agent's voice (a PCM queue it can
clear), reads every remote participant's audio as 48 kHz PCM frames with their identity,
and turns them into ``SpeechStarted`` / ``SpeechEnded`` / ``Interrupted`` events. If the
connection drops, the client joins again and the session goes on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import shutil
import signal
import subprocess
import wave

import aiohttp
import av

from signaling import protocol as p
from signaling.agent import (
    SAMPLE_RATE,
    AgentSession,
    Interrupted,
    SpeechEnded,
    SpeechStarted,
    silence,
    tone,
)
from signaling.client import EurelayClient
from signaling.tokens import Grant, mint

logger = logging.getLogger("voice_agent")

MIN_UTTERANCE = 0.2  # seconds: shorter sounds (a cough, a click) get no answer
CHIME = (523.25, 659.25, 783.99)  # C5, E5, G5


def chime(seconds: float) -> bytes:
    """The stand-in for speech: notes of 0.2 s with short gaps, for ``seconds``."""
    pcm = b""
    note = 0
    while len(pcm) < 2 * SAMPLE_RATE * seconds:
        pcm += tone(0.2, CHIME[note % len(CHIME)], 0.3) + silence(0.05)
        note += 1
    return pcm[: 2 * round(SAMPLE_RATE * seconds)]


def espeak(text: str) -> bytes | None:
    """``text`` spoken by espeak-ng, as s16 mono 48 kHz PCM; None without espeak-ng."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    wav = subprocess.run([exe, "--stdout", text], capture_output=True, timeout=20, check=True)
    with wave.open(io.BytesIO(wav.stdout)) as reader:
        rate, channels = reader.getframerate(), reader.getnchannels()
        data = reader.readframes(reader.getnframes())
    frame = av.AudioFrame(
        format="s16",
        layout="stereo" if channels == 2 else "mono",
        samples=len(data) // (2 * channels),
    )
    frame.planes[0].update(data)
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    out = [*resampler.resample(frame), *resampler.resample(None)]
    return b"".join(bytes(f.planes[0])[: 2 * f.samples] for f in out)


async def reply_for(event: SpeechEnded, seconds: float, text: str | None) -> bytes:
    """What the agent says back. A real agent would transcribe, think and synthesize here."""
    if text:
        spoken = await asyncio.to_thread(espeak, text.format(identity=event.identity or "you"))
        if spoken is not None:
            return spoken
    return chime(seconds)


async def dev_token(url: str, room: str, identity: str) -> str:
    """A token from a node in dev mode (no config file), as the demo page gets its own."""
    base = url.replace("ws://", "http://").replace("wss://", "https://").rsplit("/v1/rtc", 1)[0]
    body = {"room": room, "identity": identity, "publish": True, "subscribe": True, "data": True}
    async with aiohttp.ClientSession() as http, http.post(base + "/dev/token", json=body) as resp:
        if resp.status != 200:
            raise SystemExit("give --token, or --api-key and --api-secret (not a dev node)")
        token: str = (await resp.json())["token"]
        return token


async def run_agent(
    url: str,
    token: str,
    *,
    host_addresses: list[str] | None = None,
    reply_seconds: float = 1.5,
    text: str | None = None,
    speech_from: str = "vad",
) -> None:
    # An agent listens, it does not play out: it takes each frame as soon as it is complete
    # (aiortc would hold 80 ms of them), so it hears someone speak over it that much sooner.
    client = EurelayClient(url, token, host_addresses=host_addresses, audio_hold=0)
    await client.connect()
    session = AgentSession(client, speech_from="speakers" if speech_from == "speakers" else "vad")
    await session.start()
    print(f"agent ready in {client.joined.room if client.joined else '?'}", flush=True)

    async def until_closed() -> None:
        while not isinstance(await client.events.get(), p.Closed):
            pass

    async def converse() -> None:
        async for event in session.speech():
            if isinstance(event, SpeechStarted):
                logger.info("%s speaks", event.identity)
            elif isinstance(event, Interrupted):
                logger.info(
                    "%s spoke over the agent: %.2f s dropped", event.identity, event.dropped
                )
            elif isinstance(event, SpeechEnded) and event.duration >= MIN_UTTERANCE:
                logger.info("%s said %.2f s: answering", event.identity, event.duration)
                session.say(await reply_for(event, reply_seconds, text))

    tasks = [asyncio.create_task(until_closed()), asyncio.create_task(converse())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await session.close()
        await client.leave()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="ws://127.0.0.1:7880/v1/rtc")
    parser.add_argument("--room", default="demo")
    parser.add_argument("--identity", default="agent")
    parser.add_argument("--token", help="an access token; else minted with --api-key/secret")
    parser.add_argument("--api-key")
    parser.add_argument("--api-secret")
    parser.add_argument("--host-address", action="append", help="gather ICE here only")
    parser.add_argument("--reply-seconds", type=float, default=1.5, help="length of the chime")
    parser.add_argument("--say", help="text for espeak-ng ({identity} is replaced), if installed")
    parser.add_argument("--speech-from", choices=["vad", "speakers"], default="vad")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("aioice").setLevel(logging.WARNING)  # every ICE check at INFO
    token = args.token
    if token is None and args.api_key and args.api_secret:
        grant = Grant(room=args.room, can_publish=True, can_subscribe=True, can_publish_data=True)
        token = mint(args.api_key, args.api_secret, args.identity, grant, ttl=24 * 3600)

    async def run() -> None:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await run_agent(
                args.url,
                token or await dev_token(args.url, args.room, args.identity),
                host_addresses=args.host_address,
                reply_seconds=args.reply_seconds,
                text=args.say,
                speech_from=args.speech_from,
            )

    asyncio.run(run())


if __name__ == "__main__":
    main()
