"""FastSrtp: the same packets as pylibsrtp's Session, the same errors, fewer Python calls."""

from __future__ import annotations

import os
import struct

import pylibsrtp
import pytest
from pylibsrtp import Policy, Session

from relay.srtp_fast import FastSrtp, check_pylibsrtp_compat

CM = Policy.SRTP_PROFILE_AES128_CM_SHA1_80
GCM = Policy.SRTP_PROFILE_AEAD_AES_256_GCM  # what aiortc peers negotiate
KEYS = {CM: os.urandom(30), GCM: os.urandom(44)}  # key and salt
TAG = {CM: 10, GCM: 16}


def _session(inbound: bool, profile: int = CM) -> Session:
    policy = Policy(
        key=KEYS[profile],
        ssrc_type=Policy.SSRC_ANY_INBOUND if inbound else Policy.SSRC_ANY_OUTBOUND,
        srtp_profile=profile,
    )
    return Session(policy)


def _rtp(seq: int, size: int = 1100) -> bytes:
    return struct.pack("!BBHII", 0x80, 96, seq, seq * 3000, 0x1234) + bytes(size - 12)


def test_the_pylibsrtp_internals_it_uses_are_there() -> None:
    assert check_pylibsrtp_compat() == []


@pytest.mark.parametrize("profile", [CM, GCM])
def test_protect_matches_pylibsrtp_and_unprotect_reverses_it(profile: int) -> None:
    plain, fast = _session(False, profile), FastSrtp(_session(False, profile))
    receiver = FastSrtp(_session(True, profile))
    for seq in range(5):
        packet = _rtp(seq, 200 + 100 * seq)
        protected = fast.protect(packet)
        assert protected == plain.protect(packet)  # same keys, same bytes on the wire
        assert len(protected) == len(packet) + TAG[profile]
        assert receiver.unprotect(protected) == packet


def test_errors_are_pylibsrtp_errors_and_leave_the_session_usable() -> None:
    sender, receiver = FastSrtp(_session(False)), FastSrtp(_session(True))
    good = sender.protect(_rtp(1))
    tampered = good[:-1] + bytes([good[-1] ^ 1])
    with pytest.raises(pylibsrtp.Error, match="authentication"):
        receiver.unprotect(tampered)
    assert receiver.unprotect(good) == _rtp(1)
    with pytest.raises(pylibsrtp.Error, match="replay"):
        receiver.unprotect(good)  # the same packet again
    with pytest.raises(pylibsrtp.Error, match="too long"):
        sender.protect(bytes(1500))
    with pytest.raises(pylibsrtp.Error, match="too long"):
        receiver.unprotect(bytes(1501))
    assert receiver.unprotect(sender.protect(_rtp(2))) == _rtp(2)


def test_rtcp_goes_through_the_session() -> None:
    sender, receiver = FastSrtp(_session(False)), FastSrtp(_session(True))
    report = struct.pack("!BBHI", 0x80, 201, 1, 0x1234)  # an empty receiver report
    assert receiver.unprotect_rtcp(sender.protect_rtcp(report)) == report
