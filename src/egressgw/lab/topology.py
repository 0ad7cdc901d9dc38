"""What a lab is made of: zones, nodes, pods, gateway pods, the cloud edge and the internet.

Pure frozen values, their queries, namespace names and printout: no I/O, no clock, no
randomness. Validation lives in `Topology.__post_init__`, so an invalid lab cannot exist.
Must not lay a topology out (address plans: `lab.addressplan`) or change one as pods come
and go (`lab.topology_edits`); `netns.build` turns one into network namespaces.

Naming (see `namespaces`): `<prefix>-vpc`, `<prefix>-edge`, `<prefix>-internet`,
`<prefix>-node-<node>`, `<prefix>-pod-<namespace>-<name>`, `<prefix>-gw-<namespace>-<name>`,
and in an Azure lab `<prefix>-<route server>` (the edge is then the hub, `hub.AzureEdge`).
Public addresses come only from the documentation ranges, private ones from RFC 1918.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Literal

from egressgw.lab.hub import PUBLIC_CIDR, RouteServerHost
from egressgw.lab.hub import AzureEdge as AzureEdge  # re-exported: an `Edge` of the topology

DOC_RANGES = tuple(IPv4Network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"))
PRIVATE_RANGES = tuple(IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
#: Calico's fake next hop for pods: the node answers ARP for it by proxy_arp.
POD_GATEWAY = IPv4Address("169.254.1.1")
_VPC_EDGE_LINK = IPv4Network("10.0.255.252/30")
_EDGE_INTERNET_LINK = IPv4Network("192.0.2.0/30")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def _ifname(head: str, name: str) -> str:
    """`head + name` if it is a legal interface name (<= 15 chars), else head + a stable hash."""
    if len(head + name) <= 15 and _IFNAME_RE.match(name):
        return head + name
    return head + hashlib.sha1(name.encode()).hexdigest()[: 15 - len(head)]


@dataclass(frozen=True)
class Zone:
    """An availability zone: one node subnet (a bridge in the VPC router, which holds `.1`)
    and the subnets its gateway pods' secondary IPs come from (routed as /32s)."""

    name: str
    subnet: IPv4Network
    gateway_subnets: tuple[IPv4Network, ...] = ()

    @property
    def router(self) -> IPv4Address:
        return self.subnet.network_address + 1

    @property
    def bridge(self) -> str:
        return _ifname("br-", self.name)


@dataclass(frozen=True)
class Node:
    name: str
    zone: str
    ip: IPv4Address
    pod_cidr: IPv4Network

    @property
    def vpc_port(self) -> str:
        """The VPC router's end of this node's eth0."""
        return _ifname("n-", self.name)


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    node: str
    ip: IPv4Address

    @property
    def ifname(self) -> str:
        """The node's end of the pod's veth, named as Calico's CNI names it."""
        return "cali" + hashlib.sha1(f"{self.namespace}.{self.name}".encode()).hexdigest()[:11]


@dataclass(frozen=True)
class GatewayPod(Pod):
    """A gateway pod; `ip` is its AWS secondary IP, `elastic_ip` the EIP associated with it."""

    elastic_ip: IPv4Address | None = None


@dataclass(frozen=True)
class InternetHost:
    """An address in the lab's internet that stands in for a real one (e.g. 8.8.8.8)."""

    name: str
    address: IPv4Address
    stands_for: IPv4Address | None = None


@dataclass(frozen=True)
class NatGateway:
    zone: str
    address: IPv4Address


@dataclass(frozen=True)
class AwsEdge:
    """Internet gateway (1:1 NAT of each associated Elastic IP) plus one NAT gateway per zone
    (SNAT of every other source in the zone's subnets). `elastic_ips` are the allocated EIPs,
    associated or not; the associations are the gateway pods' `elastic_ip`."""

    nat_gateways: tuple[NatGateway, ...]
    elastic_ips: tuple[IPv4Address, ...] = ()
    public_cidr: IPv4Network = PUBLIC_CIDR
    mode: Literal["aws"] = "aws"


Edge = AwsEdge | AzureEdge


