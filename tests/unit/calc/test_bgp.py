"""calc.bgp: Calico's BGP resources -> one node's BGP plan."""

from __future__ import annotations

import random
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, ip_address, ip_network
from typing import Any

import pytest

from egressgw.calc.bgp import BgpPlanError, node_bgp_plan
from egressgw.model import BGPConfiguration, BGPFilter, BGPPeer, IPPool, Node
from egressgw.plan.bgp import (
    FilterAction,
    FilterRule,
    MatchOperator,
    NextHopMode,
    NodeBgpPlan,
    OriginatedPrefix,
    Peer,
    PeerKind,
    PrefixKind,
    RouteSource,
)

RR = {"route-reflector": "true"}
CLUSTER = {"projectcalico.org/RouteReflectorClusterID": "244.0.0.1"}


def node(name: str, address: str | None, labels: Any = None, annotations: Any = None) -> Node:
    status = {"addresses": [{"type": "InternalIP", "address": address}]} if address else {}
    meta = {"name": name, "labels": labels or {}, "annotations": annotations or {}}
    return Node.model_validate({"metadata": meta, "status": status})


def config(**spec: Any) -> BGPConfiguration:
    return BGPConfiguration.model_validate({"metadata": {"name": "default"}, "spec": spec})


def peer(name: str, **spec: Any) -> BGPPeer:
    return BGPPeer.model_validate({"metadata": {"name": name}, "spec": spec})


def pool(name: str, cidr: str, **spec: Any) -> IPPool:
    return IPPool.model_validate({"metadata": {"name": name}, "spec": {"cidr": cidr, **spec}})


def bgp_filter(name: str, **spec: Any) -> BGPFilter:
    return BGPFilter.model_validate({"metadata": {"name": name}, "spec": spec})


POD_POOL = pool("default-ipv4-ippool", "10.244.0.0/16")
EGRESS_POOL = pool("tenant0-pool", "10.99.0.0/29", blockSize=31, nodeSelector="!all()")
HOST_POOL = pool("blue", "10.10.20.0/29", blockSize=32, nodeSelector="!all()")

NODE_A = node("node-a", "10.1.0.4", RR, CLUSTER)
NODE_B = node("node-b", "10.1.0.5", RR, CLUSTER)
NODE_C = node("node-c", "10.1.0.6")
AZURE_NODES = [NODE_A, NODE_B, NODE_C]
AZURE_CONFIG = config(nodeToNodeMeshEnabled=False, asNumber=63400)
AZURE_PEERS = [
    peer(
        "peer-with-route-reflectors", nodeSelector="all()", peerSelector="route-reflector == 'true'"
    ),
    peer(
        "azure-route-server-a",
        peerIP="10.0.1.4",
        reachableBy="10.1.0.1",
        asNumber=65515,
        keepOriginalNextHop=True,
        nodeSelector="route-reflector == 'true'",
        filters=["export-egress-ips"],
    ),
]
EXPORT_EGRESS = bgp_filter(
    "export-egress-ips",
    exportV4=[{"action": "Reject", "matchOperator": "NotIn", "cidr": "10.99.0.0/29"}],
)


def plan_for(
    me: Node,
    nodes: Sequence[Node] = AZURE_NODES,
    cfg: BGPConfiguration | None = AZURE_CONFIG,
    peers: Sequence[BGPPeer] = AZURE_PEERS,
    filters: dict[str, BGPFilter] | None = None,
    pools: Sequence[IPPool] = (POD_POOL, EGRESS_POOL),
    blocks: Sequence[str] = (),
    egress: Sequence[str] = (),
) -> NodeBgpPlan:
    return node_bgp_plan(
        me,
        nodes,
        cfg,
        peers,
        {"export-egress-ips": EXPORT_EGRESS} if filters is None else filters,
        pools,
        [IPv4Network(b) for b in blocks],
        [IPv4Address(e) for e in egress],
    )


