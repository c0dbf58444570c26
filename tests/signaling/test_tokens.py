from __future__ import annotations

import time

import jwt
import pytest

from signaling.tokens import Grant, TokenError, mint, verify

KEYS = {"key": "k" * 40}


def test_round_trip_keeps_identity_and_grant() -> None:
    token = mint("key", KEYS["key"], "alice", Grant(room="r", can_publish=True), ttl=60)
    claims = verify(token, KEYS)
    assert claims.sub == "alice" and claims.iss == "key"
    assert claims.grant.room == "r" and claims.grant.can_publish
    assert not claims.grant.room_admin


@pytest.mark.parametrize(
    "token, code",
    [
        (None, "token_missing"),
        ("a.b.c", "token_malformed"),
        (mint("other", "x" * 40, "a", Grant()), "token_unknown_key"),
        (mint("key", "y" * 40, "a", Grant()), "token_bad_signature"),
        # minted at collection, minutes before the test runs: margins of hours, not seconds
        (mint("key", "k" * 40, "a", Grant(), ttl=10, now=time.time() - 3600), "token_expired"),
        (mint("key", "k" * 40, "a", Grant(), now=time.time() + 3600), "token_not_yet_valid"),
        (
            jwt.encode({"iss": "key", "sub": "a", "exp": 2**40}, "k" * 40, "HS256"),
            "token_malformed",
        ),
        (
            jwt.encode({"iss": "key", "sub": "a", "exp": 2**40, "grant": {}}, "k" * 40, "HS512"),
            "token_malformed",
        ),
    ],
)
def test_each_failure_has_its_code(token: str | None, code: str) -> None:
    with pytest.raises(TokenError) as error:
        verify(token, KEYS)
    assert error.value.code == code
