"""``eurelay serve --workers N`` without a cluster: what it refuses, what each worker is told,
and the supervisor's own behaviour with stand-in workers (tiny scripts, no relay)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.loopback_node import API_KEY, API_SECRET, CLUSTER_SECRET
from signaling import workers
from signaling.cli import build_parser, main
from signaling.settings import ConfigError, Settings, load_settings

from ..helpers import eventually

pytestmark = pytest.mark.timeout(30)
REDIS = "redis://127.0.0.1:1/0"  # never connected to here


def settings(**overrides: object) -> Settings:
    base: dict[str, Any] = {
        "node_id": "paris",
        "keys": {API_KEY: API_SECRET},
        "cluster": {"secret": CLUSTER_SECRET},
        "registry": {"url": REDIS},
    }
    return load_settings(Path(os.devnull), {**base, **overrides})


def test_dev_mode_refuses_more_than_one_worker(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert "registry.url" in err and "--workers 2" in err and "memory://" in err


def test_a_memory_registry_refuses_more_than_one_worker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "node.yaml"
    config.write_text(f"keys: {{{API_KEY}: {API_SECRET}}}\nregistry: {{url: 'memory://'}}\n")
    assert main(["serve", "--config", str(config), "--workers", "3"]) == 2
    assert "registry.url: --workers 3" in capsys.readouterr().err


def test_dev_mode_with_a_redis_registry_still_refuses(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EURELAY_REGISTRY__URL", REDIS)
    monkeypatch.setenv("EURELAY_CLUSTER__SECRET", CLUSTER_SECRET)
    assert main(["serve", "--workers", "2"]) == 2
    assert "--config: --workers 2 needs a config file" in capsys.readouterr().err


def test_workers_flag() -> None:
    parse = build_parser().parse_args
    assert parse(["serve"]).workers == 1
    assert parse(["serve", "--workers", "auto"]).workers == 0
    assert parse(["serve", "--workers", "0"]).workers == 0
    assert workers.resolve_count(0) == workers.available_cpus() >= 1
    assert workers.resolve_count(3) == 3
    for bad in ("-1", "two"):
        with pytest.raises(argparse.ArgumentTypeError):
            workers.parse_count(bad)


def test_each_worker_is_its_own_node_on_its_own_ports() -> None:
    base = settings(
        http={"port": 7880}, rtc={"udp_port": 7882}, public_url="https://relay.example:7880/"
    )
    assert workers.worker_env(base, 1) == {
        "EURELAY_NODE_ID": "paris-w1",
        "EURELAY_HTTP__PORT": "7880",
        "EURELAY_RTC__UDP_PORT": "7882",
        "EURELAY_PUBLIC_URL": "https://relay.example:7880/",
    }
    second = workers.worker_env(base, 2)
    assert second["EURELAY_NODE_ID"] == "paris-w2"
    assert (second["EURELAY_HTTP__PORT"], second["EURELAY_RTC__UDP_PORT"]) == ("7881", "7883")
    assert second["EURELAY_PUBLIC_URL"] == "https://relay.example:7881/"
    assert workers.public_url("http://[2001:db8::1]:8000", 3) == "http://[2001:db8::1]:8002"
    free = workers.worker_env(settings(http={"port": 0}, rtc={"udp_port": 0}), 4)
    assert (free["EURELAY_HTTP__PORT"], free["EURELAY_RTC__UDP_PORT"]) == ("0", "0")
    assert "EURELAY_PUBLIC_URL" not in free
    internal = {"secret": CLUSTER_SECRET, "internal_url": "http://eu-west:7880"}
    inside = workers.worker_env(settings(cluster=internal), 2)
    assert inside["EURELAY_CLUSTER__INTERNAL_URL"] == "http://eu-west:7881"


def test_a_worker_loads_its_own_values_over_the_file_and_the_rest_from_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "node.yaml"
    config.write_text(
        f"node_id: paris\nregion: eu-west\nkeys: {{{API_KEY}: {API_SECRET}}}\n"
        f"cluster: {{secret: {CLUSTER_SECRET}}}\nregistry: {{url: '{REDIS}'}}\n"
        "http: {host: 0.0.0.0, port: 7880}\nrtc: {udp_port: 7882, bind: 0.0.0.0}\n"
        "public_url: http://paris.example:7880\n"
    )
    supervisor = load_settings(config)
    for key, value in workers.worker_env(supervisor, 2).items():
        monkeypatch.setenv(key, value)
    worker = load_settings(config)
    assert (worker.node_id, worker.public_url) == ("paris-w2", "http://paris.example:7881")
    assert (worker.http.host, worker.http.port) == ("0.0.0.0", 7881)
    assert (worker.rtc.bind, worker.rtc.udp_port) == ("0.0.0.0", 7883)
    assert worker.region == "eu-west" and worker.registry.url == REDIS


def test_what_cannot_be_derived_per_worker_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"public_url: .* names no port"):
        workers.check(settings(public_url="https://relay.example"), 2)
    with pytest.raises(ConfigError, match=r"public_url: with --workers and http\.port 0"):
        workers.check(settings(http={"port": 0}, public_url="http://h:7880"), 2)
    with pytest.raises(ConfigError, match=r"rtc.udp_port: 3 workers need ports 65534-65536"):
        workers.check(settings(rtc={"udp_port": 65534}), 3)
    workers.check(settings(public_url="http://h:7880"), 2)


def test_restarts_are_rate_limited() -> None:
    assert workers.restart_delay([], 100.0, 7.0) == 7.0
    recent = [50.0, 60.0, 70.0, 80.0]  # MAX_RESTARTS within the last minute
    assert workers.restart_delay(recent, 100.0, 7.0) == pytest.approx(10.0)
    assert workers.restart_delay(recent, 100.0, 20.0) == 20.0
    assert workers.restart_delay([10.0, *recent[1:]], 100.0, 1.0) == 1.0


# The supervisor with stand-in workers ---------------------------------------------------------

# Prints the listening line, then exits 0 on SIGTERM; exits 3 at once when its marker file
# does not exist yet (creating it: a crash on the first run only), or before listening when
# its environment says so.
STAND_IN = """
import os, signal, sys, time
if os.environ.get("FAIL_EARLY"):
    sys.exit(5)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("eurelay listening http=127.0.0.1:1 udp=1", flush=True)