def sessions(plan: NodeBgpPlan) -> dict[str, PeerKind]:
    return {str(p.address): p.kind for p in plan.peers}


# ---------------------------------------------------------------- who peers with whom


def test_azure_route_reflector_peers_with_route_server_other_rr_and_clients() -> None:
    plan = plan_for(NODE_A)
    assert sessions(plan) == {
        "10.0.1.4": PeerKind.EXTERNAL,
        "10.1.0.5": PeerKind.RR_TO_RR,
        "10.1.0.6": PeerKind.RR_CLIENT,
    }
    ars = plan.peers[0]
    assert ars == Peer(
        address=ip_address("10.0.1.4"),
        remote_as=65515,
        kind=PeerKind.EXTERNAL,
        next_hop=NextHopMode.KEEP,
        reachable_by=ip_address("10.1.0.1"),
        filters=("export-egress-ips",),
        source="BGPPeer azure-route-server-a",
    )
    assert plan.route_reflector_cluster_id == IPv4Address("244.0.0.1")
    assert (plan.local_as, plan.router_id, plan.listen_address) == (
        63400,
        IPv4Address("10.1.0.4"),
        IPv4Address("10.1.0.4"),
    )


def test_azure_client_peers_only_with_the_reflectors() -> None:
    plan = plan_for(NODE_C)
    assert sessions(plan) == {"10.1.0.4": PeerKind.NODE, "10.1.0.5": PeerKind.NODE}
    assert plan.filters == ()  # the ARS peer and its filter do not apply to a client
    assert plan.route_reflector_cluster_id is None


def test_reverse_peering_manual_keeps_a_peering_one_sided() -> None:
    manual = peer(
        "rr",
        nodeSelector="all()",
        peerSelector="route-reflector == 'true'",
        reversePeering="Manual",
    )
    assert sessions(plan_for(NODE_C, peers=[manual])) == {
        "10.1.0.4": PeerKind.NODE,
        "10.1.0.5": PeerKind.NODE,
    }
    only_rr = peer(
        "rr", nodeSelector="route-reflector == 'true'", peerSelector="!has(route-reflector)"
    )
    assert sessions(plan_for(NODE_C, peers=[only_rr])) == {
        "10.1.0.4": PeerKind.NODE,
        "10.1.0.5": PeerKind.NODE,
    }
    manual_rr = only_rr.model_copy(
        update={"spec": only_rr.spec.model_copy(update={"reverse_peering": "Manual"})}
    )
    assert sessions(plan_for(NODE_C, peers=[manual_rr])) == {}


def test_full_mesh_connects_every_other_node_and_one_side_waits() -> None:
    nodes = [node("n1", "10.0.0.1"), node("n2", "10.0.0.2"), node("n3", "10.0.0.3")]
    plan = plan_for(nodes[1], nodes=nodes, cfg=None, peers=[])
    assert sessions(plan) == {"10.0.0.1": PeerKind.MESH, "10.0.0.3": PeerKind.MESH}
    assert {str(p.address): p.passive for p in plan.peers} == {"10.0.0.1": False, "10.0.0.3": True}
    assert plan.local_as == 64512  # BGPConfiguration absent: Calico's default AS


def test_mesh_leaves_out_route_reflectors() -> None:
    mesh_on = config(nodeToNodeMeshEnabled=True)
    assert sessions(plan_for(NODE_C, cfg=mesh_on, peers=[])) == {}
    assert sessions(plan_for(NODE_A, cfg=mesh_on, peers=[])) == {}
    plain = [NODE_C, node("node-d", "10.1.0.7")]
    assert sessions(plan_for(NODE_C, nodes=plain, cfg=mesh_on, peers=[])) == {
        "10.1.0.7": PeerKind.MESH
    }


def test_mesh_off_means_no_node_sessions() -> None:
    nodes = [node("n1", "10.0.0.1"), node("n2", "10.0.0.2")]
    assert (
        plan_for(nodes[0], nodes=nodes, cfg=config(nodeToNodeMeshEnabled=False), peers=[]).peers
        == ()
    )


