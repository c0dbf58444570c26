"""Cluster endpoints: ``/v1/ping`` (latency probes), ``/v1/regions`` (what to probe),
``/v1/route`` (where a join would go, and why) and ``/v1/nodes`` (admin)."""

from __future__ import annotations

from aiohttp import web

from regions.models import NodeState

from .app_keys import NODE
from .authz import OnCluster, OnRoom, require
from .client_address import client_ip as client_address
from .cluster import PlacementUnavailable
from .errors import ApiError


async def ping(request: web.Request) -> web.Response:
    """As cheap as a response gets: clients time it to pick their nearest region."""
    return web.Response(
        status=204, headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "no-store"}
    )


async def regions(request: web.Request) -> web.Response:
    """One probe URL per region that has an active node."""
    seen: dict[str, str] = {}
    for node in sorted(request.app[NODE].cluster.snapshot, key=lambda n: n.id):
        if node.state == NodeState.ACTIVE and node.region not in seen:
            seen[node.region] = node.signaling_url.rstrip("/") + "/v1/ping"
    body = {"regions": [{"region": r, "ping_url": u} for r, u in sorted(seen.items())]}
    return web.json_response(body, headers={"Access-Control-Allow-Origin": "*"})


def parse_rtts(text: str) -> dict[str, float]:
    """``eu-west:12,eu-central:40`` -> {region: ms}."""
    rtts: dict[str, float] = {}
    for item in filter(None, text.split(",")):
        region, _, value = item.partition(":")
        try:
            rtts[region.strip()] = float(value)
        except ValueError:
            raise ApiError(400, "invalid_message", f"rtt: {item!r} is not region:ms") from None
    return rtts


async def route(request: web.Request) -> web.Response:
    room = request.query.get("room", "")
    if not room:
        raise ApiError(400, "invalid_message", "room is required")
    require(request, OnRoom(room, "admin"))
    client_ip = request.query.get("client_ip") or client_address(request)
    try:
        decision = await request.app[NODE].cluster.explain(
            room, client_ip, parse_rtts(request.query.get("rtt", ""))
        )
    except PlacementUnavailable as exc:
        raise ApiError(503, exc.code, str(exc)) from None
    return web.json_response(decision.as_json())


async def nodes(request: web.Request) -> web.Response:
    require(request, OnCluster())
    cluster = request.app[NODE].cluster
    return web.json_response(
        {
            "registry_healthy": cluster.registry_healthy,
            "nodes": [n.model_dump(mode="json") for n in cluster.snapshot],
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/ping", ping)
    app.router.add_get("/v1/regions", regions)
    app.router.add_get("/v1/route", route)
    app.router.add_get("/v1/nodes", nodes)
