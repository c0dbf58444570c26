"""Stopping background tasks so that a stop always ends.

``task.cancel()`` then ``await task`` hangs for good when the task swallows its
cancellation, which Python 3.11's ``asyncio.wait_for`` does when the call it waits for
completes at the moment it is cancelled (gh-86296, fixed in 3.12): the loop around it then
carries on as if nothing happened. Seen as a node's shutdown hanging under CPU load.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable, Iterator
from typing import Any

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


class TaskSet:
    """Background tasks an object starts and must not lose: kept referenced while they run
    (the event loop holds tasks only weakly), forgotten when done, stopped together."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def __bool__(self) -> bool:
        return bool(self._tasks)

    def __iter__(self) -> Iterator[asyncio.Task[None]]:
        return iter(list(self._tasks))

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        return self.keep(asyncio.ensure_future(coro))

    def keep(self, task: asyncio.Task[None]) -> asyncio.Task[None]:
        """Hold a task started elsewhere (aiortc's SCTP runner)."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def wait(self, timeout: float) -> None:
        """Let them finish, for at most ``timeout`` seconds."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def stop(self, timeout: float = 5.0) -> None:
        await stop_tasks(list(self._tasks), timeout)
