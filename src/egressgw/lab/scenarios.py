"""The named lab scenarios, as data: which example manifests a lab applies, which transport
the agents use, which AWS subnet lies in which zone, how the VPC is laid out, and which
internet hosts of the lab stand in for real addresses (8.8.8.8 is played by 203.0.113.8).

Also the pure steps that turn a scenario's manifests into a lab: `build_topology` (the
namespaces to build, from the manifests' own Node objects), `rewrite_destinations` (policy
destinations that are stand-in addresses become their lab addresses, with a note for the
user) and `lab_resources` (what the lab writes to its store, in one apply).

Pure: no I/O, no clock, no randomness. Reading the manifests is the caller's job
(`egressgw.manifests.load(scenario.examples)`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Literal, get_args

from egressgw.calc.gateways import ZONE_LABEL
from egressgw.lab.addressplan import default_internet_hosts, nat_gateways
from egressgw.lab.hub import PUBLIC_CIDR, HubLayout, azure_edge
from egressgw.lab.topology import AwsEdge, Edge, InternetHost, Node, Topology, TopologyError, Zone
from egressgw.model import EgressGateway, EgressGatewayPolicy, Resource
from egressgw.model import Node as NodeResource
from egressgw.model.parsing import from_dict, to_dict
from egressgw.model.policy import destination_network

Transport = Literal["native", "vxlan"]
TRANSPORTS: tuple[Transport, ...] = get_args(Transport)
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@dataclass(frozen=True)
class ZoneLayout:
    """One availability zone: its AWS subnet ID, the subnet its nodes live in, and the
    (secondary-CIDR) subnet its gateway pods take their secondary IPs from."""

    name: str
    subnet_id: str  # "" where the cloud has no per-zone subnet (Azure's span zones)
    node_subnet: IPv4Network
    gateway_subnet: IPv4Network | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    examples: Path
    transport: Transport
    zones: tuple[ZoneLayout, ...]
    vpc_cidrs: tuple[IPv4Network, ...]
    pod_pool: IPv4Network
    internet_hosts: tuple[InternetHost, ...]
    pod_cidr_prefix: int = 24
    #: Azure: the hub (firewall, route servers); the nodes then run BIRD. None: AWS.
    hub: HubLayout | None = None
    #: Kinds `lab up` leaves out: the demo applies them later, as the walkthrough does.
    withheld: tuple[str, ...] = ()
    #: (kind, name, spec field, value): the state before the walkthrough's patches.
    before: tuple[tuple[str, str, str, object], ...] = ()
    underlay_mtu: int = 9001

    @property
    def bgp(self) -> bool:
        """Do the nodes speak BGP (agents run BIRD)?"""
        return self.hub is not None

    @property
    def subnet_zones(self) -> dict[str, str]:
        """AWS subnet ID -> zone, what DescribeSubnets would tell the controller."""
        return {z.subnet_id: z.name for z in self.zones if z.subnet_id}

    def with_transport(self, transport: Transport) -> Scenario:
        if transport not in TRANSPORTS:
            raise ValueError(f"unknown transport {transport!r}: use one of {', '.join(TRANSPORTS)}")
        return replace(self, transport=transport)


AWS = Scenario(
    name="aws",
    description="AWS public source IP anchoring: 4 nodes in 2 zones, 6 gateways with Elastic IPs",
    examples=EXAMPLES / "aws-public-ip",
    # Clients reach gateways over VXLAN. The VPC routes a gateway's secondary IP to its
    # node, but a client's packet is addressed to the internet host, and a routed VPC
    # delivers by destination: without a tunnel only a gateway on the client's own node
    # is reachable. `native` stays selectable for that case and for flat underlays.
    transport="vxlan",
    zones=(
        ZoneLayout(
            "us-east-1a",
            "subnet-0a1b2c3d4e5f60001",
            IPv4Network("10.0.160.0/20"),
            IPv4Network("10.99.0.0/20"),
        ),
        ZoneLayout(
            "us-east-1b",
            "subnet-0a1b2c3d4e5f60002",
            IPv4Network("10.0.176.0/20"),
            IPv4Network("10.99.16.0/20"),
        ),
    ),
    vpc_cidrs=(IPv4Network("10.0.0.0/16"), IPv4Network("10.99.0.0/16")),
    pod_pool=IPv4Network("10.244.0.0/16"),
    internet_hosts=default_internet_hosts(),
)

#: www.tigera.io, the one host REF-AZ's firewall lets tenant0 reach (80/443).
TIGERA = InternetHost("www.tigera.io", IPv4Address("203.0.113.30"))
_AKS_SUBNET = IPv4Network("10.1.0.0/24")

AZURE = Scenario(
    name="azure",
    description="Azure hub-spoke: 2 route-reflector nodes advertising egress IPs over BGP to "
    "2 Azure Route Server peers, a hub firewall that allows only tenant0's range",
    examples=EXAMPLES / "azure-hub-spoke",
    # Clients reach gateways over VXLAN, as Calico Enterprise does whatever the pool's
    # vxlanMode: natively, the fabric delivers by destination (the internet host) and the
    # UDR would send the packet to the firewall, past the gateway.
    transport="vxlan",
    # One AKS subnet spanning both zones, as an Azure subnet does.
    zones=(ZoneLayout("eastus-1", "", _AKS_SUBNET), ZoneLayout("eastus-2", "", _AKS_SUBNET)),
    vpc_cidrs=(IPv4Network("10.0.0.0/22"), IPv4Network("10.1.0.0/22")),
    pod_pool=IPv4Network("10.244.0.0/24"),
    internet_hosts=(*default_internet_hosts(), TIGERA),
    pod_cidr_prefix=26,  # the default pool's blockSize: one block per node
    hub=HubLayout(
        firewall_subnet=IPv4Network("10.0.0.0/24"),
        firewall_ip=IPv4Address("10.0.0.4"),
        public_address=PUBLIC_CIDR.network_address + 1,
        route_server_subnet=IPv4Network("10.0.1.0/24"),
        route_servers=(("rs-a", IPv4Address("10.0.1.4")), ("rs-b", IPv4Address("10.0.1.5"))),
        allowed_sources=(IPv4Network("10.99.0.0/29"),),
        allowed_hosts=(TIGERA.name,),
    ),
    withheld=("FelixConfiguration", "EgressGatewayPolicy"),
    before=(("IPPool", "default-ipv4-ippool", "disableBGPExport", False),),
    underlay_mtu=1500,
)

SCENARIOS: Mapping[str, Scenario] = {AWS.name: AWS, AZURE.name: AZURE}


def get(name: str) -> Scenario:
    """The scenario called `name`; KeyError naming the known ones."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}: known are {', '.join(SCENARIOS)}") from None


