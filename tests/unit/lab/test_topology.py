"""The lab's topology: pure values, validated on construction, edited by pure functions."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from egressgw.lab import state
from egressgw.lab.addressplan import aws_topology, new_pod, next_pod_ip
from egressgw.lab.netns import edge_ruleset, node_ruleset
from egressgw.lab.topology import (
    AzureEdge,
    GatewayPod,
    InternetHost,
    Pod,
    Topology,
    TopologyError,
    pod_ns,
)
from egressgw.lab.topology_edits import with_elastic_ip, with_pod, without_pod

A = IPv4Address


def lab() -> Topology:
    t = aws_topology("egwu")
    t = with_pod(t, new_pod(t, "default", "netshoot", "node-a1"))
    return with_pod(
        t, GatewayPod("default", "egw-1", "node-b1", A("10.99.24.1"), A("198.51.100.11"))
    )


def test_aws_topology_follows_the_reference_layout() -> None:
    t = aws_topology("egwu")
    assert [(z.name, str(z.subnet), str(z.router)) for z in t.zones] == [
        ("us-east-1a", "10.0.160.0/20", "10.0.160.1"),
        ("us-east-1b", "10.0.176.0/20", "10.0.176.1"),
    ]
    assert [z.gateway_subnets for z in t.zones] == [
        (IPv4Network("10.99.0.0/20"),),
        (IPv4Network("10.99.16.0/20"),),
    ]
    assert [(n.name, n.zone, str(n.ip), str(n.pod_cidr)) for n in t.nodes] == [
        ("node-a1", "us-east-1a", "10.0.160.10", "10.244.0.0/24"),
        ("node-a2", "us-east-1a", "10.0.160.11", "10.244.1.0/24"),
        ("node-b1", "us-east-1b", "10.0.176.10", "10.244.2.0/24"),
        ("node-b2", "us-east-1b", "10.0.176.11", "10.244.3.0/24"),
    ]
    assert t.nat_address("us-east-1a") == A("198.51.100.1")
    assert t.nat_address("us-east-1b") == A("198.51.100.2")
    assert {h.stands_for: h.address for h in t.internet_hosts}[A("8.8.8.8")] == A("203.0.113.8")
    assert {h.stands_for: h.address for h in t.internet_hosts}[A("4.2.2.2")] == A("203.0.113.4")


def test_namespaces_are_named_by_prefix_and_kind() -> None:
    assert lab().namespaces() == (
        "egwu-vpc",
        "egwu-edge",
        "egwu-internet",
        "egwu-node-node-a1",
        "egwu-node-node-a2",
        "egwu-node-node-b1",
        "egwu-node-node-b2",
        "egwu-pod-default-netshoot",
        "egwu-gw-default-egw-1",
    )


def test_interface_names_fit_the_kernel_and_follow_calico() -> None:
    t = lab()
    pod = t.pods[0]
    assert pod.ifname == "cali" + hashlib.sha1(b"default.netshoot").hexdigest()[:11]
    assert t.zones[0].bridge == "br-us-east-1a"
    assert t.nodes[0].vpc_port == "n-node-a1"
    long = replace(t.nodes[0], name="ip-10-0-160-10.ec2.internal")
    assert len(long.vpc_port) == 15 and long.vpc_port.startswith("n-")


def test_pod_ipam_takes_the_lowest_free_address_of_the_node() -> None:
    t = lab()
    assert t.pods[0].ip == A("10.244.0.1")
    assert next_pod_ip(t, "node-a1") == A("10.244.0.2")
    t = with_pod(t, new_pod(t, "default", "two", "node-a1"))
    t = without_pod(t, "default", "netshoot")
    assert next_pod_ip(t, "node-a1") == A("10.244.0.1")


def test_with_pod_replaces_so_a_gateway_can_move() -> None:
    t = lab()
    moved = replace(t.gateways[0], node="node-a2")
    t2 = with_pod(t, moved)
    assert t2.gateways == (moved,)
    assert t2.on_node("node-b1") == ()
    assert t2.find("default", "egw-1") == moved


def test_without_pod_removes_either_kind_and_ignores_absent() -> None:
    t = lab()
    assert without_pod(without_pod(t, "default", "egw-1"), "default", "netshoot").workloads() == ()
    assert without_pod(t, "default", "nope") == t


def test_elastic_ip_association_is_a_topology_edit() -> None:
    t = with_elastic_ip(lab(), "default", "egw-1", A("198.51.100.12"))
    assert t.gateways[0].elastic_ip == A("198.51.100.12")
    assert with_elastic_ip(t, "default", "egw-1", None).gateways[0].elastic_ip is None


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: with_pod(t, Pod("default", "x", "node-a1", A("10.244.3.7"))), "outside node-a1"),
        (lambda t: with_pod(t, Pod("default", "x", "node-zz", A("10.244.0.9"))), "unknown node"),
        (lambda t: with_pod(t, Pod("default", "x", "node-a1", A("10.244.0.1"))), "used twice"),
        (
            lambda t: with_pod(t, GatewayPod("default", "g", "node-a1", A("10.244.0.9"))),
            "cannot be a gateway",
        ),
        (
            lambda t: with_pod(
                t, GatewayPod("d", "g", "node-a1", A("10.99.8.1"), A("198.51.100.99"))
            ),
            "not allocated",
        ),
        (
            lambda t: with_pod(
                t, GatewayPod("d", "g", "node-a1", A("10.99.8.1"), A("198.51.100.11"))
            ),
            "used twice",
        ),
        (lambda t: replace(t, internet_hosts=(InternetHost("g", A("8.8.8.8")),)), "documentation"),
        (lambda t: replace(t, prefix="bad/prefix"), "bad prefix"),
        (lambda t: replace(t, nodes=(replace(t.nodes[0], ip=A("10.0.160.1")),)), "free host"),
        (lambda t: replace(t, pod_pool=IPv4Network("10.0.0.0/16")), "overlaps the VPC"),
        (lambda t: replace(t, edge=replace(t.edge, nat_gateways=())), "NAT gateway"),
        (lambda t: with_pod(t, Pod("default", "a-b", "node-a1", A("10.244.0.9"))), None),
    ],
)
def test_invalid_topologies_cannot_be_built(edit: object, message: str | None) -> None:
    t = with_pod(lab(), Pod("default-a", "b", "node-a1", A("10.244.0.8")))
    with pytest.raises(TopologyError, match=message or "duplicate pod"):
        edit(t)  # type: ignore[operator]


def test_render_lists_every_namespace_and_address() -> None:
    text = str(lab())
    for expected in [
        "lab egwu (aws edge)",
        "zone us-east-1a  10.0.160.0/20 via 10.0.160.1 on br-us-east-1a",
        "nat 198.51.100.2",
        "node node-b1  10.0.176.10  pods 10.244.2.0/24",
        "pod default/netshoot  10.244.0.1",
        "gw  default/egw-1  10.99.24.1  eip 198.51.100.11",
        "ns egwu-gw-default-egw-1",
        "google-dns  203.0.113.8  (stands for 8.8.8.8)",
    ]:
        assert expected in text


def test_gateway_namespace_differs_from_pod_namespace() -> None:
    t = lab()
    assert pod_ns("p", t.gateways[0]) == "p-gw-default-egw-1"
    assert pod_ns("p", t.pods[0]) == "p-pod-default-netshoot"


def test_node_ruleset_masquerades_only_pod_traffic_leaving_the_cluster() -> None:
    t = lab()
    rules = node_ruleset(t, t.nodes[0])
    assert "table ip egressgw-lab" in rules
    assert "elements = { 10.244.0.0/16, 10.0.0.0/16, 10.99.0.0/16 }" in rules
    assert 'oifname "eth0" ip saddr 10.244.0.0/16 ip daddr != @cluster' in rules
    assert "meta mark & 0x80000 == 0 snat to 10.0.160.10" in rules
    assert "meta mark" not in node_ruleset(replace(t, nat_skip_mark=0), t.nodes[0])


def test_edge_ruleset_maps_elastic_ips_and_zone_nat_gateways() -> None:
    rules = edge_ruleset(lab())
    assert "elements = { 198.51.100.11 : 10.99.24.1 }" in rules
    assert "elements = { 10.99.24.1 : 198.51.100.11 }" in rules
    assert "ip saddr { 10.0.160.0/20, 10.99.0.0/20 } snat to 198.51.100.1" in rules
    assert "ip saddr { 10.0.176.0/20, 10.99.16.0/20 } snat to 198.51.100.2" in rules


def test_azure_edge_is_a_firewall() -> None:
    t = replace(
        aws_topology("egwu"),
        edge=AzureEdge(A("198.51.100.5"), allowed_sources=(IPv4Network("10.99.0.0/29"),)),
    )
    rules = edge_ruleset(t)
    assert "elements = { 10.99.0.0/29 }" in rules
    assert "snat to 198.51.100.5" in rules
    assert t.nat_address("us-east-1a") == A("198.51.100.5")


def test_state_round_trips_a_topology(tmp_path: Path) -> None:
    t = lab()
    state.save_topology(t, tmp_path)
    assert state.load_topology("egwu", tmp_path) == t
    assert state.labs(tmp_path) == ["egwu"]
    assert state.load("egwu", tmp_path).processes == ()
    state.discard("egwu", tmp_path)
    assert state.load_topology("egwu", tmp_path) is None
