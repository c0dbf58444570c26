"""Prometheus exposition of a node, read from the relay's plain-int counters at scrape time.

Names follow ``eurelay_<subsystem>_<name>_<unit>``; labels never carry identities, IPs or
room names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from relay.control import BridgeReport, RelayControl
from relay.stats import Histogram


def _histogram(name: str, doc: str, hist: Histogram) -> HistogramMetricFamily:
    buckets: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip(hist.bounds, hist.counts, strict=False):
        running += count
        buckets.append((repr(bound), running))
    running += hist.counts[-1]
    buckets.append(("+Inf", running))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=hist.total)


# Plain counters: (metric name without _total, help, RelayStats attribute).
COUNTERS = (
    ("eurelay_relay_rtp_received_packets", "RTP packets from publishers.", "rtp_packets_in"),
    ("eurelay_relay_rtp_received_bytes", "SRTP bytes from publishers.", "rtp_bytes_in"),
    ("eurelay_relay_rtp_sent_packets", "RTP packets to subscribers.", "rtp_packets_out"),
    ("eurelay_relay_rtp_sent_bytes", "SRTP bytes to subscribers.", "rtp_bytes_out"),
    ("eurelay_relay_rtcp_received_packets", "RTCP compound packets received.", "rtcp_packets_in"),
    ("eurelay_relay_rtcp_sent_packets", "RTCP compound packets sent.", "rtcp_packets_out"),
    (
        "eurelay_relay_keyframe_requests_sent",
        "Keyframe requests sent upstream.",
        "keyframe_requests_sent",
    ),
    ("eurelay_relay_nack_received", "NACK packets received from subscribers.", "nack_received"),
    ("eurelay_relay_stun_requests", "STUN binding requests handled.", "stun_requests"),
    (
        "eurelay_relay_address_changes",
        "Sessions' media legs moved to a new client address (NAT rebinding, handover).",
        "address_changes",
    ),
    (
        "eurelay_relay_moves_refused",
        "Moves of a connected leg to a new address not made: the address did not answer the "
        "relay's consent check, or the leg was checking another address.",
        "moves_refused",
    ),
    ("eurelay_relay_nack_sent", "NACK packets sent to publishers.", "nack_sent"),
    (
        "eurelay_relay_twcc_feedback_sent",
        "Transport-wide congestion control feedback packets sent to publishers.",
        "twcc_feedback_sent",
    ),
    (
        "eurelay_relay_retransmitted_packets",
        "Packets resent from the cache to subscribers.",
        "retransmitted_packets",
    ),
    (
        "eurelay_relay_resends_again",
        "Resent packets sent once more a round trip later, without a new NACK.",
        "resends_again",
    ),
    (
        "eurelay_relay_nack_unanswerable",
        "NACKs asking for packets that were gone (answered with fillers).",
        "nack_unanswerable",
    ),
    (
        "eurelay_relay_holes_filled",
        "Filler packets sent for NACKed packets that were gone, so receivers move on.",
        "holes_filled",
    ),
    (
        "eurelay_relay_layer_switches",
        "Simulcast layer switches completed (at a keyframe of the new layer).",
        "layer_switches",
    ),
    (
        "eurelay_relay_keyframe_replays",
        "Subscribers started at the track's latest keyframe from the packet cache.",
        "keyframe_replays",
    ),
)


# The control plane's counters: (metric name without _total, help, key in its snapshot).
CONTROL_COUNTERS = (
    (
        "eurelay_signaling_slow_consumers",
        "/v1/rtc sessions cut off for not reading their events.",
        "slow_consumers",
    ),
    (
        "eurelay_signaling_joins_rate_limited",
        "Session starts refused (429) for coming too often from one client address.",
        "joins_rate_limited",
    ),
    (
        "eurelay_signaling_sessions_resumed",
        "/v1/rtc sessions taken over by a new WebSocket after theirs dropped (resume).",
        "sessions_resumed",
    ),
    (
        "eurelay_signaling_resumes_refused",
        "Resumes refused (resume_failed): the session had ended, is on another node, or "
        "the resume token did not match.",
        "resumes_refused",
    ),
    (
        "eurelay_cluster_bridges_refused",
        "Bridges the rooms' residency policy kept closed.",
        "bridges_refused",
    ),
    (
        "eurelay_cluster_bridge_failures",
        "Bridge openings that failed (each is tried again).",
        "bridge_failures",
    ),
    (
        "eurelay_cluster_registry_timeouts",
        "Registry calls that timed out.",
        "registry_timeouts",
    ),
    (
        "eurelay_cluster_data_dropped",
        "Data messages for other nodes lost: the peer's queue was full or it did not answer.",
        "data_dropped",
    ),
    (
        "eurelay_cluster_events_dropped",
        "Messages on a room's event channel that were not valid events.",
        "events_dropped",
    ),
)
Counters = Callable[[], Mapping[str, int]]


class RelayCollector(Collector):
    def __init__(
        self,
        relay: RelayControl,
        connections: dict[str, object],
        counters: Counters = dict,
    ) -> None:
        self.relay = relay
        self.connections = connections
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        relay = self.relay
        s = relay.stats
        rooms = len(relay.rooms())
        yield GaugeMetricFamily("eurelay_relay_rooms", "Rooms on this node.", value=rooms)
        yield GaugeMetricFamily(
            "eurelay_relay_participants",
            "Participants on this node.",
            value=relay.participant_count,
        )
        tracks = GaugeMetricFamily("eurelay_relay_tracks", "Published tracks.", labels=["kind"])
        for kind, value in relay.track_kinds().items():
            tracks.add_metric([kind], value)
        yield tracks
        yield GaugeMetricFamily(
            "eurelay_signaling_connections", "Open /v1/rtc sessions.", value=len(self.connections)
        )
        control = self.counters()
        for name, doc, key in CONTROL_COUNTERS:
            yield CounterMetricFamily(name, doc, value=control.get(key, 0))
        bridges = GaugeMetricFamily(
            "eurelay_relay_bridges", "Open bridges to other workers.", labels=["direction"]
        )
        streams = GaugeMetricFamily(
            "eurelay_relay_bridge_streams", "RTP streams carried by bridges.", labels=["direction"]
        )
        for direction, (legs, carried) in relay.bridge_load().items():
            bridges.add_metric([direction], legs)
            streams.add_metric([direction], carried)
        yield bridges
        yield streams
        yield from _bridge_families(relay.bridge_reports())

        for name, doc, attr in COUNTERS:
            yield CounterMetricFamily(name, doc, value=getattr(s, attr))
        kf = CounterMetricFamily(
            "eurelay_relay_keyframe_requests_received",
            "PLI/FIR received from subscribers.",
            labels=["type"],
        )
        kf.add_metric(["pli"], s.pli_received)
        kf.add_metric(["fir"], s.fir_received)
        yield kf
        data = CounterMetricFamily(
            "eurelay_relay_data_messages", "Data messages.", labels=["direction"]
        )
        data.add_metric(["in"], s.data_messages_in)
        data.add_metric(["out"], s.data_messages_out)
        data.add_metric(["rejected"], s.data_messages_rejected)
        yield data
        dropped = CounterMetricFamily(
            "eurelay_relay_dropped_packets", "Datagrams dropped.", labels=["reason"]
        )
        for reason, value in s.dropped.items():
            dropped.add_metric([reason], value)
        yield dropped
        yield _histogram(
            "eurelay_relay_forward_duration_seconds",
            "In-relay time from datagram received to the last sendto.",
            s.forward_seconds,
        )
        yield _histogram(
            "eurelay_relay_dtls_handshake_duration_seconds",
            "DTLS handshake duration.",
            s.dtls_handshake_seconds,
        )


def _bridge_families(reports: list[BridgeReport]) -> list[Metric]:
    """Per peer node (a bounded label; rooms are not labels): what bridges carry and how the
    hop fares. Several rooms' bridges to one peer add up; RTT and loss take the worst."""
    packets = CounterMetricFamily(
        "eurelay_bridge_packets", "RTP packets carried by bridges.", labels=["direction", "peer"]
    )
    octets = CounterMetricFamily(
        "eurelay_bridge_bytes",
        "RTP payload bytes carried by bridges.",
        labels=["direction", "peer"],
    )
    rtt = GaugeMetricFamily(
        "eurelay_bridge_rtt_milliseconds",
        "Round trip of a bridge hop (origin side).",
        labels=["peer"],
    )
    loss = GaugeMetricFamily(
        "eurelay_bridge_loss_ratio",
        "Loss on a bridge hop: out, as the viewing node last reported; in, cumulative.",
        labels=["direction", "peer"],
    )
    totals: dict[tuple[str, str], list[float]] = {}
    worst_rtt: dict[str, float] = {}
    worst_loss: dict[tuple[str, str], float] = {}
    for r in reports:
        key = (r.direction, r.peer)
        total = totals.setdefault(key, [0.0, 0.0])
        total[0] += r.packets
        total[1] += r.octets
        if r.rtt_ms is not None:
            worst_rtt[r.peer] = max(worst_rtt.get(r.peer, 0.0), r.rtt_ms)
        if r.loss is not None:
            worst_loss[key] = max(worst_loss.get(key, 0.0), r.loss)
    for (direction, peer), (n, size) in totals.items():
        packets.add_metric([direction, peer], n)
        octets.add_metric([direction, peer], size)
    for peer, ms in worst_rtt.items():
        rtt.add_metric([peer], ms)
    for (direction, peer), ratio in worst_loss.items():
        loss.add_metric([direction, peer], ratio)
    return [packets, octets, rtt, loss]


def create_registry(
    relay: RelayControl, connections: dict[str, object], counters: Counters = dict
) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RelayCollector(relay, connections, counters))
    return registry