# --- topology ---------------------------------------------------------------------------


def _node(res: NodeResource, zones: Mapping[str, ZoneLayout], pod_cidr: IPv4Network) -> Node:
    name, zone = res.metadata.name, res.metadata.labels.get(ZONE_LABEL, "")
    if zone not in zones:
        raise TopologyError(f"node {name}: zone {zone!r} is not one of the scenario's")
    ip = res.internal_ip
    if ip is None:
        raise TopologyError(f"node {name} has no InternalIP")
    return Node(name, zone, ip, pod_cidr)


def elastic_ips(resources: Iterable[Resource]) -> tuple[IPv4Address, ...]:
    """Every Elastic IP the EgressGateways name (the addresses the account has allocated)."""
    found = {
        eip
        for r in resources
        if isinstance(r, EgressGateway) and r.spec.aws is not None
        for eip in r.spec.aws.elastic_ips
    }
    return tuple(sorted(found))


def build_topology(scenario: Scenario, resources: Sequence[Resource], prefix: str) -> Topology:
    """The lab for `resources`: its Node objects (names, zones, InternalIPs, one pod CIDR
    each from the pod pool in name order), the scenario's zones, its edge (`_edge`) and
    the internet stand-ins. No pods: the kubelet adds them as they appear in the store."""
    layouts = {z.name: z for z in scenario.zones}
    node_objects = sorted(
        (r for r in resources if isinstance(r, NodeResource)), key=lambda r: r.metadata.name
    )
    cidrs = scenario.pod_pool.subnets(new_prefix=scenario.pod_cidr_prefix)
    nodes = tuple(_node(r, layouts, next(cidrs)) for r in node_objects)
    zones = tuple(
        Zone(z.name, z.node_subnet, () if z.gateway_subnet is None else (z.gateway_subnet,))
        for z in scenario.zones
    )
    # Azure: the firewall sits in AzureFirewallSubnet, which joins it to the fabric.
    link = Topology.vpc_edge_link if scenario.hub is None else scenario.hub.firewall_subnet
    return Topology(
        prefix=prefix,
        vpc_cidrs=scenario.vpc_cidrs,
        pod_pool=scenario.pod_pool,
        zones=zones,
        edge=_edge(scenario, resources, zones),
        nodes=nodes,
        internet_hosts=scenario.internet_hosts,
        underlay_mtu=scenario.underlay_mtu,
        vpc_edge_link=link,
    )


