"""The log filter that truncates client IPs (GDPR data minimisation)."""

from __future__ import annotations

import logging

import pytest

from bench.loopback_node import node_settings
from signaling.log_privacy import TruncateClientIps, own_addresses


@pytest.mark.parametrize(
    "line, logged",
    [
        ("from 192.0.2.17:5000", "from 192.0.2.x:5000"),
        ("a=candidate:1 1 udp 2130706431 198.51.100.4 5000 typ host", "198.51.100.x 5000"),
        ("pair (('203.0.113.9', 1), ('10.0.0.1', 2))", "(('203.0.113.x', 1), ('10.0.0.1', 2))"),
        ("v6 [2001:db8:abcd:12::1]:443", "v6 [2001:db8:abcd::x]:443"),
        ("mapped ::ffff:192.0.2.7", "mapped ::ffff:192.0.2.x"),
        ("at 08:43:22,123 version 1.2.3.4.5", "at 08:43:22,123 version 1.2.3.4.5"),
        ("loopback 127.0.0.1 and ::1, any 0.0.0.0", "loopback 127.0.0.1 and ::1, any 0.0.0.0"),
    ],
)
def test_client_addresses_keep_only_their_network(line: str, logged: str) -> None:
    assert logged in TruncateClientIps(keep=["10.0.0.1"]).scrub(line)


def test_every_record_is_scrubbed_arguments_and_tracebacks_included(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("aioice.test")
    caplog.handler.addFilter(TruncateClientIps())
    with caplog.at_level(logging.DEBUG):
        logger.debug("check %s -> %s", ("192.0.2.50", 4000), "198.51.100.7")
        try:
            raise OSError("unreachable 203.0.113.200")
        except OSError:
            logger.exception("send failed")
    assert "192.0.2.50" not in caplog.text and "192.0.2.x" in caplog.text
    assert "198.51.100.7" not in caplog.text
    assert "203.0.113.200" not in caplog.text and "203.0.113.x" in caplog.text


def test_the_nodes_own_addresses_stay_readable() -> None:
    settings = node_settings(
        http={"host": "0.0.0.0"},
        rtc={"bind": "0.0.0.0", "announce": ["192.0.2.1"]},
        public_url="https://relay.example.eu",
        cluster={"internal_url": "http://10.1.2.3:7880"},
    )
    assert {"192.0.2.1", "10.1.2.3", "relay.example.eu"} <= own_addresses(settings)
