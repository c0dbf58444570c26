"""Publish H.264 + Opus with FFmpeg's WHIP muxer, default options: ``URL TOKEN SECONDS``.

PyAV encodes synthetic frames; FFmpeg's own ICE/DTLS/SRTP stack sends them. It offers
``a=setup:passive`` with its own certificate, so the relay must be the DTLS client.
"""

from __future__ import annotations

import fractions
import sys
import time

import av


def publish(url: str, token: str, seconds: float) -> None:
    out = av.open(url, "w", format="whip", options={"authorization": token})
    video = out.add_stream("libx264", rate=30)
    video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
    video.options = {
        "tune": "zerolatency",
        "preset": "ultrafast",
        "profile": "baseline",
        "g": "30",
        "bf": "0",
    }
    audio = out.add_stream("libopus", rate=48000)
    audio.layout = "stereo"
    started = time.monotonic()
    frame_index = 0
    try:
        while time.monotonic() - started < seconds:
            vf = av.VideoFrame(width=320, height=240, format="yuv420p")
            for plane in vf.planes:
                plane.update(bytes([frame_index % 255]) * plane.buffer_size)
            vf.pts = frame_index
            vf.time_base = fractions.Fraction(1, 30)
            for packet in video.encode(vf):
                out.mux(packet)
            af = av.AudioFrame(format="s16", layout="stereo", samples=1600)
            for plane in af.planes:
                plane.update(bytes(plane.buffer_size))
            af.sample_rate = 48000
            af.pts = frame_index * 1600
            af.time_base = fractions.Fraction(1, 48000)
            for packet in audio.encode(af):
                out.mux(packet)
            frame_index += 1
            time.sleep(max(0.0, started + frame_index / 30 - time.monotonic()))
    finally:
        out.close()


if __name__ == "__main__":
    publish(sys.argv[1], sys.argv[2], float(sys.argv[3]))
