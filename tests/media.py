"""Synthetic media for tests: an encoder whose payloads no decoder accepts."""

from __future__ import annotations

import os
from fractions import Fraction
from typing import Any

import pytest


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
