"""The one module that touches aiortc's private names: DTLS-SRTP and SCTP over our UDP mux.

aiortc's ``RTCDtlsTransport`` does the DTLS handshake and SRTP key export; it only needs
``_recv``, ``_send`` and ``role`` from the ICE transport under it, so a small shim feeds it
DTLS records from the mux. After the handshake the fast path uses the transport's own SRTP
sessions directly, and SCTP (data channels) rides on ``RTCSctpTransport`` as in aiortc.

Pinned to aiortc 1.16 (pyproject); ``tests/relay/test_dtls_adapter.py`` fails loudly when
a new aiortc changes what is used here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Literal

import aiortc
from aiortc import RTCCertificate, RTCDataChannel, RTCSctpTransport
from aiortc.rtcdatachannel import RTCDataChannelParameters
from aiortc.rtcdtlstransport import RTCDtlsFingerprint, RTCDtlsParameters, RTCDtlsTransport
from aiortc.rtcsctptransport import RTCSctpCapabilities
from OpenSSL import SSL

logger = logging.getLogger(__name__)

PINNED_AIORTC = "1.16"
DtlsRole = Literal["server", "client"]

# aiortc offers only ECDSA suites; real clients (FFmpeg, GStreamer) bring RSA certificates
# and may ask us to be the DTLS client, where the server's certificate picks the suite.
_CIPHERS = (
    b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:"
    b"ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305:"
    b"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    b"ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA"
)


class RelayCertificate(RTCCertificate):
    """aiortc's certificate with a cipher list that also accepts RSA peers."""

    def _create_ssl_context(self, srtp_profiles: list[Any]) -> SSL.Context:
        ctx = super()._create_ssl_context(srtp_profiles)
        ctx.set_cipher_list(_CIPHERS)
        return ctx


def generate_certificate() -> RelayCertificate:
    cert: RelayCertificate = RelayCertificate.generateCertificate()
    return cert


def local_fingerprint(certificate: RTCCertificate) -> tuple[str, str]:
    """The sha-256 fingerprint as (algorithm, value) for ``a=fingerprint``."""
    for fp in certificate.getFingerprints():
        if fp.algorithm == "sha-256":
            return fp.algorithm, fp.value
    raise RuntimeError("aiortc certificate has no sha-256 fingerprint")


class _IceShim:
    """Stands in for RTCIceTransport under RTCDtlsTransport."""

    role = "controlled"

    def __init__(self, send: Callable[[bytes], None]) -> None:
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=256)
        self._send_cb = send

    async def _recv(self) -> bytes:
        data = await self._queue.get()
        if data is None:
            raise ConnectionError("transport closed")
        return data

    async def _send(self, data: bytes) -> None:
        self._send_cb(data)

    def feed(self, data: bytes | None) -> None:
        try:
            self._queue.put_nowait(data)
        except asyncio.QueueFull:
            logger.debug("DTLS queue full, record dropped")


class DtlsSession:
    """DTLS-SRTP for one leg; SRTP sessions are exposed for the synchronous fast path."""

    def __init__(
        self, certificate: RTCCertificate, send: Callable[[bytes], None], role: DtlsRole
    ) -> None:
        self._shim = _IceShim(send)
        self._transport = RTCDtlsTransport(self._shim, [certificate])  # type: ignore[arg-type]
        self._transport._set_role(role)
        self.role: DtlsRole = role
        self.handshake_seconds: float | None = None
        self._sctp: RTCSctpTransport | None = None
        self._on_closed: Callable[[], None] | None = None
        self._transport.on("statechange", self._state_changed)

    def set_role(self, role: DtlsRole) -> None:
        """Choose the role before ``start`` (a subscriber's answer decides it)."""
        self.role = role
        self._transport._set_role(role)

    def feed(self, record: bytes) -> None:
        """Queue a DTLS record (first byte 20-63) received from the peer."""
        self._shim.feed(record)

    @property
    def connected(self) -> bool:
        return bool(self._transport.state == "connected")

    @property
    def rx_srtp(self) -> Any:
        return self._transport._rx_srtp

    @property
    def tx_srtp(self) -> Any:
        return self._transport._tx_srtp

    def on_closed(self, callback: Callable[[], None]) -> None:
        """Called once when the peer shuts DTLS down or the handshake fails."""
        self._on_closed = callback

    def _state_changed(self) -> None:
        if self._transport.state in ("closed", "failed") and self._on_closed is not None:
            callback, self._on_closed = self._on_closed, None
            callback()

    async def start(self, fingerprints: list[tuple[str, str]]) -> bool:
        """Run the handshake; True once SRTP keys are ready and the peer's certificate matches."""
        params = RTCDtlsParameters(
            fingerprints=[RTCDtlsFingerprint(algorithm=a, value=v) for a, v in fingerprints],
            role=self.role,
        )
        started = time.perf_counter()
        await self._transport.start(params)
        if not self.connected:
            return False
        self.handshake_seconds = time.perf_counter() - started
        return True

    def open_data_channels(
        self, remote_port: int, max_message_size: int
    ) -> tuple[RTCDataChannel, RTCDataChannel, asyncio.Task[None]]:
        """Start SCTP and the two pre-negotiated channels: id 0 reliable, id 1 lossy."""
        sctp = RTCSctpTransport(self._transport)
        self._sctp = sctp
        reliable = RTCDataChannel(
            sctp, RTCDataChannelParameters(label="_reliable", negotiated=True, id=0)
        )
        lossy = RTCDataChannel(
            sctp,
            RTCDataChannelParameters(
                label="_lossy", negotiated=True, id=1, ordered=False, maxRetransmits=0
            ),
        )
        task = asyncio.ensure_future(
            sctp.start(RTCSctpCapabilities(maxMessageSize=max_message_size), remote_port)
        )
        return reliable, lossy, task

    async def close(self) -> None:
        self._on_closed = None
        if self._sctp is not None:
            try:
                await self._sctp.stop()
            except Exception:  # closing must never fail the caller
                logger.debug("SCTP stop failed", exc_info=True)
        try:
            await self._transport.stop()
        except Exception:
            logger.debug("DTLS stop failed", exc_info=True)
        self._shim.feed(None)


def check_aiortc_compat() -> list[str]:
    """Return the private names this module relies on that the installed aiortc lacks."""
    missing: list[str] = []
    if not aiortc.__version__.startswith(PINNED_AIORTC + "."):
        missing.append(f"aiortc version {aiortc.__version__} (pinned {PINNED_AIORTC})")
    for name in ("_set_role", "_rx_srtp", "_tx_srtp", "_send_data", "_register_data_receiver"):
        if (
            not hasattr(RTCDtlsTransport, name)
            and name not in RTCDtlsTransport.__init__.__code__.co_names
        ):
            missing.append(f"RTCDtlsTransport.{name}")
    if not hasattr(RTCCertificate, "_create_ssl_context"):
        missing.append("RTCCertificate._create_ssl_context")
    return missing
