"""The image itself in a real container: docker/Dockerfile as scripts/container-image.sh built
it with Podman (make test does, before the tests' network namespace exists), run with its own
command and config, reached from outside the container, media in by WHIP and out by WHEP.

``--network host`` puts the container in this test's namespace, where loopback is the only
interface: the container's ports are this namespace's ports, as ``docker run -p`` maps them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiortc.mediastreams import AudioStreamTrack

from bench.flat_color_track import FlatColorTrack
from bench.loopback_node import API_KEY, API_SECRET, token
from bench.node_process import LISTENING, parse_listening

from ..helpers import require_binary
from ..interop.http_sessions import frame_of_size, whep_view, whip_publish

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]
PODMAN = str(ROOT / "scripts" / "podman.sh")
IMAGE_FILE = ROOT / "build" / "container-image"  # written by scripts/container-image.sh


def built_image() -> str | None:
    """The image's name; None (skip) without Podman or an image, but in CI both are required."""
    if require_binary("podman") is None:
        return None
    if IMAGE_FILE.exists():
        return IMAGE_FILE.read_text().strip()
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"{IMAGE_FILE} is missing: make test builds the image first")
    return None


async def podman(*args: str, timeout: float = 30) -> int:
    proc = await asyncio.create_subprocess_exec(PODMAN, *args, stdout=asyncio.subprocess.DEVNULL)
    return await asyncio.wait_for(proc.wait(), timeout)


@contextlib.asynccontextmanager
async def running_container(image: str, name: str) -> AsyncIterator[tuple[str, int, list[int]]]:
    """The image with its default command; yields where it listens (``host:port`` as bound,
    the UDP port) and, once the block is over, the container's exit code."""
    run = await asyncio.create_subprocess_exec(
        PODMAN,
        "run",
        "--rm",
        "--name",
        name,
        "--pull",
        "never",
        "--network",
        "host",
        # no timer (it needs systemd, absent here: podman logs that it is): the test runs
        # the image's HEALTHCHECK itself
        "--health-interval",
        "disable",
        "-e",
        "EURELAY_KEYS=" + json.dumps({API_KEY: API_SECRET}),
        image,
        stdout=asyncio.subprocess.PIPE,
    )
    exit_code: list[int] = []
    try:
        assert run.stdout is not None
        line = b""
        while LISTENING not in line:
            line = await asyncio.wait_for(run.stdout.readline(), 60)
            assert line, f"the container exited with {await run.wait()}"
        http, udp = parse_listening(line)
        yield http, udp, exit_code
        # SIGTERM, as docker stop sends: a node without sessions drains at once and exits 0
        await podman("stop", "--time", "10", name)
        exit_code.append(await asyncio.wait_for(run.wait(), 20))
    finally:
        if run.returncode is None:
            await podman("rm", "--force", "--time", "0", name)
            with contextlib.suppress(ProcessLookupError):
                run.kill()
            await asyncio.wait_for(run.wait(), 20)


async def test_image_serves_whip_and_whep_from_a_container() -> None:
    image = built_image()
    if image is None:
        pytest.skip("no podman or no image: make test installs and builds them")
    name = "eurelay-test-" + secrets.token_hex(4)
    async with running_container(image, name) as (http, udp, exit_code):
        # The shipped config binds every interface: 127.0.0.2 reaches it, which a server
        # bound to 127.0.0.1 (what docker run -p could not reach) would refuse.
        assert http == "0.0.0.0:7880" and udp == 7882
        async with aiohttp.ClientSession() as session:
            for path in ("/healthz", "/readyz"):
                async with session.get(f"http://127.0.0.2:7880{path}") as resp:
                    assert resp.status == 200, path
        assert await podman("healthcheck", "run", name) == 0  # the image's own HEALTHCHECK

        base = "http://127.0.0.1:7880"
        studio, fan = token("live", "studio"), token("live", "fan", publish=False)
        publisher, published = await whip_publish(
            base, "live", studio, FlatColorTrack(320, 240), AudioStreamTrack()
        )
        viewer, tracks, viewing = await whep_view(base, "/whep/live", fan)
        try:
            await frame_of_size(tracks["video"], (320, 240), timeout=20)  # decoded VP8
            await asyncio.wait_for(tracks["audio"].recv(), 10)
            async with aiohttp.ClientSession() as session:
                for location, tok in ((viewing, fan), (published, studio)):
                    headers = {"Authorization": f"Bearer {tok}"}
                    async with session.delete(base + location, headers=headers) as resp:
                        assert resp.status == 200, location
        finally:
            await viewer.close()
            await publisher.close()
    assert exit_code == [0]
