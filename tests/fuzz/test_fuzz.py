"""The fuzz targets, briefly: every seed as it is, every kept regression case, then a
derandomized hypothesis run per target (about a minute for all of them on a laptop-class
machine). ``make fuzz`` runs the same targets coverage-guided for as long as asked.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings

from . import strategies
from .targets import TARGETS, open_target, regressions, saving, seeds

# Examples per target in ``make test``: what fits the minute (the networked targets pay a
# loopback request or two per example).
EXAMPLES = {
    "stun": 300,
    "rtp": 250,
    "rtcp": 200,
    "sdp": 400,
    "ws_parse": 400,
    "token": 300,
    "data": 300,
    "ws": 100,
    "whip": 120,
    "whep": 120,
    "trickle": 150,
}
DEADLINE = {True: timedelta(seconds=10), False: timedelta(seconds=3)}  # networked or not


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz_target(name: str) -> None:
    with open_target(name) as raw:
        check = saving(name, raw)
        for seed in seeds(name):
            check(seed)
        for case in regressions(name):
            check(case.read_bytes())

        @settings(
            max_examples=EXAMPLES[name],
            deadline=DEADLINE[TARGETS[name].networked],
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(strategies.for_target(name))
        def fuzz(data: bytes) -> None:
            check(data)

        fuzz()
