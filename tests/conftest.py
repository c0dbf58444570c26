from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .helpers import RunningNode, running_node


@pytest.fixture
async def relay_node() -> AsyncIterator[RunningNode]:
    async with running_node() as node:
        yield node
