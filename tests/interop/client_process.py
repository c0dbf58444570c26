"""WebRTC clients written by others, run as processes the test starts and stops by PID.

Each client script prints one JSON object a line (``{"event": ...}``); ``ClientProcess``
collects them so a test can wait on a condition with a deadline. What a client needs beyond
the project's virtualenv (Debian's GStreamer and python3-gi, node with the npm package
node-datachannel) is installed by ``make test``: missing, the test skips, or fails under CI.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import os
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from ..helpers import eventually, require_binary

ROOT = Path(__file__).resolve().parents[2]
INTEROP = Path(__file__).resolve().parent
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, where python3-gi puts GStreamer's bindings
GST_ELEMENTS = ("webrtcbin", "nicesrc", "vp8enc", "vp8dec", "opusenc", "opusdec", "mulawenc")
NODE_DATACHANNEL = INTEROP / "libdatachannel" / "node_modules" / "node-datachannel"


def _missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"{what} is required in CI but not installed (make test installs it)")
    pytest.skip(f"{what} is not installed (make test installs it)")


@functools.cache
def _gstreamer_missing() -> str | None:
    """Why GStreamer's webrtcbin cannot run from Python here, or None."""
    probe = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstWebRTC', '1.0');"
        "from gi.repository import Gst, GstWebRTC; Gst.init(None);"
        f"missing = [e for e in {GST_ELEMENTS!r} if Gst.ElementFactory.find(e) is None];"
        "print(' '.join(missing))"
    )
    try:
        result = subprocess.run(
            [SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{SYSTEM_PYTHON} ({exc})"
    if result.returncode != 0:
        return f"python3-gi with GStreamer's WebRTC bindings ({result.stderr.strip()[-200:]})"
    if result.stdout.strip():
        return f"GStreamer elements {result.stdout.strip()}"
    return None


def require_gstreamer() -> str:
    """The interpreter that runs ``gst_webrtc.py``."""
    missing = _gstreamer_missing()
    if missing is not None:
        _missing(missing)
    return SYSTEM_PYTHON


def require_node_datachannel() -> str:
    """The node binary that runs ``libdatachannel/whip_whep.cjs``."""
    node = require_binary("node")
    if node is None:
        _missing("node")
    if not NODE_DATACHANNEL.is_dir():
        _missing("node-datachannel (scripts/node-clients.sh)")
    assert node is not None
    return node


class ClientProcess:
    """A running client: its events so far, and ``stop`` by PID."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self.events.append(json.loads(line))

    def last(self, event: str) -> dict[str, Any] | None:
        return next((e for e in reversed(self.events) if e["event"] == event), None)

    def errors(self) -> list[str]:
        return [e["message"] for e in self.events if e["event"] == "error"]

    async def wait_for(
        self, check: Callable[[], bool], timeout: float, what: str = "condition"
    ) -> None:
        """``eventually(check)``, failing at once with the client's errors if it exits."""

        def done() -> bool:
            code = self.proc.returncode
            if self.errors() or code is not None:
                state = "running" if code is None else f"exited {code}"
                raise AssertionError(f"waiting for {what}: client {state}, errors {self.errors()}")
            return check()

        try:
            await eventually(done, timeout)
        except AssertionError as exc:
            shown = [e for e in self.events if e["event"] != "offer"][-3:]
            raise AssertionError(f"waiting for {what}: {exc}; last events {shown}") from None

    async def stop(self) -> int:
        """SIGTERM (the client DELETEs its session and exits), SIGKILL after 10 s."""
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self._reader, 5)
        assert self.proc.returncode is not None
        return self.proc.returncode


@contextlib.asynccontextmanager
async def client_process(*argv: str) -> AsyncIterator[ClientProcess]:
    """Start a client; it is stopped (by its PID) however the test ends."""
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    client = ClientProcess(proc)
    try:
        yield client
    finally:
        await client.stop()


def vp8_frames(path: Path, count: int = 30, size: tuple[int, int] = (320, 240)) -> Path:
    """VP8 RTP payloads (aiortc's encoder and packetizer) of ``count`` frames, first a
    keyframe, as JSON for a client without a VP8 packetizer to replay."""
    from aiortc.codecs.vpx import Vp8Encoder
    from av import VideoFrame

    encoder = Vp8Encoder()
    frames = []
    for index in range(count):
        frame = VideoFrame(width=size[0], height=size[1], format="yuv420p")
        for plane in frame.planes:
            plane.update(bytes([(index * 8) % 256]) * plane.buffer_size)
        frame.pts = index * 3000
        payloads, _ = encoder.encode(frame, force_keyframe=index == 0)
        frames.append([base64.b64encode(p).decode() for p in payloads])
    path.write_text(json.dumps({"frames": frames}))
    return path
