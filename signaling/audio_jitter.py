"""How many audio frames aiortc's receiver holds before decoding one: the one place the
clients touch aiortc's private names.

aiortc keeps a received audio frame in its jitter buffer until 4 later frames have come
(80 ms), to put reordered packets right before playout. A listener that does not play out,
an agent noticing a human speaking over it, gains nothing from that and loses 80 ms: it can
take each frame as soon as the next one starts (``hold_audio_frames(receiver, 0)``: 20 ms).

Pinned to aiortc 1.16 (pyproject); ``tests/signaling/test_audio_jitter.py`` fails loudly
when a new aiortc changes what is used here.
"""

from __future__ import annotations

from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer

AIORTC_AUDIO_PREFETCH = 4  # what aiortc 1.16 holds
_CAPACITY = 16  # aiortc 1.16's audio jitter buffer size (a power of two)
_ATTRIBUTE = "_RTCRtpReceiver__jitter_buffer"  # RTCRtpReceiver.__jitter_buffer


def check_aiortc_compat(receiver: RTCRtpReceiver) -> list[str]:
    """What is missing from aiortc's audio receiver that ``hold_audio_frames`` relies on."""
    buffer = getattr(receiver, _ATTRIBUTE, None)
    if not isinstance(buffer, JitterBuffer):
        return [f"RTCRtpReceiver has no {_ATTRIBUTE} JitterBuffer"]
    problems = []
    if buffer.capacity != _CAPACITY:
        problems.append(f"audio jitter buffer capacity {buffer.capacity}, not {_CAPACITY}")
    if getattr(buffer, "_prefetch", None) != AIORTC_AUDIO_PREFETCH:
        problems.append(f"audio prefetch {getattr(buffer, '_prefetch', None)}, not 4")
    return problems


def hold_audio_frames(receiver: RTCRtpReceiver, frames: int) -> None:
    """Make an audio receiver hand out a frame once ``frames`` later frames have come (0: as
    soon as it is complete). Call it before media flows (in the ``track`` event)."""
    if getattr(receiver, _ATTRIBUTE, None) is None:
        return  # not an aiortc 1.16 receiver: leave it as it is
    setattr(receiver, _ATTRIBUTE, JitterBuffer(capacity=_CAPACITY, prefetch=frames))
