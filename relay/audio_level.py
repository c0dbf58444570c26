"""Audio levels (RFC 6464): the level byte a sender puts in each audio packet's header
extension, read without decoding, and each audio track's smoothed speaking state.

The fast path only counts voiced packets and keeps the loudest (``AudioLevel.voiced``,
``loudest``: small ints, no object per packet); the worker's tick turns one tick's counts
into a smoothed level and a speaking flag (``AudioLevel.tick``). Levels are -dBov, 0
(loudest) to 127 (silence).
"""

from __future__ import annotations

from dataclasses import dataclass

AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
SILENT = 127
# A packet at -40 dBov or louder is voiced: speech at a normal distance from a microphone is
# -15 to -35 dBov after the sender's gain control, a quiet room's noise below -50.
VOICED_DBOV = 40
# A tick is voiced when at least 2 in 5 of its packets are: a click (Chromium's fake device
# beeps 20 ms every 500 ms) is not speech.
VOICED_SHARE = (2, 5)
HOLD = 0.6  # seconds speaking lasts past the last voiced tick: the pauses between words
ATTACK = 0.6  # share of the way the smoothed level moves toward a louder tick
RELEASE = 0.2  # ... toward a quieter one
# Clearly louder (3 dB): a speaker ranked behind another overtakes it only by this much, so
# two voices of about the same loudness do not swap places with every breath.
CLEARLY_LOUDER = 1.4
# Linear amplitude of each level (10^(-dBov/20)), so the tick never calls pow.
AMPLITUDE = (*(10 ** (-level / 20) for level in range(SILENT)), 0.0)

# The level as it crosses a bridge to another node: a one-byte-header extension block
# (RFC 8285) with this id, one per level, built once (the fast path allocates none).
BRIDGE_LEVEL_ID = 1
BRIDGE_LEVEL_BLOCKS = tuple(
    bytes((0xBE, 0xDE, 0x00, 0x01, BRIDGE_LEVEL_ID << 4, level, 0, 0))
    for level in range(SILENT + 1)
)


def read_audio_level(rtp: bytes, ext_id: int) -> int:
    """The level (0-127, -dBov) in extension ``ext_id``, or -1 when the packet has none.

    One-byte (0xBEDE) and two-byte (0x100X) header forms (RFC 8285); the voice-activity
    bit is ignored. Returns an int under 128, never a new object.
    """
    b0 = rtp[0]
    if not b0 & 0x10:
        return -1
    start = 12 + 4 * (b0 & 0x0F)
    if (
        len(rtp) > start + 5
        and rtp[start] == 0xBE
        and rtp[start + 1] == 0xDE
        and rtp[start + 4] >> 4 == ext_id
        and rtp[start + 2] | rtp[start + 3]
    ):
        return rtp[start + 5] & 0x7F  # the level first, as Chromium and aiortc write it
    return _search(rtp, ext_id, start)


def _search(rtp: bytes, ext_id: int, start: int) -> int:
    """``read_audio_level`` for a level that is not the first element, or not there."""
    length = len(rtp)
    if length < start + 4:
        return -1
    profile = (rtp[start] << 8) | rtp[start + 1]
    end = start + 4 + 4 * ((rtp[start + 2] << 8) | rtp[start + 3])
    if end > length:
        return -1
    i = start + 4
    if profile == 0xBEDE:
        while i < end:
            byte = rtp[i]
            if byte == 0:  # padding
                i += 1
                continue
            element_id = byte >> 4
            if element_id == 15:
                return -1
            if element_id == ext_id:
                return rtp[i + 1] & 0x7F if i + 1 < end else -1
            i += 2 + (byte & 0x0F)
        return -1
    if profile & 0xFFF0 == 0x1000:
        while i + 1 < end:
            element_id = rtp[i]
            if element_id == 0:
                i += 1
                continue
            size = rtp[i + 1]
            if element_id == ext_id:
                return rtp[i + 2] & 0x7F if size and i + 2 < end else -1
            i += 2 + size
    return -1


@dataclass(slots=True)
class AudioLevel:
    """One audio track's loudness. The fast path counts a tick's voiced packets and keeps
    the loudest of them; ``tick`` smooths, given how many packets came in all."""

    ext_id: int  # the publisher's id for the audio-level extension
    loudest: int = SILENT  # the loudest voiced level this tick (lowest -dBov)
    voiced: int = 0  # packets at or above VOICED_DBOV this tick
    counted: int = 0  # the track's packet count when the tick began
    level: float = 0.0  # smoothed linear amplitude, 0-1
    speaking: bool = False
    voiced_at: float = float("-inf")  # when a tick was last voiced

    def tick(self, now: float, packets: int) -> bool:
        """Close this tick's counts (``packets``: the track's packet count so far, muted and
        level-less ones included): update the smoothed level and the speaking flag."""
        received = packets - self.counted
        voiced = received > 0 and self.voiced * VOICED_SHARE[1] >= received * VOICED_SHARE[0]
        target = AMPLITUDE[self.loudest] if voiced else 0.0
        rate = ATTACK if target > self.level else RELEASE
        self.level += (target - self.level) * rate
        if voiced:
            self.voiced_at = now
        self.speaking = now - self.voiced_at <= HOLD
        self.loudest = SILENT
        self.voiced = 0
        self.counted = packets
        return self.speaking
