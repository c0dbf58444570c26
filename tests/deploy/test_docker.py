"""The container files: hadolint-clean, consistent with configs/, and the image's exact
entrypoint command run here, outside a container (no Docker engine on this machine)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import yaml

from bench.node_process import LISTENING, parse_listening
from signaling import workers
from signaling.settings import load_settings

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
KEYS = json.dumps({"ops": "o" * 40})


def _instruction(name: str) -> list[str]:
    lines = [line for line in DOCKERFILE.read_text().splitlines() if line.startswith(name + " ")]
    value: list[str] = json.loads(lines[-1][len(name) + 1 :])
    return value


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_shape() -> None:
    text = DOCKERFILE.read_text()
    assert text.count("FROM ") == 2  # multi-stage
    assert "USER 10001" in text and "HEALTHCHECK" in text and "7882/udp" in text


def test_dockerfile_builds_on_any_debian_python() -> None:
    """Both stages on one BASE (the official image by default, Debian's own where no registry
    is reachable), and Python called as python3: Debian has no ``python``."""
    lines = DOCKERFILE.read_text().splitlines()
    assert "ARG BASE=python:3.11-slim-bookworm" in lines
    froms = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert froms == ["${BASE}", "${BASE}"]
    commands = [line for line in lines if not line.lstrip().startswith(("#", "ARG "))]
    # a bare `python` (a venv's bin/python is fine)
    assert not [line for line in commands if re.search(r"(?<![/\w])python(?!3)\b", line)]


def test_default_config_listens_on_every_interface(monkeypatch: pytest.MonkeyPatch) -> None:
    """`docker run -p 7880:7880 -p 7882:7882/udp` reaches the image's default node: its config
    binds HTTP and media on all interfaces (a 127.0.0.1 bind would pass the healthcheck,
    which runs inside, and refuse everyone else). tests/deploy/test_container.py runs it."""
    config = _instruction("CMD")[1].replace("/etc/eurelay", str(ROOT / "configs"))
    assert "keys" not in yaml.safe_load(Path(config).read_text())  # secrets from the env
    monkeypatch.setenv("EURELAY_KEYS", KEYS)
    settings = load_settings(config)
    assert settings.http.host == settings.rtc.bind == "0.0.0.0"
    assert (settings.http.port, settings.rtc.udp_port) == (7880, 7882)  # as EXPOSEd
    assert settings.registry.url == "memory://"  # a node on its own, no Redis to reach


def test_image_copies_every_packaged_package() -> None:
    """`pip install .` in the build stage fails on a package listed but not copied."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    lines = DOCKERFILE.read_text().splitlines()
    copied = {line.split()[1] for line in lines if line.startswith("COPY ")}
    assert set(setuptools["packages"]) <= copied


def test_compose_services_use_shipped_configs(monkeypatch: pytest.MonkeyPatch) -> None:
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"redis", "prometheus", "eu-west", "eu-central", "eu-north"} <= set(services)
    monkeypatch.setenv("EURELAY_KEYS", KEYS)
    monkeypatch.setenv("EURELAY_CLUSTER__SECRET", "s" * 32)
    for name in ("eu-west", "eu-central", "eu-north"):
        assert "EURELAY_CLUSTER__SECRET" in services[name]["environment"]
        # nodes call each other on the compose network, not at the host's localhost
        internal = services[name]["environment"]["EURELAY_CLUSTER__INTERNAL_URL"]
        assert internal == f"http://{name}:7880"
    regions = set()
    for name in ("eu-west", "eu-central", "eu-north"):
        config = services[name]["command"][1].replace("/etc/eurelay", str(ROOT / "configs"))
        settings = load_settings(config)
        assert settings.registry.url == "redis://redis:6379/0"
        regions.add(settings.region)
    assert regions == {"eu-west", "eu-central", "eu-north"}
    scrape = yaml.safe_load((ROOT / "docker" / "prometheus.yml").read_text())
    targets = {
        t for job in scrape["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    }
    # every worker of every relay is scraped: eu-west runs two (--workers 2)
    assert targets == {
        f"{name}:{7880 + i}"
        for name in ("eu-west", "eu-central", "eu-north")
        for i in range(_workers(services[name]))
    }
    assert _workers(services["eu-west"]) == 2


def _workers(service: dict[str, Any]) -> int:
    command: list[str] = service["command"]
    return int(command[command.index("--workers") + 1]) if "--workers" in command else 1


def _published(mapping: str) -> tuple[range, range, str]:
    """``"7880-7881:7880-7881/tcp"``: host ports, container ports, protocol."""
    ports, protocol = mapping.split("/")
    host, container = (
        range(int(a), int(b or a) + 1)
        for a, _, b in (side.partition("-") for side in ports.split(":"))
    )
    return host, container, protocol


def test_compose_publishes_every_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each worker's HTTP and UDP ports are published, and its public URL is one of them."""
    services = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())["services"]
    monkeypatch.setenv("EURELAY_KEYS", KEYS)
    monkeypatch.setenv("EURELAY_CLUSTER__SECRET", "s" * 32)
    for name in ("eu-west", "eu-central", "eu-north"):
        service = services[name]
        count = _workers(service)
        config = service["command"][1].replace("/etc/eurelay", str(ROOT / "configs"))
        with pytest.MonkeyPatch.context() as env:  # the service's own variables, literal ones
            for key, value in service["environment"].items():
                if not value.startswith("${"):
                    env.setenv(key, value)
            settings = load_settings(config)
        workers.check(settings, count)
        published = [_published(m) for m in service["ports"]]
        tcp = next((h, c) for h, c, proto in published if proto == "tcp")
        udp = next((h, c) for h, c, proto in published if proto == "udp")
        assert list(tcp[1]) == [settings.http.port + i for i in range(count)], name
        assert list(udp[1]) == [settings.rtc.udp_port + i for i in range(count)], name
        assert len(tcp[0]) == len(udp[0]) == count, name
        for i in range(1, count + 1):
            port = urlsplit(workers.worker_env(settings, i)["EURELAY_PUBLIC_URL"]).port
            assert port == tcp[0][i - 1], (name, i)


async def test_image_entrypoint_runs_outside_a_container() -> None:
    """ENTRYPOINT + CMD exactly, /etc/eurelay mapped to configs/, ports from the env."""
    command = [
        arg.replace("/etc/eurelay", str(ROOT / "configs"))
        for arg in _instruction("ENTRYPOINT") + _instruction("CMD")
    ]
    exe = shutil.which(command[0], path=str(Path(sys.executable).parent))
    assert exe is not None
    env = {
        **os.environ,
        "EURELAY_KEYS": KEYS,
        "EURELAY_HTTP__PORT": "0",
        "EURELAY_RTC__UDP_PORT": "0",
    }
    proc = await asyncio.create_subprocess_exec(
        exe, *command[1:], env=env, stdout=asyncio.subprocess.PIPE, cwd="/"
    )
    try:
        assert proc.stdout is not None
        line = b""
        while LISTENING not in line:
            line = await asyncio.wait_for(proc.stdout.readline(), 20)
            assert line, "the entrypoint exited"
        http, _ = parse_listening(line)
        http = http.replace("0.0.0.0", "127.0.0.1")  # bound to every interface
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://{http}/healthz") as resp:
                assert resp.status == 200
            async with session.get(f"http://{http}/readyz") as resp:
                assert resp.status == 200
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0
