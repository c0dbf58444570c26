"""SRTP for the per-packet path, with pylibsrtp's per-call overhead cut.

``pylibsrtp.Session.protect`` type-checks, allocates a length cell and goes through two
more Python frames on every call: about 1 µs of a forwarded copy that costs 9 to 10 µs
in all (`python -m bench.fastpath`). ``FastSrtp`` keeps one length cell per session and
calls libsrtp through pylibsrtp's own cffi binding, into the session's own buffer: same
library, same keys, same output. RTCP goes through the session unchanged.

This is the only module using pylibsrtp's private names; the version is pinned in
pyproject.toml and ``check_pylibsrtp_compat`` (run by the tests) says what moved.
"""

from __future__ import annotations

from typing import Any

import pylibsrtp
from pylibsrtp import ERRORS, SRTP_MAX_TRAILER_LEN, Error
from pylibsrtp._binding import ffi, lib

PINNED_PYLIBSRTP = "1.0"


class FastSrtp:
    """A ``pylibsrtp.Session``'s RTP protect/unprotect on the fast path; RTCP delegated."""

    __slots__ = (
        "_buffer",
        "_cdata",
        "_length",
        "_size",
        "_srtp",
        "protect_rtcp",
        "session",
        "unprotect_rtcp",
    )

    def __init__(self, session: Any) -> None:
        self.session = session  # owns the libsrtp context the pointer below refers to
        self.protect_rtcp = session.protect_rtcp
        self.unprotect_rtcp = session.unprotect_rtcp
        self._srtp = session._srtp[0]
        self._cdata = session._cdata
        self._buffer = session._buffer
        self._length = ffi.new("int *")
        self._size = len(session._cdata)

    def protect(self, rtp: bytes) -> bytes:
        size = len(rtp)
        if size > self._size - SRTP_MAX_TRAILER_LEN:
            raise Error("packet is too long")
        buffer = self._buffer
        buffer[0:size] = rtp
        length = self._length
        length[0] = size
        status = lib.srtp_protect(self._srtp, self._cdata, length)
        if status:
            raise Error(ERRORS[status])
        return buffer[0 : length[0]]  # type: ignore[no-any-return]

    # protect and unprotect are written out twice on purpose: one shared helper is the
    # extra Python frame per packet this class exists to avoid.
    def unprotect(self, srtp: bytes) -> bytes:
        size = len(srtp)
        if size > self._size:
            raise Error("packet is too long")
        buffer = self._buffer
        buffer[0:size] = srtp
        length = self._length
        length[0] = size
        status = lib.srtp_unprotect(self._srtp, self._cdata, length)
        if status:
            raise Error(ERRORS[status])
        return buffer[0 : length[0]]  # type: ignore[no-any-return]


def check_pylibsrtp_compat() -> list[str]:
    """The private names this module relies on that the installed pylibsrtp lacks."""
    missing: list[str] = []
    version = getattr(pylibsrtp, "__version__", "unknown")
    if not version.startswith(PINNED_PYLIBSRTP + "."):
        missing.append(f"pylibsrtp version {version} (pinned {PINNED_PYLIBSRTP})")
    for name in ("srtp_protect", "srtp_unprotect"):
        if not hasattr(lib, name):
            missing.append(f"pylibsrtp._binding.lib.{name}")
    init = pylibsrtp.Session.__init__.__code__.co_names
    for name in ("_srtp", "_cdata", "_buffer"):
        if name not in init:
            missing.append(f"pylibsrtp.Session.{name}")
    return missing
