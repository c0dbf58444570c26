"""A short run of ``eurelay bench`` so the tool cannot rot (numbers are not judged here)."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench.run import render

pytestmark = pytest.mark.timeout(90)
EURELAY = Path(sys.executable).with_name("eurelay")


async def test_eurelay_bench_reports_sane_numbers(tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    process = await asyncio.create_subprocess_exec(
        str(EURELAY),
        "bench",
        "--publishers", "2",
        "--subscribers", "3",
        "--duration", "1",
        "--json", str(report),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        stdout, _ = await asyncio.wait_for(process.communicate(), 80)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    assert "| publishers | subscribers |" in stdout.decode()  # the table
    (result,) = json.loads(report.read_text())
    assert result["publishers"] == 2 and result["subscribers"] == 3
    # 2 publishers x (video ~120 + audio 50 packets/s) x 3 subscribers over ~1 s
    assert result["forwarded_packets"] > 500
    assert result["loss_percent"] < 5
    assert 0 < result["cpu_us_per_forwarded_packet"] < 100_000
    assert 0 < result["one_way_latency_p50_ms"] <= result["one_way_latency_p99_ms"] < 1000
    assert 0 < result["join_time_p50_ms"] <= result["join_time_p95_ms"] < 5000
    assert result["join_time_p95_ms"] <= result["join_video_p95_ms"] + 1
    assert result["floor_us_per_packet"] > 0 and result["ratio_to_floor"] > 0
    assert result["receive_floor_us_per_packet"] > 0
    assert result["received_ratio_to_receive_floor"] > 0
    assert result["server_kib_per_subscriber"] >= 0
    assert not math.isnan(result["relay_forward_p99_us"])


def test_bench_runs_without_the_tests_package() -> None:
    """bench ships in the wheel; tests/ does not, so no bench module may import it."""
    check = (
        "import importlib, pkgutil, sys, bench\n"
        "for m in pkgutil.iter_modules(bench.__path__):\n"
        "    importlib.import_module('bench.' + m.name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'tests'))"
    )
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_report_renders() -> None:
    from bench.loadgen import Result

    result = Result(
        subscribers=2, forwarded_packets=100, cpu_us_per_forwarded_packet=10.0,
        relay_forward_p50_us=50.0, relay_forward_p99_us=250.0, one_way_latency_p50_ms=1.0,
        one_way_latency_p99_ms=2.0, loss_percent=0.0, join_time_p50_ms=30.0,
        join_time_p95_ms=40.0, server_cpu_percent=5.0,
    )  # fmt: skip
    text = render([result], 1.0)
    assert "| 1 | 2 | 0 | 100 |" in text and "```json" in text  # publishers, subscribers, idle


def test_fast_path_bench_forwards_every_packet_through_the_real_path() -> None:
    from bench import fastpath

    result = fastpath.measure(3, seconds=0.2, rounds=1)
    assert result.relay_packets == 3 * 6 * len(fastpath.FRAME)  # 6 frames in 0.2 s, to 3
    # every packet the relay path and the floor sent reached the reading process
    assert result.delivered == 1.0
    assert result.relay_us_per_forwarded_packet > 0 and result.floor_us_per_packet > 0
    assert result.relay_us_per_received_packet > 0 and result.receive_floor_us_per_packet > 0
    assert "| 3 |" in fastpath.table([result])


def test_audio_level_bench_times_the_level_read_on_packets_that_carry_one() -> None:
    from bench import audio_level
    from relay.audio_level import read_audio_level

    packet = audio_level.chromium_audio_packet(7, dbov=33)
    assert read_audio_level(packet, audio_level.LEVEL_ID) == 33
    result = audio_level.measure(packets=500, rounds=1)
    assert result.forward_ns_with_level > 0 and result.read_ns_per_packet > 0
    assert "level's cost" in audio_level.render(result, "today")


async def test_a_scenario_the_machine_cannot_hold_is_reported_not_fatal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bench import loadgen
    from bench.run import summary

    async def saturated(subscribers: int, *args: object, **kwargs: object) -> loadgen.Result:
        raise TimeoutError("viewer 317: DTLS handshake timed out")

    monkeypatch.setattr(loadgen, "run_scenario", saturated)
    results = await loadgen.run_all([500], 1, 1.0, concurrency=10)
    assert [r.not_held for r in results] == [
        "a subscriber could not join (TimeoutError: viewer 317: DTLS handshake timed out)"
    ]
    assert loadgen.held(results) == []
    assert "| 1 | 500 | 0 | not held here: a subscriber could not join" in loadgen.table(results)
    assert "500 subscribers: not held on this machine" in summary(results)


async def test_cascade_and_glass_benches_measure_a_bridged_room() -> None:
    """Short runs of bench.cascade and bench.glass (their numbers are not judged here, only
    that what they measure is there: viewers joined on both nodes, frames read back)."""
    from bench import cascade, glass

    from ..helpers import require_binary

    if require_binary("redis-server") is None:
        pytest.skip("redis-server is not installed (make test installs it)")
    async with cascade.nodes_on_redis(2) as nodes:
        spread = await cascade.measure(nodes, 4, 1.0)
    assert spread.joined == 4 and spread.node_viewers == [2, 2], spread
    assert spread.loss_percent < 5 and spread.bridged_latency_p50_ms > 0
    text = cascade.render(
        {
            "one_node": [],
            "two_nodes": [vars(spread)],
            "held_one": 0,
            "held_two": 4,
            "egress_one_node": vars(spread),
            "egress_three_nodes": vars(spread),
        },
        "today",
    )
    assert text.startswith(cascade.HEADING)
    frames = await glass.measure(1.0, warmup=0.5)
    assert frames["direct"]["frames"] > 0 and frames["bridged"]["frames"] > 0
    assert 0 < frames["bridged"]["p50_ms"] < 1000


async def _run_bench(args: list[str], report: Path) -> str:
    process = await asyncio.create_subprocess_exec(
        str(EURELAY), "bench", *args, "--duration", "1", "--json", str(report),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        stdout, _ = await asyncio.wait_for(process.communicate(), 80)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    return stdout.decode()


async def test_rooms_that_all_carry_media_are_measured_step_by_step(tmp_path: Path) -> None:
    """Two steps of 1:1 calls on one server: every member publishes and receives."""
    report = tmp_path / "rooms.json"
    stdout = await _run_bench(["--rooms", "1", "2", "--room-size", "2"], report)
    assert "| rooms | room |" in stdout and "1:1 calls: " in stdout
    rows = json.loads(report.read_text())
    assert [r["rooms"] for r in rows] == [1, 2]
    for row in rows:
        assert row["participants"] == 2 * row["rooms"]
        # each member's ~170 packets/s (video ~120, audio 50) relayed once over ~1 s
        assert row["relayed_packets"] > 250 * row["rooms"]
        assert row["loss_percent"] < 5
        assert row["floor_us_per_relayed_packet"] > 0 and row["ratio_to_floor"] > 0
        assert row["server_cpu_percent_per_room"] > 0


async def test_a_voice_room_relays_audio_only(tmp_path: Path) -> None:
    """Two speakers and a listener, audio only: each speaker's 50 packets/s go to two."""
    report = tmp_path / "voice.json"
    args = ["--rooms", "1", "--room-size", "3", "--speakers", "2", "--audio-only"]
    stdout = await _run_bench(args, report)
    assert "voice rooms (2 speakers, 1 listeners)" in stdout
    (row,) = json.loads(report.read_text())
    assert row["speakers"] == 2 and row["audio_only"]
    assert 100 < row["relayed_packets"] < 2 * 2 * 50 * 2  # audio only: no video copies
    assert row["ratio_to_floor"] > 0


