"""The lab's address plans: which addresses a lab's parts get, as pure functions.

- `default_internet_hosts`: the internet stand-ins every scenario has (8.8.8.8 is played
  by 203.0.113.8, ...);
- `nat_gateways`: one NAT gateway per zone, numbered from the public range's first host;
- `free_address`, `next_pod_ip`, `new_pod`: the lowest free pod address of a node (the
  lab's stand-in for Calico IPAM), for the kubelet and the tests;
- `aws_topology`: the REF-AWS layout computed from its parameters, without manifests (the
  tests' lab; `lab up` builds its topology from the manifests, `scenarios.build_topology`).

Pure: no I/O, no clock, no randomness. Must not hold the description types or their
validation (`lab.topology`), nor a scenario's own choices (`lab.scenarios`).
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from ipaddress import IPv4Address, IPv4Network

from egressgw.lab.hub import PUBLIC_CIDR
from egressgw.lab.topology import (
    AwsEdge,
    InternetHost,
    NatGateway,
    Node,
    Pod,
    Topology,
    TopologyError,
    Zone,
)


def default_internet_hosts() -> tuple[InternetHost, ...]:
    return (
        InternetHost("google-dns", IPv4Address("203.0.113.8"), IPv4Address("8.8.8.8")),
        InternetHost("level3", IPv4Address("203.0.113.4"), IPv4Address("4.2.2.2")),
        InternetHost("ifconfig.me", IPv4Address("203.0.113.100"), IPv4Address("34.160.111.145")),
    )


def nat_gateways(
    zones: Sequence[Zone], public: IPv4Network = PUBLIC_CIDR
) -> tuple[NatGateway, ...]:
    """A NAT gateway per zone, in zone order: `public`'s .1, .2, ..."""
    return tuple(NatGateway(z.name, public.network_address + 1 + k) for k, z in enumerate(zones))


# --- pod addresses --------------------------------------------------------------------------


def free_address(cidr: IPv4Network, used: Container[IPv4Address]) -> IPv4Address | None:
    """The lowest host address of `cidr` not in `used`; None when all are taken."""
    return next((ip for ip in cidr.hosts() if ip not in used), None)


def next_pod_ip(t: Topology, node: str) -> IPv4Address:
    """The lowest free address of the node's pod CIDR (the lab's stand-in for Calico IPAM)."""
    found = free_address(t.node(node).pod_cidr, {p.ip for p in t.pods})
    if found is None:
        raise TopologyError(f"node {node} has no free pod address")
    return found


def new_pod(t: Topology, namespace: str, name: str, node: str) -> Pod:
    return Pod(namespace=namespace, name=name, node=node, ip=next_pod_ip(t, node))


# --- the AWS reference layout ---------------------------------------------------------------


def aws_topology(
    prefix: str, zones: int = 2, nodes_per_zone: int = 2, elastic_ips: int = 6
) -> Topology:
    """The REF-AWS layout: VPC 10.0.0.0/16 + secondary 10.99.0.0/16, private node subnets
    cidrsubnet(10.0.0.0/16, 4, k+10), gateway subnets cidrsubnet(10.99.0.0/16, 4, k), a NAT
    gateway per zone (198.51.100.1, .2, ...), EIPs from 198.51.100.11, pod pool 10.244.0.0/16
    with a /24 per node. Zones are us-east-1a, -1b, ...; nodes node-a1, node-a2, node-b1, ..."""
    node_subnets = list(IPv4Network("10.0.0.0/16").subnets(new_prefix=20))[10:]
    gw_subnets = list(IPv4Network("10.99.0.0/16").subnets(new_prefix=20))
    pool = IPv4Network("10.244.0.0/16")
    blocks = pool.subnets(new_prefix=24)
    zs, nodes = [], []
    for k in range(zones):
        letter = "abcdef"[k]
        zs.append(Zone(f"us-east-1{letter}", node_subnets[k], (gw_subnets[k],)))
        for i in range(nodes_per_zone):
            ip = node_subnets[k].network_address + 10 + i
            nodes.append(Node(f"node-{letter}{i + 1}", zs[-1].name, ip, next(blocks)))
    edge = AwsEdge(
        nat_gateways=nat_gateways(zs),
        elastic_ips=tuple(PUBLIC_CIDR.network_address + 11 + i for i in range(elastic_ips)),
    )
    return Topology(
        prefix=prefix,
        vpc_cidrs=(IPv4Network("10.0.0.0/16"), IPv4Network("10.99.0.0/16")),
        pod_pool=pool,
        zones=tuple(zs),
        edge=edge,
        nodes=tuple(nodes),
        internet_hosts=default_internet_hosts(),
    )
