"""Access tokens: JWT HS256 signed with an API key's secret.

``iss`` is the API key, ``sub`` the identity, ``exp``/``nbf`` bound its life, and ``grant``
says what it allows. Every failure has its own stable error code.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from relay.control import Permissions

LEEWAY_SECONDS = 5


class Grant(BaseModel):
    model_config = ConfigDict(extra="ignore")

    room: str = ""  # "" with room_admin means every room
    can_publish: bool = False
    can_subscribe: bool = True
    can_publish_data: bool = False
    room_admin: bool = False
    # What may be published (camera, microphone, screen, screen_audio); None: any source.
    can_publish_sources: list[str] | None = Field(default=None, max_length=4)

    def permissions(self) -> Permissions:
        """What a participant joining with this grant may do in its room."""
        sources = self.can_publish_sources
        return Permissions(
            can_publish=self.can_publish,
            can_subscribe=self.can_subscribe,
            can_publish_data=self.can_publish_data,
            sources=frozenset(sources) if sources is not None else None,
        )


class Claims(BaseModel):
    model_config = ConfigDict(extra="ignore")

    iss: str
    sub: str = Field(min_length=1, max_length=256)
    exp: int
    nbf: int | None = None
    name: str = ""
    metadata: str = ""
    grant: Grant


class TokenError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def mint(
    api_key: str,
    secret: str,
    identity: str,
    grant: Grant,
    ttl: float = 3600,
    name: str = "",
    now: float | None = None,
) -> str:
    issued = int(time.time() if now is None else now)
    payload: dict[str, Any] = {
        "iss": api_key,
        "sub": identity,
        "nbf": issued,
        "exp": issued + int(ttl),
        "grant": grant.model_dump(),
    }
    if name:
        payload["name"] = name
    return jwt.encode(payload, secret, algorithm="HS256")


def verify(token: str | None, keys: dict[str, str]) -> Claims:
    if not token:
        raise TokenError("token_missing", "an access token is required")
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenError("token_malformed", "the access token is not a JWT") from None
    if header.get("alg") != "HS256":
        raise TokenError("token_malformed", "only HS256 tokens are accepted")
    secret = keys.get(str(unverified.get("iss", "")))
    if secret is None:
        raise TokenError("token_unknown_key", "the token's API key (iss) is not known here")
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iss", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("token_expired", "the access token has expired") from None
    except jwt.ImmatureSignatureError:
        raise TokenError("token_not_yet_valid", "the access token is not valid yet (nbf)") from None
    except jwt.InvalidSignatureError:
        raise TokenError("token_bad_signature", "the access token's signature is wrong") from None
    except jwt.PyJWTError as exc:
        raise TokenError("token_malformed", f"the access token is invalid: {exc}") from None
    try:
        return Claims.model_validate(payload)
    except ValidationError as exc:
        raise TokenError(
            "token_malformed", f"token claims invalid: {exc.errors()[0]['msg']}"
        ) from None