def test_explicit_peer_wins_over_the_mesh_for_the_same_address() -> None:
    nodes = [node("n1", "10.0.0.1"), node("n2", "10.0.0.2")]
    explicit = peer("to-n2", peerIP="10.0.0.2", asNumber=64512, nextHopMode="Self")
    [only] = plan_for(nodes[0], nodes=nodes, cfg=None, peers=[explicit]).peers
    assert (only.kind, only.next_hop, only.source) == (
        PeerKind.EXTERNAL,
        NextHopMode.SELF,
        "BGPPeer to-n2",
    )


@pytest.mark.parametrize(
    ("spec", "applies"),
    [
        ({"node": "node-c"}, True),
        ({"node": "node-a"}, False),
        ({"nodeSelector": "!has(route-reflector)"}, True),
        ({"nodeSelector": "route-reflector == 'true'"}, False),
        ({}, True),
    ],
)
def test_which_nodes_a_peer_ip_applies_to(spec: dict[str, Any], applies: bool) -> None:
    tor = peer("tor", peerIP="192.0.2.1", asNumber=65001, **spec)
    assert bool(plan_for(NODE_C, peers=[tor]).peers) == applies


def test_peer_ip_port_local_as_and_next_hop_modes() -> None:
    tor = peer(
        "tor", peerIP="192.0.2.1:1179", asNumber=65001, localASNumber=64999, nextHopMode="Keep"
    )
    [only] = plan_for(NODE_C, peers=[tor]).peers
    assert (only.port, only.local_as, only.remote_as, only.next_hop) == (
        1179,
        64999,
        65001,
        NextHopMode.KEEP,
    )
    auto = peer("tor", peerIP="192.0.2.1", asNumber=65001)
    assert plan_for(NODE_C, peers=[auto]).peers[0].next_hop is NextHopMode.AUTO


def test_node_as_annotation_and_rr_clients_only_within_the_as() -> None:
    other_as = node("node-c", "10.1.0.6", annotations={"projectcalico.org/ASNumber": "65010"})
    plan = plan_for(NODE_A, nodes=[NODE_A, NODE_B, other_as])
    by_address = {str(p.address): p for p in plan.peers}
    assert (by_address["10.1.0.6"].kind, by_address["10.1.0.6"].remote_as) == (PeerKind.NODE, 65010)
    assert plan_for(other_as, nodes=[NODE_A, NODE_B, other_as]).local_as == 65010


def test_a_node_without_ipv4_cannot_speak_bgp() -> None:
    with pytest.raises(BgpPlanError):
        plan_for(node("lonely", None))


def test_nodes_without_ipv4_are_skipped_as_peers() -> None:
    nodes = [node("n1", "10.0.0.1"), node("n2", None)]
    assert plan_for(nodes[0], nodes=nodes, cfg=None, peers=[]).peers == ()


# ---------------------------------------------------------------- what a node originates


def test_egress_ips_go_out_as_blocks_of_their_pool() -> None:
    plan = plan_for(
        NODE_A,
        pools=[POD_POOL, EGRESS_POOL, HOST_POOL],
        blocks=["10.244.0.0/26"],
        egress=["10.99.0.3", "10.99.0.2", "10.10.20.5"],
    )
    assert plan.originated == (
        OriginatedPrefix(ip_network("10.10.20.5/32"), PrefixKind.EGRESS),
        OriginatedPrefix(ip_network("10.99.0.2/31"), PrefixKind.EGRESS),
        OriginatedPrefix(ip_network("10.244.0.0/26"), PrefixKind.POD_BLOCK),
    )


def test_disable_bgp_export_marks_blocks_and_stops_passing_on() -> None:
    quiet = pool("default-ipv4-ippool", "10.244.0.0/16", disableBGPExport=True)
    plan = plan_for(
        NODE_A, pools=[quiet, EGRESS_POOL], blocks=["10.244.0.0/26"], egress=["10.99.0.4"]
    )
    assert [(str(p.prefix), p.export) for p in plan.originated] == [
        ("10.99.0.4/31", True),
        ("10.244.0.0/26", False),
    ]
    assert plan.exportable_pools == (ip_network("10.99.0.0/29"),)


