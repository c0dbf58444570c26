"""Client IP addresses never reach a log line in full (GDPR: data minimisation).

A filter on the node's log handler rewrites every record, from every logger (aiortc's and
aioice's debug lines carry ICE candidates), before it is formatted: IPv4 addresses keep
their /24 (``192.0.2.x``), IPv6 their /48 (``2001:db8:1::x``). The node's own addresses
(what it binds and announces) stay readable: they are no one's personal data.

The same filter keeps each record's message on one line: a line break or another control
character in it (a room name, which a client may choose in ``join`` with a token naming no
room) is written escaped (``\\n``), so that no client can forge a log line. Tracebacks
keep their lines.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from .settings import Settings

IPV4 = re.compile(r"(?<![\d.])(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?![\d.]*\d)")
# Anything with two or more colons between hex groups; validated before it is rewritten
# (a time of day such as 08:43:22 is not an address).
IPV6 = re.compile(r"(?<![\w:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:.])")
# What would break a log line or drive a terminal: escaped in messages.
CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


class TruncateClientIps(logging.Filter):
    def __init__(self, keep: Iterable[str] = ()) -> None:
        super().__init__()
        self.keep = {a for a in keep if a}

    def _v4(self, match: re.Match[str]) -> str:
        text = match[0]
        if text in self.keep or any(int(part) > 255 for part in match.groups()):
            return text
        if match[1] in ("127", "0"):  # loopback or unspecified: no one's address
            return text
        return f"{match[1]}.{match[2]}.{match[3]}.x"

    def _v6(self, match: re.Match[str]) -> str:
        text = match[0]
        try:
            address = ipaddress.IPv6Address(text)
        except ValueError:
            return text
        if text in self.keep or address.is_loopback or address.is_unspecified:
            return text
        network = ipaddress.IPv6Network((address, 48), strict=False)
        return f"{network.network_address}x"

    def scrub(self, text: str) -> str:
        return IPV6.sub(self._v6, IPV4.sub(self._v4, text))

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg, record.args = one_line(self.scrub(message)), None
        if record.exc_info:
            record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = self.scrub(record.stack_info)
        return True


def one_line(text: str) -> str:
    """``text`` with its control characters escaped (``\\n``, ``\\x1b``...)."""
    return CONTROL.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), text)


def own_addresses(settings: Settings) -> set[str]:
    """What the node binds and announces: left readable in its logs."""
    urls = (settings.public_url, settings.cluster.internal_url)
    hosts = {urlsplit(url).hostname or "" for url in urls if url}
    return {settings.http.host, settings.rtc.bind, *settings.rtc.announce, *hosts} - {""}


def truncate_client_ips(settings: Settings) -> None:
    """Put the filter on every handler of the root logger (call after configuring it)."""
    privacy = TruncateClientIps(own_addresses(settings))
    for handler in logging.getLogger().handlers:
        handler.addFilter(privacy)
