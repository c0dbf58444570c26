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
