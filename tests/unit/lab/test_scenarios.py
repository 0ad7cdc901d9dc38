"""The named scenarios and the pure steps from a scenario's manifests to a lab."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest

from egressgw.lab import demo, scenarios
from egressgw.lab.addressplan import default_internet_hosts
from egressgw.lab.topology import TopologyError
from egressgw.manifests import load
from egressgw.model import EgressGatewayPolicy, Node, Pod, Resource
from egressgw.model.parsing import from_dict, to_dict

A = IPv4Address
N = IPv4Network


def aws_resources() -> tuple[Resource, ...]:
    return load([scenarios.AWS.examples]).all


def policy(*destinations: str | None) -> EgressGatewayPolicy:
    rules: list[dict[str, Any]] = []
    for i, d in enumerate(destinations):
        rule: dict[str, Any] = {
            "gateway": {"selector": f"egress-gateway == 'egw-{i}'", "namespaceSelector": "all()"}
        }
        if d is not None:
            rule["destination"] = {"cidr": d}
        rules.append(rule)
    obj = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "EgressGatewayPolicy",
        "metadata": {"name": "p"},
        "spec": {"rules": rules},
    }
    res = from_dict(obj)
    assert isinstance(res, EgressGatewayPolicy)
    return res


def test_the_aws_scenario_is_the_reference_run() -> None:
    aws = scenarios.get("aws")
    assert aws.examples.name == "aws-public-ip" and (aws.examples / "policy.yaml").is_file()
    assert aws.transport == "vxlan"
    assert aws.subnet_zones == {
        "subnet-0a1b2c3d4e5f60001": "us-east-1a",
        "subnet-0a1b2c3d4e5f60002": "us-east-1b",
    }
    assert aws.internet_hosts == default_internet_hosts()
    assert aws.with_transport("native").transport == "native"
    with pytest.raises(ValueError, match="unknown transport"):
        aws.with_transport("ipip")  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="known are aws"):
        scenarios.get("gcp")


def test_the_topology_comes_from_the_manifests_node_objects() -> None:
    t = scenarios.build_topology(scenarios.AWS, aws_resources(), "eglu")
    assert [(n.name, n.zone, str(n.ip), str(n.pod_cidr)) for n in t.nodes] == [
        ("node-1", "us-east-1a", "10.0.160.10", "10.244.0.0/24"),
        ("node-2", "us-east-1a", "10.0.160.11", "10.244.1.0/24"),
        ("node-3", "us-east-1b", "10.0.176.10", "10.244.2.0/24"),
        ("node-4", "us-east-1b", "10.0.176.11", "10.244.3.0/24"),
    ]
    assert [(z.name, z.subnet, z.gateway_subnets) for z in t.zones] == [
        ("us-east-1a", N("10.0.160.0/20"), (N("10.99.0.0/20"),)),
        ("us-east-1b", N("10.0.176.0/20"), (N("10.99.16.0/20"),)),
    ]
    assert (t.nat_address("us-east-1a"), t.nat_address("us-east-1b")) == (
        A("198.51.100.1"),
        A("198.51.100.2"),
    )
    assert t.edge.elastic_ips == tuple(A(f"198.51.100.{i}") for i in range(11, 17))  # type: ignore[union-attr]
    assert t.pods == () and t.gateways == ()
    assert {h.stands_for: h.address for h in t.internet_hosts}[A("8.8.8.8")] == A("203.0.113.8")


def node(name: str, zone: str, ip: str | None) -> Node:
    addresses = [{"type": "InternalIP", "address": ip}] if ip else []
    obj = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}},
        "status": {"addresses": addresses},
    }
    res = from_dict(obj)
    assert isinstance(res, Node)
    return res


def test_a_node_outside_the_scenario_is_refused() -> None:
    with pytest.raises(TopologyError, match="zone 'eu-west-1a'"):
        scenarios.build_topology(scenarios.AWS, [node("n", "eu-west-1a", "10.0.160.5")], "eglu")
    with pytest.raises(TopologyError, match="no InternalIP"):
        scenarios.build_topology(scenarios.AWS, [node("n", "us-east-1a", None)], "eglu")
    with pytest.raises(TopologyError, match="not a free host"):
        scenarios.build_topology(scenarios.AWS, [node("n", "us-east-1a", "10.0.176.5")], "eglu")


def test_stand_in_destinations_become_lab_addresses_written_alike() -> None:
    hosts = default_internet_hosts()
    original = policy(None, "8.8.8.8", "4.2.2.2/32", "8.8.0.0/16", "9.9.9.9")
    out, rewrites = scenarios.rewrite_destinations([original], hosts)
    rewritten = out[0]
    assert isinstance(rewritten, EgressGatewayPolicy)
    assert [r.destination.cidr if r.destination else None for r in rewritten.spec.rules] == [
        None,
        "203.0.113.8",
        "203.0.113.4/32",
        "8.8.0.0/16",
        "9.9.9.9",
    ]
    assert [str(r) for r in rewrites] == [
        "EgressGatewayPolicy p rule 1: 8.8.8.8 -> 203.0.113.8",
        "EgressGatewayPolicy p rule 2: 4.2.2.2/32 -> 203.0.113.4/32",
    ]
    # Everything but the destinations is left as it was.
    assert [r.gateway for r in rewritten.spec.rules] == [r.gateway for r in original.spec.rules]


def test_a_batch_without_stand_ins_is_returned_unchanged() -> None:
    batch = [policy(None, "10.0.0.0/8")]
    out, rewrites = scenarios.rewrite_destinations(batch, default_internet_hosts())
    assert out[0] is batch[0] and rewrites == []


def test_stand_in_notes_say_who_plays_whom() -> None:
    assert scenarios.stand_in_notes(default_internet_hosts()) == (
        "8.8.8.8 is played by 203.0.113.8 (google-dns)",
        "4.2.2.2 is played by 203.0.113.4 (level3)",
        "34.160.111.145 is played by 203.0.113.100 (ifconfig.me)",
    )


def test_lab_resources_carry_pod_cidrs_and_lab_destinations() -> None:
    resources = aws_resources()
    t = scenarios.build_topology(scenarios.AWS, resources, "eglu")
    out, rewrites = scenarios.lab_resources(resources, t)
    assert len(out) == len(resources) == 33  # one etcd transaction (at most 128 writes)
    cidrs = {r.metadata.name: r.spec.pod_cidr for r in out if isinstance(r, Node)}
    assert cidrs == {f"node-{i}": N(f"10.244.{i - 1}.0/24") for i in range(1, 5)}
    (lab_policy,) = (r for r in out if isinstance(r, EgressGatewayPolicy))
    assert {str(r.destination_cidr) for r in lab_policy.spec.rules} == {
        "0.0.0.0/0",
        "203.0.113.8/32",
        "203.0.113.4/32",
    }
    assert len(rewrites) == 2
    # Everything else is applied exactly as written.
    untouched = [r for r in out if not isinstance(r, Node | EgressGatewayPolicy)]
    assert [to_dict(r) for r in untouched] == [
        to_dict(r) for r in resources if not isinstance(r, Node | EgressGatewayPolicy)
    ]


def gateway_pod(name: str, gateway: str, eip: str | None) -> Pod:
    notes = {"egressgw.io/egress-gateway": gateway} | (
        {"egressgw.io/elastic-ip": eip} if eip else {}
    )
    res = from_dict(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "annotations": notes}}
    )
    assert isinstance(res, Pod)
    return res


def test_the_demo_expects_the_elastic_ips_the_controller_annotated() -> None:
    pods = [
        gateway_pod("egw-1-0", "egw-1", "198.51.100.11"),
        gateway_pod("egw-1-1", "egw-1", "198.51.100.21"),
        gateway_pod("egw-2-0", "egw-2", None),
        gateway_pod("netshoot", "", None),
    ]
    assert demo.gateway_elastic_ips(pods) == {"egw-1": (A("198.51.100.11"), A("198.51.100.21"))}
