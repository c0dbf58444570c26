"""Stopping background tasks so that a stop always ends.

``task.cancel()`` then ``await task`` hangs for good when the task swallows its
cancellation, which Python 3.11's ``asyncio.wait_for`` does when the call it waits for
completes at the moment it is cancelled (gh-86296, fixed in 3.12): the loop around it then
carries on as if nothing happened. Seen as a node's shutdown hanging under CPU load.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

logger = logging.getLogger(__name__)


async def stop_tasks(tasks: Iterable[asyncio.Task[object]], timeout: float = 5.0) -> None:
    """Cancel the tasks and wait for them, cancelling again any that carries on, for at most
    ``timeout`` seconds; one still running then is logged and left behind."""
    pending = {t for t in tasks if not t.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - loop.time()
        if left <= 0:
            logger.warning("%d background tasks did not stop: %s", len(pending), pending)
            return
        _, pending = await asyncio.wait(pending, timeout=min(0.5, left))
