"""Peers (``tests/interop/turn_peer.py``) run inside another network namespace, and their
output read as it comes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from ..netns import Namespace

ROOT = Path(__file__).resolve().parents[2]


class Peer:
    """A turn_peer process in the namespace; its output lines, read as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []

    async def wait_line(self, wanted: str, timeout: float = 30) -> None:
        assert self.process.stdout is not None
        deadline = asyncio.get_running_loop().time() + timeout
        while not any(line.startswith(wanted) for line in self.lines):
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"no {wanted!r} within {timeout}s: {self.lines[-10:]}")
            try:
                raw = await asyncio.wait_for(self.process.stdout.readline(), left)
            except TimeoutError:
                continue
            if not raw:
                raise AssertionError(f"the peer exited before {wanted!r}: {self.lines[-10:]}")
            self.lines.append(raw.decode().strip())


@contextlib.asynccontextmanager
async def peer(ns: Namespace, *args: str, trust: Path | None = None) -> AsyncIterator[Peer]:
    """``trust``: a CA file the peer trusts instead of the system's (``SSL_CERT_FILE``, which
    OpenSSL reads for Python's default context: what TURN over TLS verifies against)."""
    argv = ns.command(sys.executable, "-m", "tests.interop.turn_peer", *args)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SSL_CERT_FILE", None)
    env.pop("SSL_CERT_DIR", None)
    if trust is not None:
        env["SSL_CERT_FILE"] = str(trust)
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    try:
        yield Peer(process)
    finally:
        assert process.stdin is not None
        process.stdin.close()  # it leaves on its own; if not, it is ended
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            process.kill()
            await process.wait()
