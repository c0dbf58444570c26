"""A real redis-server on a free loopback port, stopped on exit, for the bench and the tests."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    port: int
    process: asyncio.subprocess.Process | None = None
    data_dir: str = field(default_factory=tempfile.gettempdir)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server")
        self.process = await asyncio.create_subprocess_exec(
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self.data_dir,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for _ in range(100):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return
            await asyncio.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await asyncio.wait_for(self.process.wait(), 10)
        self.process = None

    async def restart(self) -> None:
        """The same server on the same port and data dir: its clients' connections break
        (a FLUSHALL would not), and with ``--save ""`` it comes back empty."""
        await self.stop()
        await self.start()


@contextlib.asynccontextmanager
async def redis_server() -> AsyncIterator[RedisServer]:
    server = RedisServer(free_port())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
