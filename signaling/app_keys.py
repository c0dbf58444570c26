"""Typed application state keys (aiohttp ``web.AppKey``)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry

from .node import Node

NODE = web.AppKey("node", Node)
METRICS = web.AppKey("metrics", CollectorRegistry)
