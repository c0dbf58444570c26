"""Token checks at join (issue 2 test 6): each refusal has its own code and leaves no state."""

from __future__ import annotations

import time

import pytest
from aiortc.mediastreams import VideoStreamTrack

from bench.loopback_node import RunningNode, token
from signaling.client import ClientError

pytestmark = pytest.mark.timeout(30)

REFUSED = [
    ("missing", "", "token_missing"),
    ("not a jwt", "not-a-jwt", "token_malformed"),
    ("expired", token("r", "eve", ttl=60, now=time.time() - 3600), "token_expired"),
    ("not yet valid", token("r", "eve", now=time.time() + 3600), "token_not_yet_valid"),
    (
        "wrongly signed",
        token("r", "eve", secret="another-secret-that-is-long-enough-000"),
        "token_bad_signature",
    ),
    ("unknown key", token("r", "eve", key="who-is-this"), "token_unknown_key"),
]


@pytest.mark.parametrize(("case", "tok", "code"), REFUSED, ids=[c[0] for c in REFUSED])
async def test_bad_tokens_are_refused(
    relay_node: RunningNode, case: str, tok: str, code: str
) -> None:
    client = relay_node.client(tok, room="r")
    with pytest.raises(ClientError) as refused:
        await client.connect()
    assert refused.value.code == code
    assert relay_node.worker.rooms == {}
    assert relay_node.node.sessions == {}


async def test_token_for_another_room_is_refused(relay_node: RunningNode) -> None:
    client = relay_node.client(token("lobby", "eve"), room="vip")
    with pytest.raises(ClientError) as refused:
        await client.connect()
    assert refused.value.code == "token_wrong_room"
    assert relay_node.worker.rooms == {}


async def test_subscribe_only_token_cannot_publish(relay_node: RunningNode) -> None:
    viewer = await relay_node.join("show", "viewer", publish=False)
    with pytest.raises(ClientError) as refused:
        await viewer.publish(VideoStreamTrack())
    assert refused.value.code == "permission_denied"
    room = relay_node.worker.rooms["show"]
    assert room.tracks() == []
    assert room.by_identity("viewer") is not None  # refused the action, not the session
