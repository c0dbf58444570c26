"""The aiortc adapter: pinned private names, and real DTLS-SRTP handshakes over memory."""

from __future__ import annotations

import asyncio

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from relay.dtls_adapter import (
    DtlsRole,
    DtlsSession,
    RelayCertificate,
    check_aiortc_compat,
    generate_certificate,
    local_fingerprint,
)

pytestmark = pytest.mark.timeout(20)


def test_installed_aiortc_has_what_the_adapter_uses() -> None:
    assert check_aiortc_compat() == []


def _rsa_certificate() -> RelayCertificate:
    from aiortc.rtcdtlstransport import generate_certificate as aiortc_generate

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return RelayCertificate(key=key, cert=aiortc_generate(key))  # type: ignore[arg-type]


async def _pair(
    cert_a: RelayCertificate, role_a: DtlsRole, cert_b: RelayCertificate, role_b: DtlsRole
) -> tuple[DtlsSession, DtlsSession]:
    """Two sessions whose datagrams go straight to each other (a DummyConnection in spirit)."""
    boxes: dict[str, DtlsSession] = {}
    a = DtlsSession(cert_a, lambda d: boxes["b"].feed(d), role_a)
    b = DtlsSession(cert_b, lambda d: boxes["a"].feed(d), role_b)
    boxes.update(a=a, b=b)
    ok_a, ok_b = await asyncio.wait_for(
        asyncio.gather(a.start([local_fingerprint(cert_b)]), b.start([local_fingerprint(cert_a)])),
        10,
    )
    assert ok_a and ok_b
    return a, b


@pytest.mark.parametrize("relay_role", ["server", "client"])
async def test_handshake_in_either_role_yields_working_srtp(relay_role: DtlsRole) -> None:
    peer_role: DtlsRole = "client" if relay_role == "server" else "server"
    relay, peer = await _pair(generate_certificate(), relay_role, generate_certificate(), peer_role)
    rtp = bytes([0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 7]) + b"media"
    assert relay.rx_srtp.unprotect(peer.tx_srtp.protect(rtp)) == rtp
    assert peer.rx_srtp.unprotect(relay.tx_srtp.protect(rtp)) == rtp
    assert relay.handshake_seconds is not None and relay.handshake_seconds < 5
    await relay.close()
    await peer.close()


@pytest.mark.parametrize("relay_role", ["server", "client"])
async def test_rsa_peer_is_accepted(relay_role: DtlsRole) -> None:
    peer_role: DtlsRole = "client" if relay_role == "server" else "server"
    relay, peer = await _pair(generate_certificate(), relay_role, _rsa_certificate(), peer_role)
    assert relay.connected and peer.connected
    await relay.close()
    await peer.close()


async def test_wrong_fingerprint_fails_the_handshake() -> None:
    boxes: dict[str, DtlsSession] = {}
    a = DtlsSession(generate_certificate(), lambda d: boxes["b"].feed(d), "server")
    b = DtlsSession(generate_certificate(), lambda d: boxes["a"].feed(d), "client")
    boxes.update(a=a, b=b)
    closed = asyncio.Event()
    a.on_closed(closed.set)
    wrong = local_fingerprint(generate_certificate())
    results = await asyncio.wait_for(asyncio.gather(a.start([wrong]), b.start([wrong])), 10)
    assert results == [False, False]
    assert closed.is_set()
    await a.close()
    await b.close()