marker = os.environ.get("CRASH_ONCE")
if marker and not os.path.exists(marker):
    open(marker, "w").close()
    sys.exit(3)
while True:
    time.sleep(0.05)
"""


def stand_ins(count: int, **env: str) -> list[workers.WorkerSpec]:
    argv = [sys.executable, "-c", STAND_IN]
    return [
        workers.WorkerSpec(f"w{i}", argv, {**os.environ, **(env if i == count else {})})
        for i in range(1, count + 1)
    ]


def alive(pid: int) -> bool:
    """Running (a zombie is not: it only waits for its parent to read its exit)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def test_sigterm_reaches_every_worker_and_all_exit_0() -> None:
    lines: list[bytes] = []
    supervisor = workers.Supervisor(stand_ins(2), 0.1, lines.append)
    run = asyncio.ensure_future(supervisor.run())
    await eventually(lambda: any(line.startswith(b"eurelay workers ready") for line in lines))
    pids = supervisor.pids
    assert lines[-1].decode() == f"eurelay workers ready n=2 pids={pids[0]},{pids[1]}\n"
    assert [line for line in lines if b"listening" in line] == lines[:2]
    supervisor.stop()
    assert await asyncio.wait_for(run, 10) == 0
    assert not any(alive(pid) for pid in pids)


async def test_a_worker_that_dies_is_started_again(tmp_path: Path) -> None:
    lines: list[bytes] = []
    specs = stand_ins(2, CRASH_ONCE=str(tmp_path / "crashed"))
    supervisor = workers.Supervisor(specs, 0.2, lines.append)
    run = asyncio.ensure_future(supervisor.run())
    try:
        await eventually(lambda: supervisor.restarted == 1)
        await eventually(lambda: sum(b"listening" in line for line in lines) == 3)
        await eventually(lambda: len(supervisor.pids) == 2)
    finally:
        pids = supervisor.pids
        supervisor.stop()
        # the crash is history: both workers, the second one restarted, exit 0 on SIGTERM
        assert await asyncio.wait_for(run, 10) == 0
    assert not any(alive(pid) for pid in pids)


async def test_a_worker_that_never_listens_stops_the_others() -> None:
    lines: list[bytes] = []
    supervisor = workers.Supervisor(stand_ins(2, FAIL_EARLY="1"), 0.1, lines.append)
    assert await asyncio.wait_for(supervisor.run(), 10) == 1
    assert supervisor.restarted == 0
    assert not any(line.startswith(b"eurelay workers ready") for line in lines)
