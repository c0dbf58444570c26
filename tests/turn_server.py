"""coturn (Debian's ``turnserver``) for a test: TURN REST credentials (``use-auth-secret``),
UDP and TCP on one port, or TLS alone, relaying to peers on loopback. Started and stopped by
the test."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

from .private_ca import ServerCertificate

RELAY_PORTS = (49160, 49400)  # where coturn's relayed addresses are


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


@contextlib.asynccontextmanager
async def turn_server(
    binary: str,
    listen_ip: str,
    secret: str,
    log: Path,
    certificate: ServerCertificate | None = None,
) -> AsyncIterator[int]:
    """Serve TURN on ``listen_ip``; yields the port. UDP and TCP there, or, with a
    ``certificate``, TLS and nothing else: a client that relays through it used TLS (coturn
    would also take TLS on a plain port, which proves nothing). Relayed addresses are on
    127.0.0.1, where the relay under test listens."""
    port = _free_port(listen_ip)
    if certificate is None:
        listeners = [f"--listening-port={port}", "--no-tls"]
    else:
        listeners = [
            f"--tls-listening-port={port}",
            f"--cert={certificate.certificate}",
            f"--pkey={certificate.key}",
            "--no-udp",
            "--no-tcp",
        ]
    argv = [
        binary,
        "-n",  # no config file: only these flags
        f"--listening-ip={listen_ip}",
        *listeners,
        "--relay-ip=127.0.0.1",
        "--allow-loopback-peers",
        "--use-auth-secret",
        f"--static-auth-secret={secret}",
        "--realm=eurelay.test",
        "--no-dtls",
        "--no-cli",
        f"--min-port={RELAY_PORTS[0]}",
        f"--max-port={RELAY_PORTS[1]}",
        f"--log-file={log}",
        "--simple-log",
        "--verbose",  # a line per allocation, with its TLS version
        f"--pidfile={log.with_suffix('.pid')}",
    ]
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        deadline = asyncio.get_running_loop().time() + 10
        while True:  # listening once a TCP connection is accepted (TLS: before the handshake)
            try:
                _, writer = await asyncio.open_connection(listen_ip, port)
            except OSError:
                if process.returncode is not None:
                    raise RuntimeError(f"turnserver exited: {log.read_text()[-2000:]}") from None
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.05)
                continue
            writer.close()
            break
        yield port
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
                await process.wait()
