"""A client-chosen name cannot forge a log line (found by the attack re-run,
docs/SECURITY.md): a token that names no room lets its holder name the room in ``join``,
and the relay logs that name (``participant ... left room ...``)."""

from __future__ import annotations

import io
import logging

from signaling.log_privacy import TruncateClientIps

FORGED = "2026-01-01 00:00:00,000 ERROR eurelay forged"


def _written(message: str, *args: object, exc: BaseException | None = None) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(TruncateClientIps())
    logger = logging.getLogger("tests.security.injection")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        if exc is None:
            logger.warning(message, *args)
        else:
            try:
                raise exc
            except type(exc):
                logger.exception(message, *args)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_a_line_break_in_a_logged_name_is_escaped() -> None:
    room = f"lobby\n{FORGED}\r\x1b[2J"
    written = _written("participant %s left room %s (%s)", "PA_1", room, "left")
    assert written.count("\n") == 1  # the record's own end of line
    assert not any(line.startswith(FORGED) for line in written.splitlines())
    assert "lobby\\n2026-01-01" in written and "\\x1b[2J" in written


def test_a_traceback_keeps_its_lines() -> None:
    written = _written("room %s failed", "lobby", exc=ValueError("boom"))
    assert written.splitlines()[0] == "ERROR room lobby failed"
    assert "Traceback (most recent call last):" in written.splitlines()[1]
