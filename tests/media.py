"""Synthetic media for tests: an encoder whose payloads no decoder accepts, and tones."""

from __future__ import annotations

import array
import asyncio
import math
import os
import time
from fractions import Fraction
from typing import Any

import pytest
from aiortc.mediastreams import AudioStreamTrack
from av import AudioFrame


class PassthroughEncoder:
    """Stands in for aiortc's VP8 encoder: emits payloads that are not VP8.

    Each starts with a VP8 payload descriptor that reads as a keyframe start (so the relay's
    keyframe gate lets it through), followed by bytes no VP8 decoder would accept.
    """

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.count = 0

    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        self.count += 1
        payload = b"\x10\x00" + b"EURELAY-NOT-VP8-%06d-" % self.count + os.urandom(40)
        self.sent.append(payload)
        timestamp = int(frame.pts * frame.time_base / Fraction(1, 90000))
        return [payload], timestamp

    def pack(self, packet: Any) -> tuple[list[bytes], int]:  # pragma: no cover - unused
        raise NotImplementedError


def use_encoder(monkeypatch: pytest.MonkeyPatch, encoder: PassthroughEncoder) -> None:
    import aiortc.rtcrtpsender as sender

    original = sender.get_encoder
    monkeypatch.setattr(
        sender,
        "get_encoder",
        lambda codec: encoder if codec.mimeType == "video/VP8" else original(codec),
    )


TONE_RATE, TONE_SAMPLES = 48000, 960  # 48 kHz mono, 20 ms frames
# 400 Hz at 48 kHz: 120 samples a period, 8 periods a frame, so every frame is alike
_PERIOD = [math.sin(2 * math.pi * 400 * i / TONE_RATE) for i in range(TONE_SAMPLES)]


class ToneTrack(AudioStreamTrack):
    """A 400 Hz tone at ``amplitude`` (0-1 of full scale; 0 is silence), 48 kHz mono in
    20 ms frames. ``amplitude`` may change while it plays. A sine of amplitude A is
    20*log10(A/sqrt(2)) dBov: 0.5 is -9 dBov, 0.05 is -29 dBov."""

    def __init__(self, amplitude: float) -> None:
        super().__init__()
        self.amplitude = amplitude
        self._cached: tuple[float, bytes] = (-1.0, b"")

    def _pcm(self) -> bytes:
        if self._cached[0] != self.amplitude:
            scale = 32767 * self.amplitude
            self._cached = (
                self.amplitude,
                array.array("h", (round(scale * x) for x in _PERIOD)).tobytes(),
            )
        return self._cached[1]

    async def recv(self) -> AudioFrame:
        if hasattr(self, "_timestamp"):
            self._timestamp += TONE_SAMPLES
            await asyncio.sleep(self._start + self._timestamp / TONE_RATE - time.time())
        else:
            self._start = time.time()
            self._timestamp = 0
        frame = AudioFrame(format="s16", layout="mono", samples=TONE_SAMPLES)
        frame.planes[0].update(self._pcm())
        frame.pts = self._timestamp
        frame.sample_rate = TONE_RATE
        frame.time_base = Fraction(1, TONE_RATE)
        return frame


# -- audio RED (RFC 2198), which aiortc lacks: taught to it for the tests that need a RED peer

RED_PT = 63  # as Chromium numbers it
AIORTC_OPUS_PT = 96  # aiortc's own number for Opus in its offers


def red_blocks(primary: bytes, previous: bytes | None, offset: int = 960) -> bytes:
    """A RED payload: ``previous`` (``offset`` ticks older) as the redundant block, if any."""
    if previous is None:
        return bytes([AIORTC_OPUS_PT]) + primary
    header = (0x80 | AIORTC_OPUS_PT, offset >> 6, ((offset & 0x3F) << 2) | (len(previous) >> 8))
    return bytes([*header, len(previous) & 0xFF, AIORTC_OPUS_PT]) + previous + primary


class RedEncoder:
    """aiortc's Opus encoder, each packet sent in RED with the one before it (as Chromium)."""

    def __init__(self) -> None:
        from aiortc.codecs.opus import OpusEncoder

        self.opus = OpusEncoder()
        self.previous: bytes | None = None
        self.sent = 0

    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], Any]:
        payloads, timestamp = self.opus.encode(frame)
        wrapped = []
        for payload in payloads:
            wrapped.append(red_blocks(payload, self.previous))
            self.previous = payload
        self.sent += len(wrapped)
        return wrapped, timestamp

    def pack(self, packet: Any) -> tuple[list[bytes], int]:  # pragma: no cover - unused
        raise NotImplementedError


class RedDecoder:
    """Takes the primary block (counting the redundant ones seen) and decodes it as Opus."""

    def __init__(self, received: list[bytes]) -> None:
        from aiortc.codecs.opus import OpusDecoder

        self.opus = OpusDecoder()
        self.received = received

    def decode(self, encoded_frame: Any) -> list[Any]:
        from relay.red import primary_start

        data = encoded_frame.data
        self.received.append(data)
        start = primary_start(b"\x80" + bytes(11) + data, 12) - 12
        encoded_frame.data = data[start:]
        return self.opus.decode(encoded_frame)


def teach_aiortc_red(monkeypatch: pytest.MonkeyPatch) -> tuple[list[RedEncoder], list[bytes]]:
    """Every aiortc peer created from now on offers and accepts ``red/48000/2`` around its
    Opus (after Opus, as Chromium does), sends RED when an answer puts it first and decodes
    RED it receives. Returns the encoders made and the RED payloads decoded, to look into;
    ``without_red`` takes it back out of the offers and answers of later negotiations."""
    import aiortc.rtcrtpreceiver as receiver
    import aiortc.rtcrtpsender as sender
    from aiortc.codecs import CODECS
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    red = RTCRtpCodecParameters(
        mimeType="audio/red",
        clockRate=48000,
        channels=2,
        payloadType=RED_PT,
        parameters={f"{AIORTC_OPUS_PT}/{AIORTC_OPUS_PT}": None},
    )
    monkeypatch.setitem(CODECS, "audio", [*CODECS["audio"], red])
    encoders: list[RedEncoder] = []
    received: list[bytes] = []

    def encoder(codec: Any) -> Any:
        if codec.mimeType.lower() == "audio/red":
            encoders.append(RedEncoder())
            return encoders[-1]
        return original_encoder(codec)

    def decoder(codec: Any) -> Any:
        if codec.mimeType.lower() == "audio/red":
            return RedDecoder(received)
        return original_decoder(codec)

    original_encoder, original_decoder = sender.get_encoder, receiver.get_decoder
    monkeypatch.setattr(sender, "get_encoder", encoder)
    monkeypatch.setattr(receiver, "get_decoder", decoder)
    return encoders, received


def without_red() -> None:
    """Later aiortc negotiations neither offer nor accept RED (a plain aiortc peer)."""
    from aiortc.codecs import CODECS

    CODECS["audio"] = [c for c in CODECS["audio"] if c.mimeType.lower() != "audio/red"]
