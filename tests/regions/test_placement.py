from __future__ import annotations

from regions.models import NodeLoad, NodeRecord, NodeState, RoomPolicy
from regions.placement import PlacementInput, client_prefix, map_region, place


def node(
    node_id: str,
    region: str,
    jurisdiction: str = "eu",
    sessions: int = 0,
    state: NodeState = NodeState.ACTIVE,
    capacity: int = 100,
) -> NodeRecord:
    return NodeRecord(
        id=node_id,
        region=region,
        jurisdiction=jurisdiction,
        signaling_url=f"http://{node_id}",
        capacity=capacity,
        load=NodeLoad(sessions=sessions),
        state=state,
    )


NODES = [
    node("par-1", "eu-west", "fr", sessions=10),
    node("par-2", "eu-west", "fr", sessions=2),
    node("fra-1", "eu-central", "de"),
    node("sto-1", "eu-north", "se"),
]


def inputs(**kw: object) -> PlacementInput:
    base: dict[str, object] = dict(
        nodes=NODES,
        policy=RoomPolicy(),
        room_hosts=[],
        probes={},
        learned={},
        mapped_region=None,
        default_region="eu-central",
    )
    base.update(kw)
    return PlacementInput(**base)  # type: ignore[arg-type]


def test_region_by_probes_then_learned_then_map_then_default() -> None:
    assert place(inputs(probes={"eu-north": 12, "eu-west": 30})).node.id == "sto-1"  # type: ignore[union-attr]
    assert place(inputs(learned={"eu-west": 9, "eu-north": 20})).node.id == "par-2"  # type: ignore[union-attr]
    assert place(inputs(mapped_region="eu-north")).node.id == "sto-1"  # type: ignore[union-attr]
    decision = place(inputs())
    assert decision.node.id == "fra-1" and "default region" in decision.reason  # type: ignore[union-attr]


def test_hosting_node_then_least_loaded_within_the_participants_region() -> None:
    assert place(inputs(probes={"eu-west": 5})).node.id == "par-2"  # type: ignore[union-attr]
    decision = place(inputs(probes={"eu-west": 5}, room_hosts=["par-1", "sto-1"]))
    assert decision.node.id == "par-1" and "already lives" in decision.reason  # type: ignore[union-attr]
    # The room lives elsewhere: a participant near eu-north still lands in eu-north.
    decision = place(inputs(probes={"eu-north": 5, "eu-west": 30}, room_hosts=["par-1"]))
    assert decision.node.id == "sto-1"  # type: ignore[union-attr]


def test_a_full_host_spills_to_a_sibling_of_its_region() -> None:
    nodes = [
        node("par-1", "eu-west", sessions=10, capacity=10),
        node("par-2", "eu-west", sessions=7, capacity=10),
        node("par-3", "eu-west", sessions=0, capacity=10),
    ]
    decision = place(inputs(nodes=nodes, probes={"eu-west": 5}, room_hosts=["par-1", "par-2"]))
    assert decision.node.id == "par-2"  # type: ignore[union-attr]
    full = [n.model_copy(update={"load": NodeLoad(sessions=10)}) for n in nodes[:2]]
    decision = place(inputs(nodes=[*full, nodes[2]], probes={"eu-west": 5}, room_hosts=["par-1"]))
    assert decision.node.id == "par-3"  # type: ignore[union-attr]


def test_draining_full_and_residency_are_explained() -> None:
    nodes = [
        node("par-1", "eu-west", "fr", state=NodeState.DRAINING),
        node("par-2", "eu-west", "fr", sessions=5, capacity=5),
        node("fra-1", "eu-central", "de"),
    ]
    decision = place(inputs(nodes=nodes, probes={"eu-west": 1, "eu-central": 50}))
    assert decision.node.id == "fra-1"  # type: ignore[union-attr]
    why = {c.node: c.why for c in decision.candidates}
    assert "draining" in why["par-1"] and "full" in why["par-2"]
    refused = place(inputs(nodes=nodes, policy=RoomPolicy(allowed_jurisdictions=["se"])))
    assert refused.node is None and "residency" in refused.reason
    body = refused.as_json()
    assert body["node"] is None and len(body["candidates"]) == 3  # type: ignore[arg-type]


def test_prefixes() -> None:
    assert client_prefix("203.0.113.77") == "203.0.113.0/24"
    assert client_prefix("2001:db8:1:2::5") == "2001:db8:1::/48"
    assert client_prefix("not-an-ip") == "unknown"
    prefix_map = {"203.0.0.0/8": "eu-west", "203.0.113.0/24": "eu-north"}
    assert map_region("203.0.113.9", prefix_map) == "eu-north"
    assert map_region("203.1.2.3", prefix_map) == "eu-west"
    assert map_region("198.51.100.1", prefix_map) is None


def test_a_silent_node_is_never_chosen_however_old_the_list() -> None:
    now = 1_000_000.0
    fresh = node("par-1", "eu-west").model_copy(update={"last_heartbeat": now - 1})
    silent = node("par-2", "eu-west").model_copy(update={"last_heartbeat": now - 7})
    # par-2 is the least loaded and would win on load; it went quiet after the last beat.
    for hosts in ([], ["par-2"]):  # nor does hosting the room bring it back
        decision = place(
            inputs(
                nodes=[fresh.model_copy(update={"load": NodeLoad(sessions=50)}), silent],
                probes={"eu-west": 5},
                room_hosts=hosts,
                now=now,
                node_ttl=6,
                local_node="other",
            )
        )
        assert decision.node is not None and decision.node.id == "par-1"
        why = {c.node: c.why for c in decision.candidates}
        assert why["par-2"] == "silent for 7.0 s (node_ttl 6 s)"


def test_the_deciding_node_is_alive_to_itself() -> None:
    now = 1_000_000.0
    own = node("par-1", "eu-west").model_copy(update={"last_heartbeat": now - 60})
    decision = place(inputs(nodes=[own], now=now, node_ttl=6, local_node="par-1"))
    assert decision.node is not None and decision.node.id == "par-1"
