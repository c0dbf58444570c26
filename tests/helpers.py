"""Test-only helpers: waiting with a timeout, and system binaries that CI must have."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable


async def eventually(
    check: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05
) -> None:
    """Wait until ``check()`` is true; fail after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {check}")
        await asyncio.sleep(interval)


def require_binary(name: str) -> str | None:
    """Path of a system binary; in CI a missing one fails the run instead of skipping."""
    path = shutil.which(name)
    if path is None and os.environ.get("CI") == "true":
        raise RuntimeError(f"{name} is required in CI but not installed")
    return path