def test_receive_path_pieces_are_timed_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import receive_path

    monkeypatch.setattr(receive_path, "PACKETS", 2000)
    monkeypatch.setattr(receive_path, "ROUNDS", 1)
    pieces = receive_path.measure()
    assert len(pieces) >= 10
    assert all(p.called_ns > 0 and p.written_out_ns > 0 for p in pieces)
    text = receive_path.render(pieces, (50.0, 40.0, 8.0, 5.0), "today")
    assert text.startswith(receive_path.HEADING) and "| cache insert |" in text


def test_red_bench_times_packets_whose_primary_block_is_found() -> None:
    from bench import red
    from relay.red import primary_start

    packet = red.chromium_red_packet(7)
    start = primary_start(packet, len(packet) - 2 * red.OPUS_FRAME - 5)
    assert start == len(packet) - red.OPUS_FRAME  # the benchmark strips what it should
    result = red.measure(packets=500, rounds=1)
    assert result.red_as_is_ns > 0 and result.red_stripped_ns > 0
    assert "RED stripped to Opus" in red.render(result, "today", "here.")


async def test_weak_networks_bench_compares_an_impaired_viewer_with_a_direct_one() -> None:
    """One short run of the 5 % loss scenario: the shape of the result, and numbers that
    make sense (not the targets: those are the bench's to report)."""
    from bench import weak_networks
    from signaling.client import restrict_ice_host_addresses

    restrict_ice_host_addresses(["127.0.0.1"])
    result = await weak_networks.run_scenario(weak_networks.BY_NAME["loss5"], 1, 2.0)
    assert result["scenario"] == "loss5" and result["runs"] == 1
    (run,) = result["per_run"]
    assert run["direct_frames"] > 0 and 0 < run["direct_of_sent"] <= 1
    assert 0 <= run["frames_vs_direct"] <= 1
    assert 0 < run["longest_freeze_s"] <= run["window_s"]
    assert run["join_direct_s"] > 0 and run["join_impaired_s"] > 0
    # the taps saw the proxy's drops and the viewer's arrivals (aiortc's private names hold)
    trace = run["trace"]
    assert trace["packets_dropped"] > 0
    assert trace["repaired"] + trace["never_arrived"] == trace["packets_lost_first_time"]
    assert trace["nack_packets"] > 0
    assert result["met_targets"] in (0, 1)
    text = weak_networks.render([result], "today", "machine")
    assert text.startswith(weak_networks.HEADING) and "| 5 % random loss, 100 ms RTT | 1 |" in text
    assert weak_networks.worst_trace(result).startswith("loss5: worst run froze")


