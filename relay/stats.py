"""Plain-int counters of one worker. The fast path adds to them; Prometheus reads them at scrape.

Nothing here allocates per packet: histograms are fixed bucket lists found with bisect.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

FORWARD_BUCKETS = (
    5e-6,
    10e-6,
    20e-6,
    50e-6,
    100e-6,
    250e-6,
    500e-6,
    1e-3,
    2.5e-3,
    5e-3,
    7.5e-3,
    10e-3,
    25e-3,
)
HANDSHAKE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

DROP_REASONS = (
    "unknown_source",  # datagram from an address no session latched
    "malformed",  # truncated or unparseable RTP/RTCP/STUN
    "srtp_error",  # authentication or replay check failed
    "not_connected",  # media before DTLS finished
    "unknown_ssrc",  # RTP for no published track
    "unauthorized",  # STUN that failed USERNAME/MESSAGE-INTEGRITY
    "muted",  # the publisher muted the track
    "send_error",
    "padding",  # padding-only packets (bandwidth probes) are not forwarded
    "stun_rate_limited",  # more STUN requests from one IP address than rtc.stun_per_ip allows
    # more SRTP/SRTCP from unlatched addresses of one IP than rtc.moves_per_ip allows
    "move_rate_limited",
    "red_malformed",  # audio RED (RFC 2198) whose block headers or lengths run past the end
)


@dataclass(slots=True)
class Histogram:
    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value


@dataclass(slots=True)
class RelayStats:
    rtp_packets_in: int = 0
    rtp_bytes_in: int = 0
    rtp_packets_out: int = 0
    rtp_bytes_out: int = 0
    rtcp_packets_in: int = 0
    rtcp_packets_out: int = 0
    pli_received: int = 0
    fir_received: int = 0
    keyframe_requests_sent: int = 0
    nack_received: int = 0
    nack_sent: int = 0  # NACK packets sent to publishers
    twcc_feedback_sent: int = 0  # transport-wide congestion control feedback packets
    retransmitted_packets: int = 0  # answered from the packet cache
    # retransmissions sent again a round trip later, no new NACK (aiortc asks only once)
    resends_again: int = 0
    holes_filled: int = 0  # NACKed numbers answered with a filler: the packet was gone
    layer_switches: int = 0  # simulcast layer changes completed at a keyframe
    keyframe_replays: int = 0  # subscribers started at a cached keyframe (no request needed)
    # NACKs for packets gone for good (not those the publisher is still asked to resend)
    nack_unanswerable: int = 0
    data_messages_in: int = 0
    data_messages_out: int = 0
    data_messages_rejected: int = 0
    stun_requests: int = 0
    address_changes: int = 0  # legs moved to a new address (consent check or SRTP from it)
    # moves of a connected leg not made: its new address never consented (``relay.consent``)
    moves_refused: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    forward_seconds: Histogram = field(default_factory=lambda: Histogram(FORWARD_BUCKETS))
    dtls_handshake_seconds: Histogram = field(default_factory=lambda: Histogram(HANDSHAKE_BUCKETS))