def _edge(scenario: Scenario, resources: Sequence[Resource], zones: Sequence[Zone]) -> Edge:
    """Azure: the hub of the scenario for these resources. AWS: a NAT gateway per zone
    (198.51.100.1, .2, ...) and the EgressGateways' Elastic IPs."""
    if scenario.hub is not None:
        hosts = {h.name: h.address for h in scenario.internet_hosts}
        return azure_edge(scenario.hub, resources, hosts)
    return AwsEdge(
        nat_gateways=nat_gateways(zones),
        elastic_ips=elastic_ips(resources),
        public_cidr=PUBLIC_CIDR,
    )


def initial_resources(scenario: Scenario, resources: Iterable[Resource]) -> list[Resource]:
    """What `lab up` applies: the scenario's manifests without the withheld kinds, with the
    `before` fields set (the state the walkthrough starts from)."""
    out: list[Resource] = []
    for res in resources:
        if res.kind in scenario.withheld:
            continue
        patches = {
            f: v for k, n, f, v in scenario.before if (k, n) == (res.kind, res.metadata.name)
        }
        if patches:
            data = to_dict(res)
            data["spec"] = {**data.get("spec", {}), **patches}
            res = from_dict(data, source="<scenario>")
        out.append(res)
    return out


# --- stand-ins --------------------------------------------------------------------------


@dataclass(frozen=True)
class Rewrite:
    """A policy destination that named a stand-in address and now names its lab address."""

    policy: str
    rule: int
    written: str
    lab: str

    def __str__(self) -> str:
        return f"EgressGatewayPolicy {self.policy} rule {self.rule}: {self.written} -> {self.lab}"


def stand_in_notes(hosts: Iterable[InternetHost]) -> tuple[str, ...]:
    """What to tell the user: "8.8.8.8 is played by 203.0.113.8 (google-dns)"."""
    return tuple(
        f"{h.stands_for} is played by {h.address} ({h.name})"
        for h in hosts
        if h.stands_for is not None
    )


def _lab_destination(text: str, stand_ins: Mapping[IPv4Address, IPv4Address]) -> str | None:
    """The lab form of a destination that is exactly a stand-in address, written alike
    (a bare IP stays bare, a /32 stays /32); None for any other destination."""
    network = destination_network(text)
    lab = stand_ins.get(network.network_address) if network.prefixlen == 32 else None
    if lab is None:
        return None
    return f"{lab}/32" if "/" in text else str(lab)


def _rewrite_policy(
    policy: EgressGatewayPolicy, stand_ins: Mapping[IPv4Address, IPv4Address]
) -> tuple[EgressGatewayPolicy, list[Rewrite]]:
    data = to_dict(policy)
    done: list[Rewrite] = []
    for index, rule in enumerate(data["spec"]["rules"]):
        written = (rule.get("destination") or {}).get("cidr")
        lab = None if written is None else _lab_destination(written, stand_ins)
        if written is not None and lab is not None:
            rule["destination"]["cidr"] = lab
            done.append(Rewrite(policy.metadata.name, index, written, lab))
    if not done:
        return policy, []
    rewritten = from_dict(data, source="<scenario>")
    assert isinstance(rewritten, EgressGatewayPolicy)
    return rewritten, done


def rewrite_destinations(
    resources: Iterable[Resource], hosts: Iterable[InternetHost]
) -> tuple[list[Resource], list[Rewrite]]:
    """`resources` with every EgressGatewayPolicy destination that is a stand-in address
    (a bare IP or a /32) replaced by the lab address playing it; everything else as is."""
    stand_ins = {h.stands_for: h.address for h in hosts if h.stands_for is not None}
    out: list[Resource] = []
    rewrites: list[Rewrite] = []
    for res in resources:
        if isinstance(res, EgressGatewayPolicy):
            res, done = _rewrite_policy(res, stand_ins)
            rewrites += done
        out.append(res)
    return out, rewrites


def with_pod_cidr(node: NodeResource, pod_cidr: IPv4Network) -> NodeResource:
    """The Node object with `spec.podCIDR` set, as the node IPAM controller writes it."""
    data = to_dict(node)
    data["spec"] = {**data.get("spec", {}), "podCIDR": str(pod_cidr)}
    updated = from_dict(data, source="<lab>")
    assert isinstance(updated, NodeResource)
    return updated


def lab_resources(
    resources: Iterable[Resource], topology: Topology
) -> tuple[list[Resource], list[Rewrite]]:
    """What the lab writes to its store: the manifests with stand-in destinations rewritten
    and each Node carrying the pod CIDR the topology gave it."""
    rewritten, rewrites = rewrite_destinations(resources, topology.internet_hosts)
    cidrs = {n.name: n.pod_cidr for n in topology.nodes}
    out = [
        with_pod_cidr(r, cidrs[r.metadata.name])
        if isinstance(r, NodeResource) and r.metadata.name in cidrs
        else r
        for r in rewritten
    ]
    return out, rewrites
