"""The Azure hub of the lab as pure values: the firewall, the route-server peers and what
the VNet fabric routes where (REF-AZ, `shared/reference/calico-egress-gateway.md` §11.1).

- `AzureEdge`: the hub firewall (its private address in AzureFirewallSubnet, its public
  address, the sources it lets reach which internet hosts on which ports) and the Azure
  Route Server instances (name, address in RouteServerSubnet, the nodes each has a BGP
  connection with, both AS numbers). It is the `edge` of an Azure `Topology`.
- `HubLayout`: the scenario's description of the hub; `azure_edge` turns it plus the
  cluster's resources (BGPConfiguration, BGPPeers, Nodes) into an `AzureEdge`: ARS is
  configured with one connection per node a BGPPeer to its address selects.
- `fabric_routes`: the routes the VNet programs from what the route servers learned
  (Azure Route Server's job): for each prefix, the next hops of the best paths.

Pure: no I/O, no clock. The effects (namespaces, gobgpd, the deny responder, programming
the fabric) live in `lab.azure` and `lab.hubroutes`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Literal

from egressgw.drivers.routeserver import LearnedRoute
from egressgw.lab import firewall
from egressgw.model import BGPConfiguration, BGPPeer, Resource
from egressgw.model import Node as NodeResource
from egressgw.selector import parse

PUBLIC_CIDR = IPv4Network("198.51.100.0/24")
DEFAULT_AS = 64512
#: Where the firewall's deny responder listens (denied HTTP is redirected there).
DENY_PORT = 8470
DENY_STATUS, DENY_BODY = firewall.STATUS, firewall.BODY  # what the deny responder answers
#: `rs-…`: the namespace `<prefix>-rs-…` can clash with no other kind of lab namespace.
_NAME_RE = re.compile(r"^rs-[a-z0-9]{1,5}$")


@dataclass(frozen=True)
class RouteServerHost:
    """One Azure Route Server instance: `name` (what `lab routes` takes), its address in
    RouteServerSubnet, and the node addresses it has BGP connections with."""

    name: str
    address: IPv4Address
    peers: tuple[IPv4Address, ...] = ()


@dataclass(frozen=True)
class AzureEdge:
    """The hub: a firewall that SNATs allowed flows (`allowed_sources` to
    `allowed_destinations`, empty meaning any, on `allowed_ports`) to `public_address` and
    denies the rest (HTTP with status 470), and the route servers in `route_server_subnet`.
    `firewall_ip` is its private address on the VPC-edge link (None: the link's second host)."""

    public_address: IPv4Address
    allowed_sources: tuple[IPv4Network, ...] = ()
    allowed_destinations: tuple[IPv4Address, ...] = ()
    allowed_ports: tuple[int, ...] = (80, 443)
    firewall_ip: IPv4Address | None = None
    route_server_subnet: IPv4Network | None = None
    route_servers: tuple[RouteServerHost, ...] = ()
    route_server_as: int = 65515
    peer_as: int = DEFAULT_AS  # the cluster's AS, which the route servers expect
    public_cidr: IPv4Network = PUBLIC_CIDR
    mode: Literal["azure"] = "azure"

    def route_server(self, name_or_address: str) -> RouteServerHost:
        """The route server called so, or at that address; LookupError naming the known."""
        for rs in self.route_servers:
            if name_or_address in (rs.name, str(rs.address)):
                return rs
        known = ", ".join(f"{r.name} ({r.address})" for r in self.route_servers) or "none"
        raise LookupError(f"no route server {name_or_address!r}: known are {known}")

    def problems(
        self, vpc_cidrs: Sequence[IPv4Network], taken: Sequence[IPv4Network]
    ) -> Iterator[str]:
        """What is wrong with the hub inside a VPC of `vpc_cidrs` whose other subnets and
        links are `taken`."""
        if self.public_address not in self.public_cidr:
            yield "the firewall's address is outside the public range"
        if self.firewall_ip is not None and not any(self.firewall_ip in n for n in taken):
            yield f"firewall address {self.firewall_ip} is on no link of the lab"
        if not self.route_servers:
            return
        subnet = self.route_server_subnet
        if subnet is None:
            yield "route servers need a route-server subnet"
            return
        if not any(subnet.subnet_of(v) for v in vpc_cidrs):
            yield f"route-server subnet {subnet} is outside the VPC"
        if any(subnet.overlaps(n) for n in taken):
            yield f"route-server subnet {subnet} overlaps another subnet"
        for rs in self.route_servers:
            if not _NAME_RE.match(rs.name):
                yield f"bad route-server name {rs.name!r}"
            if rs.address not in subnet or rs.address in _reserved(subnet):
                yield f"route server {rs.name}: {rs.address} is not a free host of {subnet}"
        names = [r.name for r in self.route_servers] + [str(r.address) for r in self.route_servers]
        if len(set(names)) != len(names):
            yield "route servers must have distinct names and addresses"


def _reserved(subnet: IPv4Network) -> tuple[IPv4Address, ...]:
    return (subnet.network_address, subnet.broadcast_address, router(subnet))


def router(subnet: IPv4Network) -> IPv4Address:
    """The VPC router's address in a subnet (`.1`, as Azure and AWS have it)."""
    return subnet.network_address + 1


# --- the scenario's hub ---------------------------------------------------------------------


@dataclass(frozen=True)
class HubLayout:
    """REF-AZ's hub VNet as a scenario describes it. `allowed_hosts` name internet hosts of
    the lab (their stand-in addresses are what the firewall allows)."""

    firewall_subnet: IPv4Network
    firewall_ip: IPv4Address
    public_address: IPv4Address
    route_server_subnet: IPv4Network
    route_servers: tuple[tuple[str, IPv4Address], ...]
    allowed_sources: tuple[IPv4Network, ...]
    allowed_hosts: tuple[str, ...]
    allowed_ports: tuple[int, ...] = (80, 443)
    route_server_as: int = 65515


def azure_edge(
    layout: HubLayout, resources: Iterable[Resource], hosts: Mapping[str, IPv4Address]
) -> AzureEdge:
    """The hub for a cluster: each route server peers with the nodes that a BGPPeer naming
    its address selects, and expects the cluster's AS (BGPConfiguration default)."""
    listed = list(resources)
    missing = [h for h in layout.allowed_hosts if h not in hosts]
    if missing:
        raise LookupError(f"the firewall allows unknown internet hosts {missing}")
    servers = tuple(
        RouteServerHost(name, address, _peers_of(address, listed))
        for name, address in layout.route_servers
    )
    return AzureEdge(
        public_address=layout.public_address,
        allowed_sources=layout.allowed_sources,
        allowed_destinations=tuple(hosts[h] for h in layout.allowed_hosts),
        allowed_ports=layout.allowed_ports,
        firewall_ip=layout.firewall_ip,
        route_server_subnet=layout.route_server_subnet,
        route_servers=servers,
        route_server_as=layout.route_server_as,
        peer_as=cluster_as(listed),
    )


def cluster_as(resources: Iterable[Resource]) -> int:
    """The cluster's AS: BGPConfiguration `default`'s asNumber, else Calico's 64512."""
    for r in resources:
        if isinstance(r, BGPConfiguration) and r.metadata.name == "default":
            return r.spec.as_number
    return DEFAULT_AS


def _peers_of(address: IPv4Address, resources: Sequence[Resource]) -> tuple[IPv4Address, ...]:
    """The nodes some BGPPeer with `peerIP: address` applies to, by address."""
    nodes = [r for r in resources if isinstance(r, NodeResource)]
    found: set[IPv4Address] = set()
    for peer in (r for r in resources if isinstance(r, BGPPeer)):
        if peer.spec.peer_address != address:
            continue
        found |= {n.internal_ip for n in nodes if _selects(peer, n) and n.internal_ip}
    return tuple(sorted(found))


def _selects(peer: BGPPeer, node: NodeResource) -> bool:
    if peer.spec.node:
        return bool(peer.spec.node == node.metadata.name)
    selector = peer.spec.node_selector
    return selector is None or parse(selector).matches(node.metadata.labels)


# --- the fabric -----------------------------------------------------------------------------

FabricRoutes = dict[IPv4Network, tuple[IPv4Address, ...]]


def fabric_routes(ribs: Iterable[Iterable[LearnedRoute]]) -> FabricRoutes:
    """What the VNet routes where, from each route server's RIB: every IPv4 prefix some
    route server has a best path for, via the next hops of those best paths (sorted; more
    than one is ECMP, as Azure programs equal routes)."""
    hops: dict[IPv4Network, set[IPv4Address]] = {}
    for rib in ribs:
        for route in rib:
            net, hop = route.network, route.next_hop
            if route.best and isinstance(net, IPv4Network) and isinstance(hop, IPv4Address):
                hops.setdefault(net, set()).add(hop)
    return {net: tuple(sorted(h)) for net, h in sorted(hops.items(), key=lambda i: _key(i[0]))}


def _key(net: IPv4Network) -> tuple[int, int]:
    return int(net.network_address), net.prefixlen
