"""Golden-file tests for plan.bird: a NodeBgpPlan renders to exactly the stored bird.conf.

Regenerate after an intended change with EGRESSGW_UPDATE_GOLDEN=1 and review the diff.
Each golden file is also fed to BIRD's own parser (`bird -p`, no daemon, no sockets).
"""

from __future__ import annotations

import difflib
import os
import random
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import replace
from ipaddress import IPv4Address, ip_address, ip_network
from pathlib import Path

import pytest

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
    RouteFilter,
    RouteSource,
)
from egressgw.plan.bird import protocol_name, render

GOLDEN = Path(__file__).resolve().parents[2] / "testdata" / "golden" / "bird"
UPDATE = os.environ.get("EGRESSGW_UPDATE_GOLDEN") == "1"

POD_POOL = ip_network("10.244.0.0/16")
EGRESS_POOL = ip_network("10.99.0.0/29")
ACCEPT, REJECT = FilterAction.ACCEPT, FilterAction.REJECT


def _node_peer(address: str, kind: PeerKind, mine: str = "10.1.0.4") -> Peer:
    source = "node-to-node-mesh" if kind is PeerKind.MESH else "BGPPeer peer-with-route-reflectors"
    return Peer(
        address=ip_address(address),
        remote_as=63400,
        kind=kind,
        passive=ip_address(address) > ip_address(mine),
        source=source,
    )


def _ars(address: str, filters: tuple[str, ...] = ()) -> Peer:
    """An Azure Route Server peer as REF-AZ configures it."""
    return Peer(
        address=ip_address(address),
        remote_as=65515,
        kind=PeerKind.EXTERNAL,
        next_hop=NextHopMode.KEEP,
        reachable_by=ip_address("10.1.0.1"),
        filters=filters,
        source=f"BGPPeer azure-route-server-{'a' if address.endswith('.4') else 'b'}",
    )


def _base(**changes: object) -> NodeBgpPlan:
    plan = NodeBgpPlan(
        node="node-a",
        router_id=IPv4Address("10.1.0.4"),
        local_as=63400,
        listen_address=ip_address("10.1.0.4"),
        originated=(
            OriginatedPrefix(ip_network("10.244.0.0/26")),
            OriginatedPrefix(ip_network("10.99.0.2/31"), PrefixKind.EGRESS),
        ),
        exportable_pools=(POD_POOL, EGRESS_POOL),
    )
    return replace(plan, **changes)  # type: ignore[arg-type]


def plain_node() -> NodeBgpPlan:
    """Mesh on: one session per other node; the lower address waits for the higher."""
    mesh = (_node_peer("10.1.0.5", PeerKind.MESH), _node_peer("10.1.0.3", PeerKind.MESH))
    return _base(peers=mesh)


def mesh_off() -> NodeBgpPlan:
    """Mesh off: a client node talks only to its two route reflectors."""
    peers = (_node_peer("10.1.0.10", PeerKind.NODE), _node_peer("10.1.0.11", PeerKind.NODE))
    return _base(peers=peers)


def route_reflector() -> NodeBgpPlan:
    """REF-AZ: an RR with clients, an RR peer, and two ARS peers keeping the next hop."""
    export_egress = RouteFilter(
        "export-egress-ips",
        export_v4=(FilterRule(REJECT, EGRESS_POOL, MatchOperator.NOT_IN),),
    )
    peers = (
        _ars("10.0.1.5", ("export-egress-ips",)),
        _ars("10.0.1.4", ("export-egress-ips",)),
        _node_peer("10.1.0.7", PeerKind.RR_CLIENT),
        _node_peer("10.1.0.6", PeerKind.RR_CLIENT),
        _node_peer("10.1.0.5", PeerKind.RR_TO_RR),
    )
    return _base(
        peers=peers,
        filters=(export_egress,),
        route_reflector_cluster_id=IPv4Address("244.0.0.1"),
    )


def disable_bgp_export() -> NodeBgpPlan:
    """The pod pool has disableBGPExport: its block stays home, the egress /31 goes out."""
    originated = (
        OriginatedPrefix(ip_network("10.244.0.0/26"), export=False),
        OriginatedPrefix(ip_network("10.244.1.0/26"), export=False),
        OriginatedPrefix(ip_network("10.99.0.2/31"), PrefixKind.EGRESS),
        OriginatedPrefix(ip_network("10.99.0.4/31"), PrefixKind.EGRESS),
    )
    return _base(
        originated=originated,
        exportable_pools=(EGRESS_POOL,),
        peers=(_ars("10.0.1.4"),),
        program_kernel=False,
        log_severity="Warning",
    )


