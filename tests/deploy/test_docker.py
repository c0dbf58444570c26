"""The container files: hadolint-clean, consistent with configs/, and the image's exact
entrypoint command run here, outside a container (no Docker engine on this machine)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import aiohttp
import pytest
import yaml

from bench.node_process import LISTENING, parse_listening
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
    assert targets == {"eu-west:7880", "eu-central:7880", "eu-north:7880"}


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
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://{http}/healthz") as resp:
                assert resp.status == 200
            async with session.get(f"http://{http}/readyz") as resp:
                assert resp.status == 200
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0
