"""Placement: which node a session of a room should land on, and why.

Candidates pass small filters, each of which can say why it dropped a node: alive (heard
from within node_ttl at the moment of the decision, whatever the age of the node list),
active (not draining), under capacity, allowed by the
room's residency policy. The region is chosen by latency: the client's own probes first,
then RTTs learned from live sessions of the same network prefix, then a configured
prefix-to-region map, then the default region. The region is the participant's own: a
room may live on several nodes (bridged), so each participant lands near themselves.
Within the region, the least-loaded eligible node that already hosts the room wins (its
media is there already); else the least-loaded eligible node. A full node is not eligible,
so a room's new sessions spill to a sibling in the region.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from .models import NodeRecord, NodeState, RoomPolicy


@dataclass(slots=True)
class Candidate:
    node: str
    region: str
    eligible: bool
    score: float | None
    why: str


@dataclass(slots=True)
class Decision:
    node: NodeRecord | None
    reason: str
    candidates: list[Candidate] = field(default_factory=list)
    # Nodes the room's published tracks come from, other than the chosen one: its media
    # reaches the participant over a bridge from each of these.
    bridged_from: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {
            "node": self.node.id if self.node else None,
            "region": self.node.region if self.node else None,
            "url": self.node.signaling_url if self.node else None,
            "reason": self.reason,
            "bridged_from": self.bridged_from,
            "candidates": [
                {
                    "node": c.node,
                    "region": c.region,
                    "eligible": c.eligible,
                    "score": c.score,
                    "why": c.why,
                }
                for c in self.candidates
            ],
        }


@dataclass(slots=True)
class PlacementInput:
    nodes: list[NodeRecord]
    policy: RoomPolicy
    room_hosts: list[str]  # nodes hosting the room now (or claimed for it)
    probes: dict[str, float]  # client-measured RTT per region, ms
    learned: dict[str, float]  # RTT learned for the client's prefix, ms
    mapped_region: str | None  # from the configured prefix map
    default_region: str
    # Liveness at decision time: a node silent for longer than node_ttl is never chosen,
    # however old the node list is. The deciding node (running, so alive) is exempt.
    now: float | None = None  # unix seconds; None: trust the list
    node_ttl: float = 0.0
    local_node: str | None = None


def client_prefix(address: str) -> str:
    """The client's network, truncated (/24, /48): what RTTs are learned and logged under."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "unknown"
    bits = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{bits}", strict=False))


def map_region(address: str, prefix_map: dict[str, str]) -> str | None:
    """The configured region of the most specific prefix containing ``address``."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    best: tuple[int, str] | None = None
    for prefix, region in prefix_map.items():
        network = ipaddress.ip_network(prefix, strict=False)
        contains = ip.version == network.version and ip in network
        if contains and (best is None or network.prefixlen > best[0]):
            best = (network.prefixlen, region)
    return best[1] if best else None


def _ineligibility(node: NodeRecord, data: PlacementInput) -> str:
    now = data.now
    if now is not None and node.id != data.local_node and not node.alive(now, data.node_ttl):
        return f"silent for {now - node.last_heartbeat:.1f} s (node_ttl {data.node_ttl:g} s)"
    if node.state != NodeState.ACTIVE:
        return f"node is {node.state.value}"
    if node.capacity and node.load.sessions >= node.capacity:
        return f"full ({node.load.sessions}/{node.capacity} sessions)"
    allowed, why = data.policy.allows(node)
    return "" if allowed else why


def load_score(node: NodeRecord) -> float:
    """Lower is better: session share of capacity, plus CPU."""
    share = node.load.sessions / node.capacity if node.capacity else 0.0
    return round(share + node.load.cpu, 4)


def place(data: PlacementInput) -> Decision:
    candidates: list[Candidate] = []
    eligible: list[NodeRecord] = []
    for node in sorted(data.nodes, key=lambda n: n.id):
        why = _ineligibility(node, data)
        candidates.append(Candidate(node.id, node.region, not why, None, why or "eligible"))
        if not why:
            eligible.append(node)
    if not eligible:
        reason = "no eligible node"
        if data.nodes and (data.policy.allowed_jurisdictions or data.policy.allowed_regions):
            reason += " (the room's residency policy excludes the others)"
        return Decision(None, reason, candidates)

    regions = {n.region for n in eligible}
    region, reason = _choose_region(regions, data)
    in_region = [n for n in eligible if n.region == region]
    scores = {n.id: load_score(n) for n in in_region}
    for c in candidates:
        if c.node in scores:
            c.score = scores[c.node]
        elif c.eligible:
            c.why = f"eligible, but region {c.region} is not the chosen {region}"
    hosting = [n for n in in_region if n.id in data.room_hosts]
    if hosting:
        chosen = min(hosting, key=lambda n: (scores[n.id], n.id))
        return Decision(
            chosen,
            f"{reason}; the room already lives on {chosen.id} (score {scores[chosen.id]})",
            candidates,
        )
    chosen = min(in_region, key=lambda n: (scores[n.id], n.id))
    return Decision(
        chosen, f"{reason}; least loaded in {region} (score {scores[chosen.id]})", candidates
    )


def _choose_region(regions: set[str], data: PlacementInput) -> tuple[str, str]:
    for source, rtts in (("client probes", data.probes), ("learned RTT", data.learned)):
        usable = {r: v for r, v in rtts.items() if r in regions}
        if usable:
            region = min(usable, key=lambda r: (usable[r], r))
            return region, f"region {region} by {source} ({usable[region]:.0f} ms)"
    if data.mapped_region in regions:
        return data.mapped_region, f"region {data.mapped_region} from the prefix map"
    if data.default_region in regions:
        return data.default_region, f"default region {data.default_region}"
    region = sorted(regions)[0]
    return region, f"region {region}: no latency data, default region unavailable"
