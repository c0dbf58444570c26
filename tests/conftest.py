from __future__ import annotations

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
