from __future__ import annotations

import struct

import pytest
from aioice import stun

from relay.ice_initiator import IceInitiator
from relay.ice_lite import IceCredentials, IceLiteResponder

ADDR = ("127.0.0.1", 50000)


def _request(username: str, pwd: str, use_candidate: bool = False) -> bytes:
    message = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    message.attributes["USERNAME"] = username
    message.attributes["PRIORITY"] = 1
    if use_candidate:
        message.attributes["USE-CANDIDATE"] = None
    message.add_message_integrity(pwd.encode())
    return bytes(message)


def test_authenticated_request_is_answered_and_reports_owner() -> None:
    creds = IceCredentials.generate()
    responder: IceLiteResponder[str] = IceLiteResponder()
    responder.add(creds, "leg-1")
    # aioice does not nominate towards a lite peer: no USE-CANDIDATE must still latch.
    response, owner = responder.handle(_request(f"{creds.ufrag}:client", creds.pwd), ADDR)
    assert owner == "leg-1"
    assert response is not None
    parsed = stun.parse_message(response)
    assert parsed.message_class == stun.Class.RESPONSE
    assert parsed.attributes["XOR-MAPPED-ADDRESS"] == ADDR
    assert parsed.check_message_integrity(creds.pwd.encode())


@pytest.mark.parametrize(
    "username, pwd",
    [
        ("unknown:client", "x" * 24),
        ("{ufrag}:client", "wrong-password-123456789"),
        ("nocolon", "p"),
    ],
)
def test_unauthenticated_requests_get_errors_and_no_owner(username: str, pwd: str) -> None:
    creds = IceCredentials.generate()
    responder: IceLiteResponder[str] = IceLiteResponder()
    responder.add(creds, "leg-1")
    response, owner = responder.handle(_request(username.format(ufrag=creds.ufrag), pwd), ADDR)
    assert owner is None
    assert response is not None
    assert stun.parse_message(response).message_class == stun.Class.ERROR


def test_garbage_raises_value_error_and_removed_sessions_are_unknown() -> None:
    creds = IceCredentials.generate()
    responder: IceLiteResponder[str] = IceLiteResponder()
    responder.add(creds, "leg")
    with pytest.raises(ValueError):
        responder.handle(b"\x00\x01\x00", ADDR)
    responder.remove(creds)
    assert len(responder) == 0
    _, owner = responder.handle(_request(f"{creds.ufrag}:c", creds.pwd), ADDR)
    assert owner is None


def test_credentials_meet_rfc_lengths() -> None:
    creds = IceCredentials.generate()
    assert len(creds.ufrag) >= 4 and len(creds.pwd) >= 22
    assert IceCredentials.generate() != creds


@pytest.mark.parametrize("attribute", [0x0024, 0x802A, 0x8029])  # PRIORITY, ICE-CONTROLLING/ED
def test_an_attribute_running_past_the_datagram_is_a_value_error(attribute: int) -> None:
    # aioice hands its fixed-size decoders whatever is left, and they raised struct.error,
    # which the mux only catches as a last resort (found by tests/fuzz).
    creds = IceCredentials.generate()
    responder: IceLiteResponder[str] = IceLiteResponder()
    responder.add(creds, "leg")
    header = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    value = b"\x00\x00"  # the attribute says 264 bytes; two follow
    body = struct.pack("!HH", attribute, 264) + value
    data = bytes(header)[:2] + struct.pack("!H", len(body)) + bytes(header)[4:20] + body
    with pytest.raises(ValueError):
        responder.handle(data, ADDR)
    initiator = IceInitiator(creds, IceCredentials.generate(), ADDR, now=0.0)
    with pytest.raises(ValueError):
        initiator.handle(data, ADDR, 0.0)
