"""aiortc's audio receiver as ``signaling/audio_jitter.py`` reaches into it (pinned names)."""

from __future__ import annotations

from aiortc import RTCConfiguration, RTCPeerConnection

from signaling.audio_jitter import check_aiortc_compat, hold_audio_frames


async def test_installed_aiortc_has_what_the_client_changes_and_the_change_holds() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        receiver = pc.addTransceiver("audio", direction="recvonly").receiver
        assert check_aiortc_compat(receiver) == []
        hold_audio_frames(receiver, 0)
        assert check_aiortc_compat(receiver) == ["audio prefetch 0, not 4"]
    finally:
        await pc.close()
