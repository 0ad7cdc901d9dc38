"""The Azure hub as pure values: route servers from the cluster's BGP resources, the
firewall's ruleset, the fabric's routes, and the lab's gobgpd configuration."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

import pytest

from egressgw import manifests
from egressgw.drivers.routeserver import LearnedRoute
from egressgw.lab import azure, hubroutes, observe, scenarios
from egressgw.lab.hub import (
    DENY_BODY,
    DENY_PORT,
    DENY_STATUS,
    AzureEdge,
    RouteServerHost,
    fabric_routes,
)
from egressgw.lab.rulesets import firewall_ruleset
from egressgw.lab.topology import Topology, TopologyError

A, N = IPv4Address, IPv4Network


def azure_topology() -> Topology:
    resources = manifests.load([scenarios.AZURE.examples]).all
    return scenarios.build_topology(scenarios.AZURE, resources, "egwu")


def edge() -> AzureEdge:
    found = azure_topology().edge
    assert isinstance(found, AzureEdge)
    return found


def test_route_servers_peer_with_the_nodes_their_bgppeers_select() -> None:
    e = edge()
    assert e.route_servers == (
        RouteServerHost("rs-a", A("10.0.1.4"), (A("10.1.0.4"), A("10.1.0.5"))),
        RouteServerHost("rs-b", A("10.0.1.5"), (A("10.1.0.4"), A("10.1.0.5"))),
    )
    assert (e.route_server_as, e.peer_as) == (65515, 63400)
    assert (e.firewall_ip, e.public_address) == (A("10.0.0.4"), A("198.51.100.1"))
    assert e.allowed_sources == (N("10.99.0.0/29"),)
    assert e.allowed_destinations == (A("203.0.113.30"),)  # www.tigera.io's stand-in
    assert e.route_server("rs-b") == e.route_server("10.0.1.5") == e.route_servers[1]
    with pytest.raises(LookupError, match=r"known are rs-a \(10.0.1.4\), rs-b"):
        e.route_server("10.0.1.6")


def test_the_deny_answer_is_azure_firewalls() -> None:
    assert (DENY_STATUS, DENY_BODY) == (
        470,
        "Action: Deny. Reason: No rule matched. Proceeding with default action.",
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"route_servers": (RouteServerHost("rs-a", A("10.0.2.4")),)}, "not a free host"),
        ({"route_servers": (RouteServerHost("rs-a", A("10.0.1.1")),)}, "not a free host"),
        ({"route_servers": (RouteServerHost("RS A", A("10.0.1.4")),)}, "bad route-server name"),
        ({"route_servers": (RouteServerHost("vpc", A("10.0.1.4")),)}, "bad route-server name"),
        (
            {
                "route_servers": (
                    RouteServerHost("rs-a", A("10.0.1.4")),
                    RouteServerHost("rs-a", A("10.0.1.5")),
                )
            },
            "distinct",
        ),
        ({"route_server_subnet": N("10.1.0.0/24")}, "overlaps another subnet"),
        ({"route_server_subnet": N("10.2.0.0/24")}, "outside the VPC"),
        ({"route_server_subnet": None}, "need a route-server subnet"),
        ({"firewall_ip": A("10.0.3.4")}, "on no link"),
        ({"public_address": A("192.0.2.9")}, "outside the public range"),
    ],
)
def test_a_bad_hub_cannot_be_built(change: dict[str, object], message: str) -> None:
    t = azure_topology()
    with pytest.raises(TopologyError, match=message):
        replace(t, edge=replace(edge(), **change))  # type: ignore[arg-type]


def test_the_firewall_allows_by_source_destination_and_port_and_answers_denials() -> None:
    rules = firewall_ruleset(edge())
    assert "set allowed { type ipv4_addr; flags interval; elements = { 10.99.0.0/29 }; }" in rules
    assert "elements = { 203.0.113.30 }" in rules and "elements = { 80, 443 }" in rules
    allowed = "ip saddr @allowed ip daddr @allowed_destinations tcp dport @allowed_ports"
    assert f'iifname "vpc" oifname "internet" {allowed} accept' in rules
    assert (
        f"tcp dport 80 add @seen_denied {{ ip saddr . ip daddr . tcp dport }} redirect to :{DENY_PORT}"
        in rules
    )
    assert "reject with tcp reset" in rules and 'oifname "internet" snat to 198.51.100.1' in rules
    # No destination listed: any destination.
    assert "elements = { 0.0.0.0/0 }" in firewall_ruleset(replace(edge(), allowed_destinations=()))


def _route(net: str, hop: str, peer: str, best: bool = True) -> LearnedRoute:
    return LearnedRoute(N(net), A(hop), (63400,), A(peer), "IGP", A("10.0.1.4"), best)


def test_the_fabric_routes_each_prefix_via_the_best_paths_of_every_route_server() -> None:
    rs_a = [
        _route("10.99.0.2/31", "10.1.0.5", "10.1.0.4"),
        _route("10.99.0.2/31", "10.1.0.5", "10.1.0.5", best=False),
        _route("10.244.0.0/26", "10.1.0.4", "10.1.0.4"),
    ]
    rs_b = [_route("10.99.0.2/31", "10.1.0.4", "10.1.0.4")]  # mid-move: the other node
    v6 = LearnedRoute(
        IPv6Network("fd00::/64"),
        IPv6Address("fd00::1"),
        (),
        A("10.1.0.4"),
        "IGP",
        A("10.0.1.4"),
        True,
    )
    assert fabric_routes([rs_a, [*rs_b, v6]]) == {
        N("10.99.0.2/31"): (A("10.1.0.4"), A("10.1.0.5")),  # ECMP while they disagree
        N("10.244.0.0/26"): (A("10.1.0.4"),),
    }
    assert fabric_routes([]) == {}


def test_the_fabric_follows_the_kernel_by_difference() -> None:
    kernel: list[dict[str, Any]] = [
        {"dst": "10.99.0.0/31", "gateway": "10.1.0.4"},
        {"dst": "10.99.0.2/31", "nexthops": [{"gateway": "10.1.0.5"}, {"gateway": "10.1.0.4"}]},
        {"dst": "10.244.0.0/26", "gateway": "10.1.0.4"},
    ]
    have = hubroutes.parse_kernel(kernel)
    assert have[N("10.99.0.2/31")] == (A("10.1.0.4"), A("10.1.0.5"))
    want = {
        N("10.99.0.0/31"): (A("10.1.0.5"),),
        N("10.99.0.2/31"): (A("10.1.0.4"), A("10.1.0.5")),
        N("10.99.0.8/31"): (A("10.1.0.4"), A("10.1.0.5")),
    }
    assert hubroutes.commands(have, want) == [
        "route del 10.244.0.0/26 proto bgp",
        "route replace 10.99.0.0/31 proto bgp via 10.1.0.5",
        "route replace 10.99.0.8/31 proto bgp nexthop via 10.1.0.4 nexthop via 10.1.0.5",
    ]
    assert hubroutes.commands(want, want) == []


def test_the_route_servers_are_graceful_restart_helpers(tmp_path: Path) -> None:
    rs = azure.route_server(azure_topology(), "rs-b", tmp_path)
    assert (rs.netns, rs.socket) == (
        "egwu-rs-b",
        tmp_path / "egwu" / "hub" / "rs-b" / "gobgpd.sock",
    )
    config = tomllib.loads(rs.render())
    assert config["global"]["config"]["as"] == 65515
    assert config["global"]["config"]["local-address-list"] == ["10.0.1.5"]
    neighbors = config["neighbors"]
    assert [(n["config"]["neighbor-address"], n["config"]["peer-as"]) for n in neighbors] == [
        ("10.1.0.4", 63400),
        ("10.1.0.5", 63400),
    ]
    for n in neighbors:
        assert n["graceful-restart"]["config"]["enabled"] is True
        [family] = n["afi-safis"]
        assert family["config"]["afi-safi-name"] == "ipv4-unicast"
        assert family["mp-graceful-restart"]["config"]["enabled"] is True
        assert n["timers"]["config"]["connect-retry"] == 1
    assert azure.gobgpd_argv(rs)[-2:] == ["--api-hosts", f"unix://{rs.socket}"]


def test_every_node_sends_every_prefix_with_the_originating_next_hop() -> None:
    paths = observe.expected_paths(
        {N("10.99.0.0/31"): A("10.1.0.4")}, [A("10.1.0.4"), A("10.1.0.5")], 63400
    )
    assert paths == {
        (N("10.99.0.0/31"), A("10.1.0.4"), A("10.1.0.4"), (63400,)),
        (N("10.99.0.0/31"), A("10.1.0.4"), A("10.1.0.5"), (63400,)),
    }
