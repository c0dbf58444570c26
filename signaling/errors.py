"""HTTP errors of the control plane, turned into JSON responses by one middleware.

Client input never produces a 500: handlers raise ``ApiError`` (or a token / access error),
and anything else that escapes a handler is a bug of ours, logged with its traceback once per
route and exception type (so a client repeating the request cannot flood the log) and
answered with a plain JSON 500 that carries no traceback. A client that goes away halfway
through its request is not one: logged at debug level.

Bodies are read within ``BODY_TIMEOUT`` (a client sending its offer a byte a second would
otherwise hold its handler forever), and malformed HTTP, which aiohttp answers 400 itself,
is logged once per kind (``LogBadHttpOnce``), not once per request with a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
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

BODY_TIMEOUT = 10.0  # seconds to receive a whole request body (at most 256 KiB)


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


async def read_body(request: web.Request) -> bytes:
    """The request's body, received within ``BODY_TIMEOUT`` seconds (else 408)."""
    try:
        async with asyncio.timeout(BODY_TIMEOUT):
            return await request.read()
    except TimeoutError:
        raise ApiError(
            408, "request_timeout", f"the body did not arrive within {BODY_TIMEOUT:g} s"
        ) from None


class LogBadHttpOnce(logging.Filter):
    """On aiohttp's server logger: malformed HTTP (a header line too long, a broken
    header, a bad chunk) is answered 400 by aiohttp, which logs each at ERROR with a
    traceback. Here the first of each kind is a one-line warning; the next ones are
    logged only at debug level."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError) or record.levelno < logging.WARNING:
            return True  # aiohttp's own debug lines (non-HTTP bytes on the port) stay so
        kind = type(exc).__name__
        said = (record.getMessage(), kind, str(exc.message)[:120])
        record.exc_info = None
        record.exc_text = None
        if kind in self.seen:
            if not logging.getLogger().isEnabledFor(logging.DEBUG):
                return False
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        else:
            self.seen.add(kind)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg = "%s (%s: %s); more of this kind are logged at debug level only"
        record.args = said
        return True


def log_bad_http_once() -> None:
    """Install ``LogBadHttpOnce`` on aiohttp's server logger, once per process."""
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, LogBadHttpOnce) for f in server.filters):
        server.addFilter(LogBadHttpOnce())


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
            response = _error(exc.status, exc.code, str(exc))
            if exc.status in (408, 413):  # the body's rest is not waited for: closed after
                response.force_close()
            return response
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
            transport = request.transport
            if isinstance(exc, ConnectionResetError) and (
                transport is None or transport.is_closing()
            ):  # the client's own connection, not one of ours: nobody to answer
                logger.debug(
                    "%s %s: the client went away mid-request", request.method, request.path
                )
                return _error(400, "connection_lost", "the client went away mid-request")
            resource = request.match_info.route.resource
            key = (resource.canonical if resource else request.path, type(exc).__name__)
            if key not in logged:
                logged.add(key)
                logger.exception("%s %s failed", request.method, key[0])
            else:
                logger.debug("%s %s failed again: %s", request.method, key[0], key[1])
            return _error(500, "internal_error", "the server failed to handle this request")

    return error_middleware
