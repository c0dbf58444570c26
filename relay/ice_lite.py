"""ICE-lite responder (RFC 8445 section 2.5) for the sessions sharing one UDP socket.

The relay sends no connectivity checks of its own to establish a session (only, later, a
consent check before a connected session moves: ``relay.consent``); it answers binding
requests whose USERNAME and MESSAGE-INTEGRITY match a session's credentials, and reports
the session so the mux can latch the remote address. It latches on the first authenticated
request whether it carries USE-CANDIDATE or not: aioice does not nominate towards a lite
peer.
"""

from __future__ import annotations

import secrets
import string
import struct
from dataclasses import dataclass
from typing import Generic, TypeVar

from aioice import stun

Owner = TypeVar("Owner")

_ALPHABET = string.ascii_letters + string.digits


def random_token(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def parse_stun(data: bytes) -> stun.Message:
    """``aioice.stun.parse_message`` with every failure a ValueError, as its docstring
    implies: an attribute whose length runs past the datagram reaches aioice's fixed-size
    decoders truncated, and they raise struct.error (found by tests/fuzz)."""
    try:
        return stun.parse_message(data)
    except struct.error as exc:
        raise ValueError(f"truncated STUN attribute: {exc}") from None


@dataclass(slots=True, frozen=True)
class IceCredentials:
    ufrag: str
    pwd: str

    @classmethod
    def generate(cls) -> IceCredentials:
        # RFC 8839: ufrag >= 4 chars, pwd >= 22 chars.
        return cls(ufrag=random_token(8), pwd=random_token(24))


@dataclass(slots=True)
class _Entry(Generic[Owner]):
    credentials: IceCredentials
    owner: Owner


class IceLiteResponder(Generic[Owner]):
    """Maps local ufrags to sessions and answers their binding requests."""

    def __init__(self) -> None:
        self._by_ufrag: dict[str, _Entry[Owner]] = {}

    def add(self, credentials: IceCredentials, owner: Owner) -> None:
        self._by_ufrag[credentials.ufrag] = _Entry(credentials, owner)

    def remove(self, credentials: IceCredentials) -> None:
        self._by_ufrag.pop(credentials.ufrag, None)

    def __len__(self) -> int:
        return len(self._by_ufrag)

    def owners(self) -> list[Owner]:
        return [entry.owner for entry in self._by_ufrag.values()]

    def handle(self, data: bytes, addr: tuple[str, int]) -> tuple[bytes | None, Owner | None]:
        """Return (response to send or None, owner of an authenticated request or None).

        Raises ValueError for datagrams that are not valid STUN.
        """
        message = parse_stun(data)
        if (
            message.message_class != stun.Class.REQUEST
            or message.message_method != stun.Method.BINDING
        ):
            return None, None
        username = message.attributes.get("USERNAME")
        if not isinstance(username, str) or ":" not in username:
            return self._error(message, addr, 400, "Bad Request"), None
        local_ufrag = username.split(":", 1)[0]
        entry = self._by_ufrag.get(local_ufrag)
        if entry is None:
            return self._error(message, addr, 401, "Unauthorized"), None
        pwd = entry.credentials.pwd.encode()
        if not message.check_message_integrity(pwd):
            return self._error(message, addr, 401, "Unauthorized"), None
        response = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.RESPONSE,
            transaction_id=message.transaction_id,
        )
        response.attributes["XOR-MAPPED-ADDRESS"] = addr
        response.add_message_integrity(pwd)
        return bytes(response), entry.owner

    @staticmethod
    def _error(message: stun.Message, addr: tuple[str, int], code: int, reason: str) -> bytes:
        response = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.ERROR,
            transaction_id=message.transaction_id,
        )
        response.attributes["ERROR-CODE"] = (code, reason)
        response.add_fingerprint()
        return bytes(response)
