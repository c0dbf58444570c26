"""Test-only helpers: waiting with a timeout, system binaries that CI must have, and bridging
a room between two nodes by hand (the cluster's control channel does it in production)."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.loopback_node import RunningNode
from relay.room import ParticipantKind


async def eventually(
    check: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05
) -> None:
    """Wait until ``check()`` is true; fail after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {check}")
        await asyncio.sleep(interval)


async def eventually_async(
    check: Callable[[], Awaitable[bool]], timeout: float = 10.0, interval: float = 0.05
) -> None:
    """``eventually`` for a check that has to await (a registry, a browser)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {check}")
        await asyncio.sleep(interval)


def require_binary(name: str) -> str | None:
    """Path of a system binary; in CI a missing one fails the run instead of skipping."""
    path = shutil.which(name)
    if path is None and os.environ.get("CI") == "true":
        raise RuntimeError(f"{name} is required in CI but not installed")
    return path


def open_udp_ports() -> set[int]:
    """Local ports of the IPv4 UDP sockets open in this network namespace (any process)."""
    lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    return {int(line.split()[1].rsplit(":", 1)[1], 16) for line in lines}


def bridge(
    origin: RunningNode,
    viewing: RunningNode,
    room: str,
    origin_name: str = "origin",
    viewing_name: str = "viewing",
) -> None:
    """What the cluster will do when ``viewing`` has a viewer of ``origin``'s tracks: carry
    those of the room's participants on ``origin`` (not the stand-ins of another worker's,
    which arrive there over a bridge themselves). The names are how each calls the other."""
    a, b = origin.node.relay, viewing.node.relay
    endpoint = a.bridge_out(room, viewing_name, b.fingerprints())
    b.bridge_in(room, origin_name, endpoint)
    for participant in a.participants(room):
        if participant.kind is ParticipantKind.REMOTE:
            continue
        for track in participant.tracks:
            b.bridge_receive(room, origin_name, a.bridge_send(room, viewing_name, track.sid))
