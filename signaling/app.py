"""The aiohttp application factory: routes, the node's lifetime, health and metrics."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import admin_api, cluster_api, dev_endpoints, peer_api, whep, whip
from .app_keys import METRICS, NODE
from .client_address import limit_joins
from .errors import create_error_middleware, log_bad_http_once
from .metrics import create_registry
from .node import Node
from .rtc_session import CLOSE_INTERNAL, RtcSession
from .settings import Settings
from .whip import cors_middleware

logger = logging.getLogger(__name__)

# A connection with no request under way, idle between requests or with its headers still
# arriving (a byte at a time: slowloris), is closed after this many seconds; aiohttp's own
# default is an hour. A request's body has ``errors.BODY_TIMEOUT``, a WebSocket's join
# ``signaling.join_timeout``.
IDLE_TIMEOUT = 30.0
# After a refused body (408, 413), the rest a client still sends is read and dropped for at
# most this long (so it can read the answer), then the connection is closed.
LINGERING_TIME = 2.0


def server_options() -> dict[str, Any]:
    """How the HTTP server runs the app (``web.AppRunner``'s keyword arguments)."""
    return {
        "access_log": None,
        "keepalive_timeout": IDLE_TIMEOUT,
        "lingering_time": LINGERING_TIME,
    }


async def rtc(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE]
    limit_joins(request)  # before the upgrade: a plain 429
    ws = web.WebSocketResponse(
        heartbeat=20.0, max_msg_size=node.settings.signaling.max_message_bytes + 1
    )
    await ws.prepare(request)
    try:
        await RtcSession(node, ws).run(request)
    except Exception:  # a bug of ours: the socket is upgraded, so no HTTP 500 can be sent
        logger.exception("WebSocket session failed")
        with contextlib.suppress(Exception):
            await ws.close(code=CLOSE_INTERNAL, message=b"internal_error")
    return ws


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    node = request.app[NODE]
    if node.draining:
        return web.json_response(
            {"status": "draining", "reason": "the node is draining; it takes no new sessions"},
            status=503,
        )
    if not node.cluster.registry_healthy:
        # Joins, WHIP and /v1/route answer 503 registry_unavailable now: tell the load
        # balancer too, instead of saying ready while refusing everything.
        return web.json_response(
            {
                "status": "registry_unavailable",
                "reason": "the node registry has been unreachable longer than "
                "routing.snapshot_grace; the node cannot place sessions",
            },
            status=503,
        )
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def index(request: web.Request) -> web.Response:
    page = resources.files("signaling").joinpath("static/index.html").read_text()
    return web.Response(text=page, content_type="text/html")


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[cors_middleware, create_error_middleware()], client_max_size=256 * 1024
    )
    log_bad_http_once()
    node = Node(settings)
    app[NODE] = node
    app[METRICS] = create_registry(
        node.relay,
        node.sessions,  # type: ignore[arg-type]
        node.counters,
    )

    async def node_lifetime(app: web.Application) -> AsyncIterator[None]:
        await node.start()
        yield
        with contextlib.suppress(Exception):
            await node.stop()

    async def end_sessions(app: web.Application) -> None:
        # Before aiohttp waits (up to its shutdown timeout) for the WebSocket handlers to
        # end: tell the clients now, so they rejoin elsewhere at once.
        for session in list(node.sessions.values()):
            session.close("server_shutdown")

    app.cleanup_ctx.append(node_lifetime)
    app.on_shutdown.append(end_sessions)
    app.router.add_get("/", index)
    app.router.add_get("/v1/rtc", rtc)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    admin_api.add_routes(app)
    whip.add_routes(app)
    whep.add_routes(app)
    dev_endpoints.add_routes(app)
    cluster_api.add_routes(app)
    peer_api.add_routes(app)
    app.router.add_static("/static", Path(str(resources.files("signaling").joinpath("static"))))
    return app
