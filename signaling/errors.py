"""HTTP errors of the control plane, turned into JSON responses by one middleware.

Client input never produces a 500: handlers raise ``ApiError`` (or a token / access error),
and anything else that escapes a handler is a bug of ours, logged with its traceback once per
route and exception type (so a client repeating the request cannot flood the log) and
answered with a plain JSON 500 that carries no traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import BaseModel, ValidationError

from relay.errors import (
    NodeFullError,
    NotFoundError,
    PermissionDeniedError,
    RelayError,
    RoomFullError,
)

from .authz import AccessDenied
from .tokens import TokenError

logger = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def describe_invalid(exc: ValidationError) -> str:
    """What is wrong with a body, naming the key (``max_particpants: Extra inputs are not
    permitted``), not pydantic's "1 validation error for CreateRoom"."""
    first = exc.errors()[0]
    if first["type"] == "json_invalid":
        return "the body is not valid JSON"
    where = ".".join(str(x) for x in first["loc"]) or "body"
    more = len(exc.errors()) - 1
    return f"{where}: {first['msg']}" + (f" (and {more} more)" if more else "")


def parse_body(model: type[M], raw: bytes) -> M:
    """``raw`` as ``model``, or a 400 that names the offending key."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise ApiError(400, "invalid_message", describe_invalid(exc)) from None


def relay_status(exc: RelayError) -> int:
    """The HTTP status of a media-plane error."""
    if isinstance(exc, RoomFullError | NodeFullError):
        return 503
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, PermissionDeniedError):
        return 403
    return 400


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)


def create_error_middleware() -> Middleware:
    logged: set[tuple[str, str]] = set()  # (route, exception type) logged with a traceback

    @web.middleware
    async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return _error(exc.status, exc.code, str(exc))
        except TokenError as exc:
            return _error(401, exc.code, str(exc))
        except AccessDenied as exc:
            return _error(403, exc.code, str(exc))
        except RelayError as exc:
            return _error(relay_status(exc), exc.code, str(exc))
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _error(exc.status, "http_error", exc.reason)
        except Exception as exc:
            resource = request.match_info.route.resource
            key = (resource.canonical if resource else request.path, type(exc).__name__)
            if key not in logged:
                logged.add(key)
                logger.exception("%s %s failed", request.method, key[0])
            else:
                logger.debug("%s %s failed again: %s", request.method, key[0], key[1])
            return _error(500, "internal_error", "the server failed to handle this request")

    return error_middleware