def test_addresses_outside_every_pool_are_noted_not_advertised() -> None:
    plan = plan_for(NODE_A, blocks=["10.50.0.0/26"], egress=["203.0.113.9"])
    assert plan.originated == ()
    assert any("203.0.113.9" in n for n in plan.notes)
    assert any("10.50.0.0/26" in n for n in plan.notes)


# ---------------------------------------------------------------- filters


def test_filter_rules_are_converted_in_order() -> None:
    rules = [
        {"action": "Accept", "matchOperator": "Equal", "cidr": "10.99.0.2/31"},
        {
            "action": "Reject",
            "matchOperator": "In",
            "cidr": "10.99.0.0/29",
            "prefixLength": {"min": 32},
            "source": "RemotePeers",
            "interface": "eth*",
        },
    ]
    f = bgp_filter("export-egress-ips", exportV4=rules, importV4=[{"action": "Reject"}])
    [route_filter] = plan_for(NODE_A, filters={"export-egress-ips": f}).filters
    assert route_filter.export_v4 == (
        FilterRule(FilterAction.ACCEPT, ip_network("10.99.0.2/31"), MatchOperator.EQUAL),
        FilterRule(
            FilterAction.REJECT,
            ip_network("10.99.0.0/29"),
            MatchOperator.IN,
            prefix_min=32,
            source=RouteSource.REMOTE_PEERS,
            interface="eth*",
        ),
    )
    assert route_filter.import_v4 == (FilterRule(FilterAction.REJECT),)


def test_missing_filter_is_noted_and_left_off_the_peer() -> None:
    plan = plan_for(NODE_A, filters={})
    assert plan.filters == ()
    assert all(p.filters == () for p in plan.peers)
    assert any("export-egress-ips does not exist" in n for n in plan.notes)


def test_rules_with_unsupported_matches_are_dropped_not_widened() -> None:
    rules = [
        {"action": "Accept", "peerType": "eBGP"},
        {"action": "Reject", "matchOperator": "NotIn", "cidr": "10.99.0.0/29"},
    ]
    f = bgp_filter("export-egress-ips", exportV4=rules)
    [route_filter] = plan_for(NODE_A, filters={"export-egress-ips": f}).filters
    assert [r.action for r in route_filter.export_v4] == [FilterAction.REJECT]
    assert any("peer_type" in n for n in plan_for(NODE_A, filters={"export-egress-ips": f}).notes)


# ---------------------------------------------------------------- determinism and sequences


def test_input_order_does_not_matter() -> None:
    rng = random.Random(3)
    expected = plan_for(NODE_A, blocks=["10.244.0.0/26"], egress=["10.99.0.2", "10.99.0.4"])
    for _ in range(5):
        shuffled = plan_for(
            NODE_A,
            nodes=rng.sample(AZURE_NODES, 3),
            peers=rng.sample(AZURE_PEERS, 2),
            pools=rng.sample([POD_POOL, EGRESS_POOL], 2),
            blocks=["10.244.0.0/26"],
            egress=rng.sample(["10.99.0.2", "10.99.0.4"], 2),
        )
        assert shuffled == expected


def test_a_moving_gateway_sequence_replays_in_reverse() -> None:
    """Each state's plan depends only on that state, whichever order states are visited."""
    states = [(), ("10.99.0.2",), ("10.99.0.2", "10.99.0.4"), ("10.99.0.4",), ()]
    forward = [plan_for(NODE_A, egress=s) for s in states]
    backward = [plan_for(NODE_A, egress=s) for s in reversed(states)]
    assert forward == list(reversed(backward))
    assert [len(p.originated) for p in forward] == [0, 1, 2, 1, 0]
