from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import pytest

from bench.loopback_node import LOOPBACK, RunningNode, running_node
from signaling.client import restrict_ice_host_addresses

# Every aiortc peer in the suite gathers on loopback only (the tests run in a namespace
# whose only interface is lo, and aioice skips 127.0.0.1 when it lists interfaces).
restrict_ice_host_addresses(LOOPBACK)


@pytest.fixture
async def relay_node() -> AsyncIterator[RunningNode]:
    async with running_node() as node:
        yield node


def _dump_tasks(test: str) -> None:
    """What every asyncio task of a test awaits, printed just before pytest-timeout ends
    it (pytest-timeout shows threads only, and the event loop's thread just polls)."""
    print(f"\n=== asyncio tasks of {test}, about to time out ===", file=sys.stderr)
    for task in asyncio.all_tasks():
        print(f"--- {task.get_name()}: {task.get_coro()}", file=sys.stderr)
        task.print_stack(limit=12, file=sys.stderr)


@pytest.fixture(autouse=True)
async def _tasks_dumped_before_a_timeout(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    marker = request.node.get_closest_marker("timeout")
    timeout = (
        float(marker.args[0])
        if marker and marker.args
        else float(request.config.getini("timeout") or 0)
    )
    handle = None
    if timeout > 5:
        loop = asyncio.get_running_loop()
        handle = loop.call_later(timeout - 3, _dump_tasks, request.node.nodeid)
    yield
    if handle is not None:
        handle.cancel()
