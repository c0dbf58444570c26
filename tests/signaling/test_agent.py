"""The agent toolkit's parts without a network: levels, speech detection, the PCM queue."""

from __future__ import annotations

import asyncio

import pytest

from signaling.agent import (
    FRAME_BYTES,
    FRAME_SAMPLES,
    PcmSource,
    VoiceActivity,
    level_dbov,
    silence,
    tone,
)
from signaling.client import stream_ids

pytestmark = pytest.mark.timeout(20)


def test_levels_are_rms_dbov() -> None:
    assert level_dbov(tone(0.02, 400, 0.5)) == pytest.approx(-9.0, abs=0.2)
    assert level_dbov(tone(0.02, 400, 0.05)) == pytest.approx(-29.0, abs=0.2)
    assert level_dbov(silence(0.02)) == -127.0
    assert level_dbov(b"") == -127.0


def test_speech_starts_after_two_voiced_frames_and_ends_after_the_quiet_wait() -> None:
    vad = VoiceActivity(threshold=-40, start=0.04, end=0.1)
    at = 10.0
    assert vad.update(-20, at) is None  # one loud frame: maybe a click
    assert vad.update(-60, at + 0.02) is None
    assert vad.update(-20, at + 0.04) is None
    assert vad.update(-25, at + 0.06) == "started"
    assert vad.started_at == pytest.approx(at + 0.04)
    for i in range(4):
        assert vad.update(-60, at + 0.08 + 0.02 * i) is None  # a pause shorter than ``end``
    assert vad.update(-20, at + 0.16) is None  # goes on: still the same utterance
    assert [vad.update(-60, at + 0.18 + 0.02 * i) for i in range(5)][-1] == "ended"
    assert not vad.speaking


async def test_the_pcm_queue_plays_in_20_ms_frames_and_clears_at_once() -> None:
    source = PcmSource()
    sent: list[bytes] = []
    source.on_frame = lambda pcm, at: sent.append(pcm)
    speech = tone(0.05, 400, 0.3)  # two and a half frames
    source.push(speech)
    assert source.playing and source.queued == pytest.approx(0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    frames = [await source.recv() for _ in range(4)]
    assert loop.time() - started >= 0.055  # paced: real time, not as fast as asked
    assert all(f.samples == FRAME_SAMPLES and f.sample_rate == 48000 for f in frames)
    assert sent[0] + sent[1] + sent[2][: FRAME_BYTES // 2] == speech
    assert sent[2][FRAME_BYTES // 2 :] == bytes(FRAME_BYTES // 2) and sent[3] == bytes(FRAME_BYTES)
    assert [f.pts for f in frames] == [0, 960, 1920, 2880]
    assert not source.playing

    source.push(tone(1.0))
    await source.recv()
    assert source.clear() == pytest.approx(0.98)
    await source.recv()
    assert sent[-1] == bytes(FRAME_BYTES)  # the frame after clear() is silent
    source.stop()


def test_each_m_section_names_its_publisher_in_msid() -> None:
    sdp = "\r\n".join(
        [
            "v=0",
            "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
            "a=mid:data",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
            "a=mid:1",
            "a=sendonly",
            "a=msid:PA_alice TR_1",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
            "a=mid:2",
            "a=inactive",
        ]
    )
    assert stream_ids(sdp) == {"1": "PA_alice"}