@dataclass(frozen=True)
class Topology:
    """A whole lab. `vpc_edge_link` joins the VPC router (first host) to the edge (second);
    `edge_internet_link` joins the edge (first host) to the internet (second)."""

    prefix: str
    vpc_cidrs: tuple[IPv4Network, ...]
    pod_pool: IPv4Network
    zones: tuple[Zone, ...]
    edge: Edge
    nodes: tuple[Node, ...] = ()
    pods: tuple[Pod, ...] = ()
    gateways: tuple[GatewayPod, ...] = ()
    internet_hosts: tuple[InternetHost, ...] = ()
    vpc_edge_link: IPv4Network = _VPC_EDGE_LINK
    edge_internet_link: IPv4Network = _EDGE_INTERNET_LINK
    underlay_mtu: int = 9001
    pod_mtu: int = 1500
    #: natOutgoing leaves alone packets whose fwmark has one of these bits (0 = none):
    #: the egress dataplane marks what it steers to a gateway, whose source must survive.
    nat_skip_mark: int = 0x80000

    def __post_init__(self) -> None:
        _validate(self)

    def __str__(self) -> str:
        return render(self)

    def zone(self, name: str) -> Zone:
        for z in self.zones:
            if z.name == name:
                return z
        raise KeyError(f"no zone {name}")

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node {name}")

    def workloads(self) -> tuple[Pod, ...]:
        """Pods then gateway pods."""
        return (*self.pods, *self.gateways)

    def find(self, namespace: str, name: str) -> Pod | None:
        return next(
            (p for p in self.workloads() if (p.namespace, p.name) == (namespace, name)), None
        )

    def on_node(self, node: str) -> tuple[Pod, ...]:
        return tuple(p for p in self.workloads() if p.node == node)

    def nat_address(self, zone: str) -> IPv4Address | None:
        if isinstance(self.edge, AzureEdge):
            return self.edge.public_address
        return next((g.address for g in self.edge.nat_gateways if g.zone == zone), None)

    def namespaces(self) -> tuple[str, ...]:
        """Every namespace of the lab: infrastructure, nodes, pods, gateway pods."""
        infra = (vpc_ns(self.prefix), edge_ns(self.prefix), internet_ns(self.prefix))
        hub = tuple(rs_ns(self.prefix, rs) for rs in self.route_servers())
        nodes = tuple(node_ns(self.prefix, n.name) for n in self.nodes)
        return infra + hub + nodes + tuple(pod_ns(self.prefix, p) for p in self.workloads())

    def route_servers(self) -> tuple[RouteServerHost, ...]:
        return self.edge.route_servers if isinstance(self.edge, AzureEdge) else ()

    def bridge(self, zone: str) -> str:
        """The bridge of `zone`'s subnet: zones sharing a subnet (an Azure subnet spans
        zones) share the bridge of the first of them."""
        subnet = self.zone(zone).subnet
        return next(z.bridge for z in self.zones if z.subnet == subnet)

    def edge_link_hosts(self) -> tuple[IPv4Address, IPv4Address]:
        """The VPC router's and the edge's addresses on `vpc_edge_link`: its first two
        hosts, unless the Azure firewall names its own address."""
        near, far = list(self.vpc_edge_link.hosts())[:2]
        if isinstance(self.edge, AzureEdge) and self.edge.firewall_ip is not None:
            far = self.edge.firewall_ip
        return near, far


def valid_prefix(prefix: str) -> bool:
    """1-40 characters of [A-Za-z0-9_.-], starting with a letter or digit."""
    return bool(_PREFIX_RE.match(prefix))


class TopologyError(ValueError):
    """The topology is inconsistent; the message lists every problem found."""


def vpc_ns(prefix: str) -> str:
    return f"{prefix}-vpc"


def edge_ns(prefix: str) -> str:
    return f"{prefix}-edge"


def internet_ns(prefix: str) -> str:
    return f"{prefix}-internet"


def node_ns(prefix: str, node: str) -> str:
    return f"{prefix}-node-{node}"


def rs_ns(prefix: str, rs: RouteServerHost) -> str:
    return f"{prefix}-{rs.name}"


def pod_ns(prefix: str, pod: Pod) -> str:
    kind = "gw" if isinstance(pod, GatewayPod) else "pod"
    return f"{prefix}-{kind}-{pod.namespace}-{pod.name}"


# --- validation -------------------------------------------------------------------------


