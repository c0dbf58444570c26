"""Calls to other nodes of the cluster (``signaling/peer_api.py``), with the cluster secret."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
from pydantic import BaseModel

from regions.models import NodeRecord
from relay.background import stop_tasks


class PeerError(Exception):
    """Another node did not answer, or refused."""


class PeerClient:
    def __init__(self, secret: str, timeout: float) -> None:
        self._headers = {"Authorization": f"Bearer {secret}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._http: aiohttp.ClientSession | None = None

    async def post(self, node: NodeRecord, path: str, body: BaseModel) -> Any:
        """POST ``body`` as JSON; the decoded JSON answer (None for 204)."""
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        url = (node.internal_url or node.signaling_url).rstrip("/") + path
        try:
            async with self._http.post(
                url, data=body.model_dump_json(), headers={"Content-Type": "application/json"}
            ) as resp:
                if resp.status == 204:
                    return None
                answer = await resp.json(content_type=None)
                if resp.status >= 300:
                    raise PeerError(f"{node.id} refused {path}: {resp.status} {answer}")
                return answer
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise PeerError(f"{node.id} did not answer {path}: {exc!r}") from exc

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None


class PeerQueue:
    """Pushes to one node, in order, from one task: a room's data messages reach each node in
    the order they were sent. Bounded: a node that cannot keep up loses messages, counted."""

    def __init__(
        self,
        client: PeerClient,
        node: NodeRecord,
        on_drop: Callable[[], None],
        limit: int = 1000,
    ) -> None:
        self.client = client
        self.node = node
        self.on_drop = on_drop
        self._queue: asyncio.Queue[tuple[str, BaseModel]] = asyncio.Queue(limit)
        self._task = asyncio.create_task(self._run())

    def push(self, path: str, body: BaseModel) -> None:
        try:
            self._queue.put_nowait((path, body))
        except asyncio.QueueFull:
            self.on_drop()

    async def _run(self) -> None:
        while True:
            path, body = await self._queue.get()
            try:
                await self.client.post(self.node, path, body)
            except PeerError:
                self.on_drop()

    async def close(self) -> None:
        await stop_tasks([self._task])
