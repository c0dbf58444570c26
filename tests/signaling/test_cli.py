"""The ``eurelay`` command as operators run it."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from bench.node_process import spawn_node
from signaling.cli import build_parser, main
from signaling.tokens import verify

pytestmark = pytest.mark.timeout(30)
SECRET = "z" * 40
ROOT = Path(__file__).resolve().parents[2]


def test_token_prints_only_the_jwt(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "token",
            "--room",
            "demo",
            "--identity",
            "alice",
            "--publish",
            "--publish-data",
            "--ttl",
            "120",
            "--api-key",
            "k",
            "--api-secret",
            SECRET,
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    claims = verify(out.strip(), {"k": SECRET})
    assert claims.sub == "alice" and claims.grant.room == "demo"
    assert claims.grant.can_publish and claims.grant.can_publish_data
    assert not claims.grant.room_admin
    assert claims.exp - (claims.nbf or 0) == 120


def test_token_from_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "node.yaml"
    config.write_text(f"keys: {{ops: {SECRET}}}\n")
    assert (
        main(["token", "--room", "r", "--identity", "bot", "--admin", "--config", str(config)]) == 0
    )
    claims = verify(capsys.readouterr().out.strip(), {"ops": SECRET})
    assert claims.grant.room_admin


def test_serve_rejects_a_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("rtc: {udp_prot: 1}\n")
    assert main(["serve", "--config", str(config)]) == 2
    assert "rtc.udp_prot" in capsys.readouterr().err


async def test_serve_entrypoint_runs_and_stops_on_sigterm(tmp_path: Path) -> None:
    """The installed console script, as a container runs it."""
    config = tmp_path / "node.yaml"
    config.write_text(f"keys: {{ops: {SECRET}}}\nregion: eu-west\n")
    exe = Path(sys.executable).with_name("eurelay")
    env = {**os.environ, "EURELAY_NODE_ID": "cli-test"}
    async with spawn_node(config, command=[str(exe)], env=env, cwd=tmp_path) as node:
        async with aiohttp.ClientSession() as http, http.get(node.http_url + "/healthz") as resp:
            assert resp.status == 200
            assert json.loads(await resp.text())["status"] == "ok"
        node.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(node.process.wait(), 10) == 0


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).with_name("eurelay")
    assert exe.exists()
    result = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=20)
    assert result.returncode == 0 and "serve" in result.stdout


async def test_dev_token_endpoint_exists_only_in_dev_mode(tmp_path: Path) -> None:
    from aiohttp.test_utils import TestServer

    from signaling.app import create_app
    from signaling.settings import load_settings

    config = tmp_path / "prod.yaml"
    config.write_text(f"keys: {{ops: {SECRET}}}\n")
    free = {"rtc": {"udp_port": 0}}
    for settings, expected in (
        (load_settings(config, free), 404),
        (load_settings(None, free), 200),
    ):
        server = TestServer(create_app(settings), host="127.0.0.1", port=0)
        await server.start_server()
        try:
            async with aiohttp.ClientSession() as http:
                body = {"room": "demo", "identity": "me", "publish": True}
                async with http.post(server.make_url("/dev/token"), json=body) as resp:
                    assert resp.status == expected
                async with http.get(server.make_url("/static/eurelay.js")) as resp:
                    assert resp.status == 200 and "class EurelayClient" in await resp.text()
                async with http.get(server.make_url("/")) as resp:
                    assert "eurelay demo" in await resp.text()
        finally:
            await server.close()


def _token_args(*extra: str) -> list[str]:
    return ["token", "--identity", "ops", "--api-key", "k", "--api-secret", SECRET, *extra]


def test_all_rooms_mints_an_operator_token(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_token_args("--all-rooms")) == 0
    claims = verify(capsys.readouterr().out.strip(), {"k": SECRET})
    assert claims.grant.room == "" and claims.grant.room_admin


async def test_an_all_rooms_token_passes_the_cluster_wide_api(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bench.loopback_node import API_KEY, API_SECRET, running_node

    args = ["token", "--identity", "ops", "--api-key", API_KEY, "--api-secret", API_SECRET]
    assert main([*args, "--all-rooms"]) == 0
    operator = capsys.readouterr().out.strip()
    assert main([*args, "--room", "demo", "--admin"]) == 0
    one_room = capsys.readouterr().out.strip()
    async with running_node() as rn, aiohttp.ClientSession() as http:
        for tok, expected in ((operator, 200), (one_room, 403)):
            headers = {"Authorization": f"Bearer {tok}"}
            async with http.get(rn.http("/v1/rooms"), headers=headers) as resp:
                assert resp.status == expected


def test_all_rooms_and_room_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(_token_args("--all-rooms", "--room", "demo"))
    assert exited.value.code == 2
    assert "not allowed with" in capsys.readouterr().err


def test_a_star_room_is_refused_with_a_pointer_to_all_rooms(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(_token_args("--room", "*", "--admin")) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "--all-rooms" in captured.err


@pytest.mark.parametrize("ttl", ["0", "-5"])
def test_a_ttl_that_is_not_positive_is_refused(
    ttl: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_token_args("--room", "demo", "--ttl", ttl)) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "--ttl must be > 0" in captured.err


def test_a_short_secret_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["token", "--room", "demo", "--identity", "a", "--api-key", "k"]
    assert main([*args, "--api-secret", "short"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "at least 32 characters" in captured.err
    assert main([*args, "--api-secret", "x" * 32]) == 0


def test_token_help_describes_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["token", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for action in sub.choices["token"]._actions:
        assert action.help, f"{action.option_strings} has no help"
    assert "alone it cannot receive others: add --subscribe" in text
    assert "room admin" in text and "admin API" in text
    assert "--all-rooms" in (ROOT / "README.md").read_text()


def test_token_sources_limit_what_may_be_published(capsys: pytest.CaptureFixture[str]) -> None:
    secret = "x" * 32
    args = ["token", "--api-key", "k", "--api-secret", secret, "--room", "r", "--identity", "i"]
    assert main([*args, "--publish", "--sources", "microphone,screen"]) == 0
    grant = verify(capsys.readouterr().out.strip(), {"k": secret}).grant
    assert grant.can_publish_sources == ["microphone", "screen"]
    assert grant.permissions().may_publish("microphone")
    assert not grant.permissions().may_publish("camera")
    with pytest.raises(SystemExit):
        main([*args, "--publish", "--sources", "webcam"])
    assert "unknown source 'webcam'" in capsys.readouterr().err


async def _read_until(stream: asyncio.StreamReader, marker: str) -> list[str]:
    lines: list[str] = []
    while not lines or marker not in lines[-1]:
        line = await asyncio.wait_for(stream.readline(), 20)
        assert line, f"the output ended before {marker!r}: {lines}"
        lines.append(line.decode().rstrip("\n"))
    return lines


async def test_the_dev_mode_hint_works_as_printed(tmp_path: Path) -> None:
    """After `make run` the console says what to type and where to point a browser; both
    work as printed: the token command runs from the same shell and its token can publish,
    subscribe and send data."""
    exe = Path(sys.executable).with_name("eurelay")
    process = await asyncio.create_subprocess_exec(
        str(exe),
        "serve",
        "--http-port",
        "0",
        "--udp-port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        cwd=tmp_path,
    )
    try:
        assert process.stdout is not None
        lines = await _read_until(process.stdout, "in two browser tabs")
        key = next(line.split()[-1] for line in lines if "api key:" in line)
        secret = next(line.split()[-1] for line in lines if "api secret:" in line)
        hint = next(line for line in lines if "mint a token:" in line)
        command = shlex.split(hint.split("mint a token:", 1)[1])
        assert command[0] == str(exe)
        result = subprocess.run(command, capture_output=True, text=True, timeout=20, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        grant = verify(result.stdout.strip(), {key: secret}).grant
        assert grant.can_publish and grant.can_subscribe and grant.can_publish_data
        listening = next(line for line in lines if line.startswith("eurelay listening"))
        http_port = int(listening.split("http=")[1].split()[0].rsplit(":", 1)[1])
        url = lines[-1].split("open ", 1)[1].split()[0]
        assert url == f"http://127.0.0.1:{http_port}/"
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            assert resp.status == 200 and "eurelay demo" in await resp.text()
    finally:
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 10) == 0


def _bound(kind: int) -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_INET, kind)
    sock.bind(("127.0.0.1", 0))
    if kind == socket.SOCK_STREAM:
        sock.listen()
    return sock, int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("busy", "key", "flag"),
    [("http", "http.port", "--http-port"), ("udp", "rtc.udp_port", "--udp-port")],
)
def test_a_port_in_use_is_one_line_naming_the_address_and_the_key(
    busy: str, key: str, flag: str
) -> None:
    tcp, http_port = _bound(socket.SOCK_STREAM)
    udp, udp_port = _bound(socket.SOCK_DGRAM)
    with tcp, udp:
        # the other one is free: close it (a tiny race with other processes is harmless)
        (udp if busy == "http" else tcp).close()
        ports = ["--http-port", str(http_port), "--udp-port", str(udp_port)]
        result = subprocess.run(
            [sys.executable, "-m", "signaling.cli", "serve", "--log-level", "warning", *ports],
            capture_output=True,
            text=True,
            timeout=20,
        )
    port = http_port if busy == "http" else udp_port
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "api secret" not in result.stdout  # no dev key banner for a node that never ran
    (line,) = result.stderr.splitlines()
    assert f"127.0.0.1:{port}" in line and "already in use" in line
    assert key in line and flag in line
