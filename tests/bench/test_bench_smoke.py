"""A short run of the benchmark so the tool cannot rot (numbers are not judged here)."""

from __future__ import annotations

import math

import pytest

from bench.run import render, run_scenario

pytestmark = pytest.mark.timeout(60)


async def test_bench_scenario_reports_sane_numbers() -> None:
    result = await run_scenario(subscribers=2, duration=1.0)
    assert result.forwarded_packets > 50
    assert result.loss_percent < 5
    assert 0 < result.cpu_us_per_forwarded_packet < 100_000
    assert 0 < result.one_way_latency_p50_ms <= result.one_way_latency_p99_ms < 1000
    assert 0 < result.join_time_p50_ms < 5000
    assert not math.isnan(result.relay_forward_p99_us)
    text = render([result], 1.0)
    assert "| 2 |" in text and "```json" in text