def _within(net: IPv4Network | IPv4Address, ranges: tuple[IPv4Network, ...]) -> bool:
    net = IPv4Network(net)
    return any(net.subnet_of(r) for r in ranges)


def _dups(items: Sequence[Hashable]) -> list[Hashable]:
    return sorted((i for i, count in Counter(items).items() if count > 1), key=str)


def _not_hosts(zone: Zone) -> tuple[IPv4Address, ...]:
    return (zone.subnet.network_address, zone.subnet.broadcast_address, zone.router)


def _validate(t: Topology) -> None:
    problems = [*_check_ranges(t), *_check_nodes(t), *_check_workloads(t), *_check_edge(t)]
    if problems:
        raise TopologyError("; ".join(problems))


def _check_ranges(t: Topology) -> Iterator[str]:
    if not valid_prefix(t.prefix):
        yield f"bad prefix {t.prefix!r}"
    subnets = [z.subnet for z in t.zones] + [s for z in t.zones for s in z.gateway_subnets]
    for net in [*t.vpc_cidrs, t.pod_pool, *subnets, t.vpc_edge_link]:
        if not _within(net, PRIVATE_RANGES):
            yield f"{net} is not a private range"
    for net in subnets:
        if not _within(net, t.vpc_cidrs):
            yield f"subnet {net} is outside the VPC"
    if any(t.pod_pool.overlaps(v) for v in t.vpc_cidrs):
        yield f"pod pool {t.pod_pool} overlaps the VPC"
    if any(t.vpc_edge_link.overlaps(s) for s in subnets):
        yield f"VPC-edge link {t.vpc_edge_link} overlaps a subnet"
    publics: list[IPv4Network | IPv4Address] = [
        t.edge_internet_link,
        t.edge.public_cidr,
        *(h.address for h in t.internet_hosts),
    ]
    for pub in publics:
        if not _within(pub, DOC_RANGES):
            yield f"{pub} is not in a documentation range"
    for host in t.internet_hosts:
        if host.address in t.edge.public_cidr or host.address in t.edge_internet_link:
            yield f"internet host {host.name} collides with the edge's addresses"
    for dup in _dups([z.name for z in t.zones]) + _dups([h.name for h in t.internet_hosts]):
        yield f"duplicate name {dup}"
    if not 576 <= t.pod_mtu <= 65535 or not 576 <= t.underlay_mtu <= 65535:
        yield "bad MTU"


def _check_nodes(t: Topology) -> Iterator[str]:
    zones = {z.name: z for z in t.zones}
    for dup in _dups([n.name for n in t.nodes]):
        yield f"duplicate node {dup}"
    for n in t.nodes:
        zone = zones.get(n.zone)
        if zone is None:
            yield f"node {n.name}: unknown zone {n.zone}"
        elif n.ip not in zone.subnet or n.ip in _not_hosts(zone):
            yield f"node {n.name}: {n.ip} is not a free host of {zone.subnet}"
        if not n.pod_cidr.subnet_of(t.pod_pool):
            yield f"node {n.name}: {n.pod_cidr} is outside the pod pool"
        if any(n.pod_cidr.overlaps(o.pod_cidr) for o in t.nodes if o is not n):
            yield f"node {n.name}: pod CIDR {n.pod_cidr} overlaps another node's"


def _check_workloads(t: Topology) -> Iterator[str]:
    nodes = {n.name: n for n in t.nodes}
    loads = t.workloads()
    yield from (f"{p.namespace}/{p.name} is a gateway" for p in t.pods if type(p) is not Pod)
    yield from (
        f"{p.namespace}/{p.name} is not a gateway"
        for p in t.gateways
        if not isinstance(p, GatewayPod)
    )
    for p in loads:
        node = nodes.get(p.node)
        if not (_IFNAME_RE.match(p.namespace) and _IFNAME_RE.match(p.name)):
            yield f"bad pod name {p.namespace}/{p.name}"
        if node is None:
            yield f"{p.namespace}/{p.name}: unknown node {p.node}"
        elif not isinstance(p, GatewayPod) and p.ip not in node.pod_cidr:
            yield f"{p.namespace}/{p.name}: {p.ip} is outside {p.node}'s pod CIDR {node.pod_cidr}"
        if isinstance(p, GatewayPod) and (p.ip in t.pod_pool or not _within(p.ip, PRIVATE_RANGES)):
            yield f"{p.namespace}/{p.name}: {p.ip} cannot be a gateway address"
    names = [(p.namespace, p.name) for p in loads]
    for dup in _dups(names) + _dups([pod_ns(t.prefix, p) for p in loads]):
        yield f"duplicate pod {dup}"
    for dup in _dups([(p.node, p.ifname) for p in loads]):
        yield f"interface name clash {dup}"
    for dup in _dups([*(p.ip for p in loads), *(n.ip for n in t.nodes)]):
        yield f"address {dup} used twice"


