"""Data messages toward another node: kept in order, and every one lost is counted."""

from __future__ import annotations

import socket

import pytest
from pydantic import BaseModel

from regions.models import NodeRecord
from signaling.peer_client import PeerClient, PeerQueue

from ..helpers import eventually

pytestmark = pytest.mark.timeout(20)


class Note(BaseModel):
    n: int


def _closed_port() -> int:
    with socket.socket() as sock:  # bound, then closed: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_messages_to_a_node_that_does_not_answer_are_counted_lost() -> None:
    node = NodeRecord(
        id="gone", region="eu-west", signaling_url=f"http://127.0.0.1:{_closed_port()}"
    )
    lost: list[int] = []
    client = PeerClient("s" * 32, timeout=2.0)
    queue = PeerQueue(client, node, lambda: lost.append(1), limit=2)
    try:
        for n in range(5):
            queue.push("/v1/cluster/data", Note(n=n))
        # two or three fit the queue (one may be taken already) and fail; the rest overflow
        await eventually(lambda: len(lost) == 5)
    finally:
        await queue.close()
        await client.close()
