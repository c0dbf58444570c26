"""The ICE initiator without the network: what its checks carry, which answers count, when
it checks and when it gives up. The clock is passed in, so no test waits."""

from __future__ import annotations

import pytest
from aioice import stun
from aioice.utils import random_transaction_id

from relay.ice_initiator import PEER_REFLEXIVE_PRIORITY, CheckSchedule, IceInitiator
from relay.ice_lite import IceCredentials, IceLiteResponder

pytestmark = pytest.mark.timeout(10)

REMOTE_ADDR = ("127.0.0.1", 40000)
OTHER_ADDR = ("127.0.0.1", 40001)
LOCAL = IceCredentials.generate()
REMOTE = IceCredentials.generate()


def _initiator(schedule: CheckSchedule | None = None) -> IceInitiator:
    return IceInitiator(LOCAL, REMOTE, REMOTE_ADDR, now=0.0, schedule=schedule)


def _answer(
    request: bytes, pwd: str = REMOTE.pwd, message_class: stun.Class = stun.Class.RESPONSE
) -> bytes:
    transaction_id = stun.parse_message(request).transaction_id
    answer = stun.Message(stun.Method.BINDING, message_class, transaction_id)
    if message_class == stun.Class.ERROR:
        answer.attributes["ERROR-CODE"] = (401, "Unauthorized")
        answer.add_fingerprint()  # an error answer cannot be signed
    else:
        answer.attributes["XOR-MAPPED-ADDRESS"] = OTHER_ADDR
        answer.add_message_integrity(pwd.encode())
    return bytes(answer)


def test_a_check_carries_what_rfc_8445_asks_of_the_controlling_agent() -> None:
    initiator = _initiator()
    request = initiator.poll(0.0)
    assert request is not None
    message = stun.parse_message(request)  # also verifies FINGERPRINT
    assert message.message_class == stun.Class.REQUEST
    assert message.message_method == stun.Method.BINDING
    assert message.attributes["USERNAME"] == f"{REMOTE.ufrag}:{LOCAL.ufrag}"
    assert message.attributes["PRIORITY"] == PEER_REFLEXIVE_PRIORITY
    assert isinstance(message.attributes["ICE-CONTROLLING"], int)
    assert "USE-CANDIDATE" in message.attributes
    assert "FINGERPRINT" in message.attributes
    assert message.check_message_integrity(REMOTE.pwd.encode())
    assert not message.check_message_integrity(LOCAL.pwd.encode())


def test_the_existing_responder_answers_a_check_and_the_answer_connects() -> None:
    responder: IceLiteResponder[str] = IceLiteResponder()
    responder.add(REMOTE, "origin leg")
    initiator = _initiator()
    request = initiator.poll(0.0)
    assert request is not None
    response, owner = responder.handle(request, OTHER_ADDR)
    assert owner == "origin leg" and response is not None
    assert initiator.handle(response, REMOTE_ADDR, 0.01)
    assert initiator.state == "connected"


def test_checks_are_retransmitted_on_a_doubling_schedule_until_answered() -> None:
    initiator = _initiator()
    sent: list[float] = []
    ids: set[bytes] = set()
    for ms in range(2000):
        request = initiator.poll(ms / 1000)
        if request is not None:
            sent.append(ms / 1000)
            ids.add(stun.parse_message(request).transaction_id)
    assert sent == pytest.approx([0.0, 0.05, 0.15, 0.35, 0.75, 1.25, 1.75], abs=0.0015)
    assert len(ids) == len(sent)  # each check a new transaction
    assert initiator.state == "checking"


@pytest.mark.parametrize(
    "case", ["other address", "unknown transaction", "wrong password", "error answer"]
)
def test_answers_that_do_not_authenticate_a_check_are_ignored(case: str) -> None:
    initiator = _initiator()
    request = initiator.poll(0.0)
    assert request is not None
    data, addr = _answer(request), REMOTE_ADDR
    if case == "other address":
        addr = OTHER_ADDR
    elif case == "unknown transaction":
        stranger = stun.Message(stun.Method.BINDING, stun.Class.REQUEST, random_transaction_id())
        data = _answer(bytes(stranger))
    elif case == "wrong password":
        data = _answer(request, pwd=IceCredentials.generate().pwd)
    else:
        data = _answer(request, message_class=stun.Class.ERROR)
    assert not initiator.handle(data, addr, 0.01)
    assert initiator.state == "checking"
    assert initiator.last_error == (401 if case == "error answer" else None)
    # The check stays answerable: the real answer still connects.
    assert initiator.handle(_answer(request), REMOTE_ADDR, 0.02)


def test_a_late_answer_to_an_earlier_check_counts() -> None:
    initiator = _initiator()
    first = initiator.poll(0.0)
    assert first is not None and initiator.poll(0.05) is not None
    assert initiator.handle(_answer(first), REMOTE_ADDR, 0.06)


def test_an_answer_counts_once() -> None:
    initiator = _initiator()
    request = initiator.poll(0.0)
    assert request is not None
    assert initiator.handle(_answer(request), REMOTE_ADDR, 0.01)
    assert not initiator.handle(_answer(request), REMOTE_ADDR, 0.02)  # a replay


def test_unanswered_checks_fail_at_the_bound_and_stop() -> None:
    initiator = _initiator(CheckSchedule(connect_timeout=1.0))
    request = initiator.poll(0.0)
    assert request is not None
    initiator.poll(0.999)
    assert initiator.state == "checking"
    assert initiator.poll(1.0) is None and initiator.failed
    assert initiator.poll(5.0) is None
    assert not initiator.handle(_answer(request), REMOTE_ADDR, 1.1)  # too late


def test_once_answered_consent_checks_every_five_seconds_without_nominating() -> None:
    initiator = _initiator()
    request = initiator.poll(0.0)
    assert request is not None and initiator.handle(_answer(request), REMOTE_ADDR, 1.0)
    assert 1.0 + 4.0 <= initiator.next_check <= 1.0 + 6.0
    assert initiator.poll(4.9) is None  # nothing due before the interval
    consent = initiator.poll(initiator.next_check)
    assert consent is not None
    assert "USE-CANDIDATE" not in stun.parse_message(consent).attributes
    assert initiator.state == "connected"


def test_consent_is_lost_after_thirty_seconds_without_an_answer() -> None:
    initiator = _initiator()
    request = initiator.poll(0.0)
    assert request is not None and initiator.handle(_answer(request), REMOTE_ADDR, 1.0)
    for tenths in range(10, 310):  # consent checks go out until 30.9 s, nobody answers
        initiator.poll(tenths / 10)
    assert initiator.state == "connected"
    initiator.poll(31.0)
    assert initiator.failed


def test_answers_extend_consent() -> None:
    initiator = _initiator()
    request = initiator.poll(0.0)
    assert request is not None and initiator.handle(_answer(request), REMOTE_ADDR, 1.0)
    consent = initiator.poll(initiator.next_check)
    assert consent is not None and initiator.handle(_answer(consent), REMOTE_ADDR, 20.0)
    initiator.poll(31.0)
    assert initiator.state == "connected"


def test_garbage_raises_value_error() -> None:
    with pytest.raises(ValueError):
        _initiator().handle(b"\x01\x01\x00", REMOTE_ADDR, 0.0)