def bgpfilter_first_match() -> NodeBgpPlan:
    """Two filters chained on one peer; every operator, length range, source, interface."""
    first = RouteFilter(
        "a-first",
        export_v4=(
            FilterRule(ACCEPT, ip_network("10.244.0.0/26"), MatchOperator.EQUAL),
            FilterRule(REJECT, EGRESS_POOL, MatchOperator.IN, prefix_min=32),
            FilterRule(ACCEPT, EGRESS_POOL, MatchOperator.IN, prefix_max=31),
        ),
        import_v4=(FilterRule(REJECT, ip_network("0.0.0.0/0"), MatchOperator.EQUAL),),
    )
    second = RouteFilter(
        "b-second",
        export_v4=(
            FilterRule(ACCEPT, POD_POOL, MatchOperator.NOT_IN, source=RouteSource.REMOTE_PEERS),
            FilterRule(REJECT, ip_network("10.244.0.0/24"), MatchOperator.NOT_EQUAL, 24, 26),
            FilterRule(ACCEPT, interface="*.calico"),
            FilterRule(REJECT),
        ),
        export_v6=(FilterRule(REJECT, ip_network("fd00::/64"), MatchOperator.NOT_IN, 64, 128),),
    )
    v6_peer = Peer(ip_address("fd00::1"), 65001, PeerKind.EXTERNAL, filters=("b-second",))
    peer = Peer(
        ip_address("192.0.2.1"),
        65001,
        PeerKind.EXTERNAL,
        port=1179,
        local_as=64999,
        next_hop=NextHopMode.SELF,
        multihop=False,
        filters=("b-second", "a-first"),  # the peer's order, not the names' order, counts
        source="BGPPeer tor",
    )
    return _base(
        peers=(peer, v6_peer),
        filters=(second, first),
        strict_bind=True,
        listen_address6=ip_address("fd00::4"),
    )


CASES: dict[str, Callable[[], NodeBgpPlan]] = {
    "plain_node": plain_node,
    "mesh_off": mesh_off,
    "route_reflector": route_reflector,
    "disable_bgp_export": disable_bgp_export,
    "bgpfilter_first_match": bgpfilter_first_match,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_render_matches_golden(case: str) -> None:
    text = render(CASES[case]())
    path = GOLDEN / f"{case}.conf"
    if UPDATE:
        path.write_text(text)
    expected = path.read_text()
    diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True)))
    assert text == expected, f"render differs from {path}:\n{diff}"


@pytest.mark.skipif(shutil.which("bird") is None, reason="BIRD 2 not installed")
@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_parses_in_bird(case: str) -> None:
    path = GOLDEN / f"{case}.conf"
    result = subprocess.run(["bird", "-p", "-c", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("case", sorted(CASES))
def test_render_ignores_input_order(case: str) -> None:
    plan = CASES[case]()
    rng = random.Random(7)
    shuffled = {
        name: tuple(rng.sample(getattr(plan, name), len(getattr(plan, name))))
        for name in ("originated", "exportable_pools", "peers", "filters")
    }
    assert render(replace(plan, **shuffled)) == render(plan)  # type: ignore[arg-type]


def _function_body(text: str, name: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(f"function '{name}'() {{")
    end = lines.index("}", start)
    return [line.strip().split("  #")[0] for line in lines[start + 1 : end]]


def test_rules_keep_their_order_and_operators() -> None:
    text = render(bgpfilter_first_match())
    assert _function_body(text, "egw_export_v4_a-first") == [
        "if (net = 10.244.0.0/26) then accept;",
        "if (net ~ [ 10.99.0.0/29{32,32} ]) then reject;",
        "if (net ~ [ 10.99.0.0/29{29,31} ]) then accept;",
    ]
    assert _function_body(text, "egw_export_v4_b-second") == [
        "if (net !~ 10.244.0.0/16) && (source = RTS_BGP) then accept;",
        "if (net != 10.244.0.0/24) && (net ~ [ 10.244.0.0/24{24,26} ]) then reject;",
        'if (ifname ~ "*.calico") then accept;',
        "reject;",
    ]
    assert _function_body(text, "egw_export_v6_b-second") == [
        "if (net !~ [ fd00::/64{64,128} ]) then reject;",
    ]


def test_peer_chain_follows_the_peer_order_then_the_default() -> None:
    text = render(bgpfilter_first_match())
    peer = text.split("protocol bgp Peer_192_0_2_1_port1179 {", 1)[1]
    chain = peer.split("export filter {", 1)[1].split("};", 1)[0].split()
    calls = [word for word in chain if word.endswith("();")]
    assert calls == [
        "'egw_export_v4_b-second'();",
        "'egw_export_v4_a-first'();",
        "egw_export_default4();",
    ]


def test_unexportable_prefix_is_rejected_only_by_the_default() -> None:
    text = render(disable_bgp_export())
    assert "if net = 10.244.0.0/26 then reject;  # disableBGPExport" in text
    assert "if (source = RTS_BGP) && (net ~ [ 10.99.0.0/29+ ]) then accept;" in text
    assert "10.244.0.0/16" not in text  # a pool without export is not passed on


def test_protocol_names_are_stable_and_distinct() -> None:
    peers = route_reflector().peers
    names = [protocol_name(p) for p in peers]
    assert len(set(names)) == len(names)
    assert protocol_name(peers[1]) == "Peer_10_0_1_4"
    assert protocol_name(replace(peers[1], port=1179)) == "Peer_10_0_1_4_port1179"
    assert protocol_name(peers[4]) == "Node_10_1_0_5"


def test_strings_cannot_break_out_of_quotes() -> None:
    bad = RouteFilter("x", export_v4=(FilterRule(ACCEPT, interface='eth0"; accept; #'),))
    plan = _base(filters=(bad,), peers=(replace(_ars("10.0.1.4"), filters=("x",)),))
    with pytest.raises(ValueError, match="BIRD string"):
        render(plan)


def test_plan_refuses_unknown_filter_names() -> None:
    with pytest.raises(ValueError, match="unknown filters"):
        _base(peers=(_ars("10.0.1.4", ("missing",)),))
