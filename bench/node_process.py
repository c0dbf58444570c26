"""Run ``eurelay serve`` as a child process and learn where it listens.

Benchmarks and tests that need a node in its own process (its CPU measured, or killed)
use this; it reads the one line ``eurelay listening http=HOST:PORT udp=PORT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

LISTENING = b"eurelay listening"


@dataclass(slots=True)
class NodeProcess:
    process: asyncio.subprocess.Process
    http_address: str  # host:port
    udp_port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def http_url(self) -> str:
        return f"http://{self.http_address}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.http_address}/v1/rtc"


def parse_listening(line: bytes) -> tuple[str, int]:
    text = line.decode()
    http = text.split("http=", 1)[1].split()[0].split(",")[0]
    udp = int(text.split("udp=", 1)[1].split()[0])
    return http, udp


@contextlib.asynccontextmanager
async def spawn_node(
    config: Path,
    *extra_args: str,
    command: Sequence[str] | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    start_timeout: float = 20.0,
    stderr: IO[bytes] | None = None,
) -> AsyncIterator[NodeProcess]:
    """Start a node on free ports; stop it (SIGTERM, then SIGKILL) on exit."""
    argv = [
        *(command or [sys.executable, "-m", "signaling.cli"]),
        "serve",
        "--config",
        str(config),
        "--http-port",
        "0",
        "--udp-port",
        "0",
        *extra_args,
    ]
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=stderr, env=env, cwd=cwd
    )
    try:
        assert process.stdout is not None
        line = b""
        while LISTENING not in line:
            line = await asyncio.wait_for(process.stdout.readline(), start_timeout)
            if not line:
                raise RuntimeError(f"eurelay serve exited with {await process.wait()}")
        http, udp = parse_listening(line)
        yield NodeProcess(process, http, udp)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
