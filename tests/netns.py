"""A second host for a test: a network namespace joined to the test's own by a veth pair.

The test (already alone in ``unshare -n``) is 10.77.<n>.1, the namespace 10.77.<n>.2; nothing
else is routed, so the namespace reaches only what listens on 10.77.<n>.1 — not what is bound
to the test's loopback. Needs root (``make test`` runs as root, in CI too).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

_numbers = itertools.count(1)


@dataclass(frozen=True)
class Namespace:
    name: str
    host_ip: str  # the test's side of the veth pair
    peer_ip: str  # the namespace's side

    def command(self, *argv: str) -> list[str]:
        """``argv`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, timeout=10)


@contextlib.contextmanager
def peer_namespace() -> Iterator[Namespace]:
    n = next(_numbers)
    tag = f"{os.getpid() % 100000}x{n}"
    ns = Namespace(f"eurelay-{tag}", f"10.77.{n}.1", f"10.77.{n}.2")
    here, there = f"ev{tag}a", f"ev{tag}b"  # interface names: at most 15 characters
    _ip("netns", "add", ns.name)
    try:
        _ip("link", "add", here, "type", "veth", "peer", "name", there, "netns", ns.name)
        _ip("addr", "add", f"{ns.host_ip}/24", "dev", here)
        _ip("link", "set", here, "up")
        _ip("netns", "exec", ns.name, "ip", "link", "set", "lo", "up")
        _ip("netns", "exec", ns.name, "ip", "addr", "add", f"{ns.peer_ip}/24", "dev", there)
        _ip("netns", "exec", ns.name, "ip", "link", "set", there, "up")
        yield ns
    finally:
        _ip("netns", "del", ns.name)  # takes its end of the pair, and so the pair, with it