def _check_edge(t: Topology) -> Iterator[str]:
    eips = [g.elastic_ip for g in t.gateways if g.elastic_ip is not None]
    if isinstance(t.edge, AzureEdge):
        links = [t.vpc_edge_link, *(z.subnet for z in t.zones)]
        yield from t.edge.problems(t.vpc_cidrs, links)
        yield from (f"Elastic IP {e} in an Azure lab" for e in eips)
        return
    nat_zones = [g.zone for g in t.edge.nat_gateways]
    if sorted(nat_zones) != sorted(z.name for z in t.zones):
        yield "each zone needs exactly one NAT gateway"
    nats = [g.address for g in t.edge.nat_gateways]
    for dup in _dups([*nats, *t.edge.elastic_ips]) + _dups(eips):
        yield f"public address {dup} used twice"
    for addr in [*nats, *t.edge.elastic_ips]:
        if addr not in t.edge.public_cidr:
            yield f"{addr} is outside the public range {t.edge.public_cidr}"
    for eip in eips:
        if eip not in t.edge.elastic_ips:
            yield f"Elastic IP {eip} is not allocated"


# --- printing ---------------------------------------------------------------------------


def _pod_line(prefix: str, p: Pod) -> str:
    if isinstance(p, GatewayPod):
        eip = f"  eip {p.elastic_ip}" if p.elastic_ip else ""
        return f"      gw  {p.namespace}/{p.name}  {p.ip}{eip}  {p.ifname}  ns {pod_ns(prefix, p)}"
    return f"      pod {p.namespace}/{p.name}  {p.ip}  {p.ifname}  ns {pod_ns(prefix, p)}"


def render(t: Topology) -> str:
    """A human-readable tree of the lab: namespaces, interfaces and addresses."""
    lines = [
        f"lab {t.prefix} ({t.edge.mode} edge)",
        f"  vpc {' '.join(map(str, t.vpc_cidrs))}  pod pool {t.pod_pool}  ns {vpc_ns(t.prefix)}",
    ]
    for z in t.zones:
        gws = " ".join(map(str, z.gateway_subnets)) or "-"
        lines.append(
            f"  zone {z.name}  {z.subnet} via {z.router} on {t.bridge(z.name)}  gateways {gws}  nat {t.nat_address(z.name)}"
        )
        for n in (n for n in t.nodes if n.zone == z.name):
            lines.append(
                f"    node {n.name}  {n.ip}  pods {n.pod_cidr}  port {n.vpc_port}  ns {node_ns(t.prefix, n.name)}"
            )
            lines.extend(_pod_line(t.prefix, p) for p in t.on_node(n.name))
    vpc_side, edge_side = t.edge_link_hosts()
    lines.append(
        f"  edge  vpc {vpc_side} <-> {edge_side}  public {t.edge.public_cidr}  ns {edge_ns(t.prefix)}"
    )
    if isinstance(t.edge, AwsEdge) and t.edge.elastic_ips:
        lines.append(f"    elastic ips {' '.join(map(str, t.edge.elastic_ips))}")
    lines.extend(
        f"    route server {rs.name}  {rs.address}  peers {' '.join(map(str, rs.peers))}  ns {rs_ns(t.prefix, rs)}"
        for rs in t.route_servers()
    )
    lines.append(f"  internet  {t.edge_internet_link}  ns {internet_ns(t.prefix)}")
    for h in t.internet_hosts:
        stands = f"  (stands for {h.stands_for})" if h.stands_for else ""
        lines.append(f"    {h.name}  {h.address}{stands}")
    return "\n".join(lines)
