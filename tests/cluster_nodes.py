"""Several ``eurelay serve`` processes sharing one real redis-server, for multi-node tests."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.loopback_node import API_KEY, API_SECRET, CLUSTER_SECRET
from bench.node_process import NodeProcess, spawn_node
from bench.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]
HEARTBEAT = 0.3
TTL = 1.5
GRACE = 2.0


@dataclass
class NodeSpec:
    node_id: str
    region: str
    jurisdiction: str = "eu"
    extra: dict[str, Any] = field(default_factory=dict)


def node_config(spec: NodeSpec, redis_url: str, directory: Path) -> Path:
    config: dict[str, Any] = {
        "node_id": spec.node_id,
        "region": spec.region,
        "jurisdiction": spec.jurisdiction,
        "keys": {API_KEY: API_SECRET},
        "cluster": {"secret": CLUSTER_SECRET},
        "registry": {"url": redis_url},
        "heartbeat_interval": HEARTBEAT,
        "node_ttl": TTL,
        "drain_grace": 30,
        "routing": {"snapshot_grace": GRACE, "default_region": "eu-central"},
    }
    config.update(spec.extra)
    path = directory / f"{spec.node_id}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@contextlib.asynccontextmanager
async def cluster(
    redis: RedisServer, specs: list[NodeSpec], directory: Path
) -> AsyncIterator[dict[str, NodeProcess]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    async with contextlib.AsyncExitStack() as stack:
        nodes = {}
        for spec in specs:
            config = node_config(spec, redis.url, directory)
            nodes[spec.node_id] = await stack.enter_async_context(
                spawn_node(config, "--log-level", "warning", env=env, cwd=ROOT)
            )
        yield nodes