def test_packet_trace_names_what_a_freeze_waited_on() -> None:
    from bench.packet_trace import PacketTrace, rtp_key

    header = bytes([0x80, 96, 0x01, 0x00]) + bytes(4) + (7).to_bytes(4)
    assert rtp_key(header) == (7, 256)
    assert rtp_key(bytes([0x80, 200]) + bytes(10)) is None  # RTCP
    trace = PacketTrace()
    trace.dropped[(7, 256)] = [10.0, 10.2]  # lost, and its resend lost too
    trace.passed[(7, 256)] = 1
    trace.nacked[(7, 256)] = [10.1, 10.8]
    trace.arrived[(7, 256)] = [10.9]
    trace.dropped[(7, 300)] = [5.0]  # never arrived, long before: not this freeze's
    trace.on_arrival((7, 257), rtx_ssrc=8)  # an RTX copy: its stream is 8
    trace.dropped[(8, 40)] = [10.3]  # another RTX copy, dropped: a resend, not a packet
    frames = [9.0 + i / 10 for i in range(1, 10)] + [10.95]  # 9.1 .. 9.9, then 10.95
    (freeze,) = trace.freezes(frames, 9.0, 11.0)
    assert abs(freeze.seconds - 1.05) < 1e-9 and [m.seq for m in freeze.missing] == [256]
    assert trace.counts()["resends_seen_by_proxy"] == 2
    assert trace.counts()["resends_dropped"] == 2 and trace.counts()["never_arrived"] == 1
    assert trace.counts()["packets_lost_first_time"] == 2
    # a stall to the window's end: what it waited on was dropped at its start, 4 s before
    trace.dropped[(7, 400)] = [20.05]
    (stall,) = trace.freezes([19.9, 20.0], 19.9, 24.0)
    assert [m.seq for m in stall.missing] == [400] and stall.missing[0].arrived_at is None


def test_make_bench_keeps_the_sections_it_does_not_write(tmp_path: Path) -> None:
    from bench.doc_sections import write_keeping_sections

    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text(
        "# Benchmarks\n\n## Forwarding (2026-01-01)\nold\n\n## Audio level (2026-01-02)\nkept\n"
    )
    write_keeping_sections(doc, "# Benchmarks\n\n## Forwarding (2026-11-30)\nnew\n")
    assert doc.read_text() == (
        "# Benchmarks\n\n## Forwarding (2026-11-30)\nnew\n\n## Audio level (2026-01-02)\nkept\n"
    )
