"""One node's desired BGP state, as plain frozen values.

Holds: the router id and AS the node speaks with, the prefixes it originates (pod blocks and
egress blocks, each marked exportable or not), the pools whose learned routes it may pass on,
its peers (kind, AS numbers, next-hop handling, reachability, filter chain), its route-reflector
role, and the BGPFilter rules those peers reference, in Calico's vocabulary.

Must not: do I/O, know any daemon's syntax (plan.bird renders this for BIRD 2), or know the
resource models (calc.bgp maps resources to these values). Everything here is hashable and
comparable, so two plans can be diffed and a plan can key a cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


class FilterAction(StrEnum):
    ACCEPT = "Accept"
    REJECT = "Reject"


class MatchOperator(StrEnum):
    """How a rule's CIDR is compared with a route's prefix (Calico's `matchOperator`)."""

    EQUAL = "Equal"  # the route's prefix is exactly the CIDR
    NOT_EQUAL = "NotEqual"
    IN = "In"  # the route's prefix lies inside the CIDR (or equals it)
    NOT_IN = "NotIn"


class RouteSource(StrEnum):
    REMOTE_PEERS = "RemotePeers"  # learned from a BGP peer, not originated here


class Direction(StrEnum):
    IMPORT = "import"
    EXPORT = "export"


class NextHopMode(StrEnum):
    """Next-hop handling towards a peer (`BGPPeer.nextHopMode`; keepOriginalNextHop = KEEP)."""

    AUTO = "auto"  # the daemon's default: self towards eBGP, keep towards iBGP
    SELF = "self"
    KEEP = "keep"


class PeerKind(StrEnum):
    """Why this peering exists; decides naming, passivity and route-reflection options."""

    MESH = "ibgp-mesh"  # full node-to-node mesh (nodeToNodeMeshEnabled)
    RR_CLIENT = "route-reflector-client"  # the peer is a client of this route reflector
    RR_TO_RR = "rr-to-rr"  # both ends are route reflectors of the same cluster
    NODE = "node"  # another node chosen by peerSelector, with no reflection on our side
    EXTERNAL = "external"  # a peerIP peer outside the cluster (ToR, Azure Route Server, ...)


class PrefixKind(StrEnum):
    POD_BLOCK = "pod-block"
    EGRESS = "egress"


@dataclass(frozen=True)
class FilterRule:
    """One BGPFilter rule. Every condition that is set must hold for the rule to match."""

    action: FilterAction
    cidr: IPNetwork | None = None
    operator: MatchOperator | None = None
    prefix_min: int | None = None
    prefix_max: int | None = None
    source: RouteSource | None = None
    interface: str | None = None  # shell-style pattern on the route's interface, e.g. "*.calico"

    def __post_init__(self) -> None:
        if (self.cidr is None) != (self.operator is None):
            raise ValueError("cidr and operator must both be set or both be empty")
        if self.cidr is None and (self.prefix_min is not None or self.prefix_max is not None):
            raise ValueError("a prefix length range needs a cidr")

    def prefix_range(self) -> tuple[int, int] | None:
        """The matched prefix lengths, with Calico's defaults (the CIDR's own length, max)."""
        if self.cidr is None or (self.prefix_min is None and self.prefix_max is None):
            return None
        low = self.cidr.prefixlen if self.prefix_min is None else self.prefix_min
        high = self.cidr.max_prefixlen if self.prefix_max is None else self.prefix_max
        return low, high


@dataclass(frozen=True)
class RouteFilter:
    """A BGPFilter: four ordered rule lists; the first matching rule decides (no match: go on)."""

    name: str
    export_v4: tuple[FilterRule, ...] = ()
    import_v4: tuple[FilterRule, ...] = ()
    export_v6: tuple[FilterRule, ...] = ()
    import_v6: tuple[FilterRule, ...] = ()

    def rules(self, direction: Direction, version: int) -> tuple[FilterRule, ...]:
        if direction is Direction.EXPORT:
            return self.export_v4 if version == 4 else self.export_v6
        return self.import_v4 if version == 4 else self.import_v6


@dataclass(frozen=True)
class OriginatedPrefix:
    """A prefix this node announces as its own: a pod block or an egress-IP block."""

    prefix: IPNetwork
    kind: PrefixKind = PrefixKind.POD_BLOCK
    export: bool = True  # False for blocks of pools with disableBGPExport
    interface: str | None = None  # route via this interface; None = blackhole (Calico's way)


@dataclass(frozen=True)
class Peer:
    """One BGP session as this node sees it."""

    address: IPAddress
    remote_as: int
    kind: PeerKind
    port: int = 179
    local_as: int | None = None  # BGPPeer.localASNumber; None = the node's AS
    next_hop: NextHopMode = NextHopMode.AUTO
    multihop: bool = True  # Calico peers multihop, so nodes on routed underlays still peer
    reachable_by: IPAddress | None = None  # install peer/32 via this gateway (BGPPeer.reachableBy)
    passive: bool = False  # wait for the peer to connect (one side of each node-to-node pair)
    filters: tuple[str, ...] = ()  # BGPFilter names, applied in this order on import and export
    source: str = ""  # what asked for this session: a BGPPeer name or "node-to-node-mesh"

    @property
    def version(self) -> int:
        return self.address.version


@dataclass(frozen=True)
class NodeBgpPlan:
    """Everything one node's BGP daemon must do. Collections are sorted by construction."""

    node: str
    router_id: IPv4Address
    local_as: int
    listen_address: IPAddress  # source address of every session of its address family
    listen_address6: IPv6Address | None = None  # for IPv6 sessions when listen_address is IPv4
    listen_port: int = 179
    strict_bind: bool = False  # listen only on listen_address (BGPConfiguration bindMode NodeIP)
    originated: tuple[OriginatedPrefix, ...] = ()
    # Routes learned from peers inside these CIDRs may be passed on (reflection, mesh to
    # external); Calico exports every route inside a pool that has BGP export enabled.
    exportable_pools: tuple[IPNetwork, ...] = ()
    peers: tuple[Peer, ...] = ()
    filters: tuple[RouteFilter, ...] = ()
    route_reflector_cluster_id: IPv4Address | None = None
    program_kernel: bool = True  # install learned routes and peer reachability in the kernel
    log_severity: str = "Info"
    notes: tuple[str, ...] = field(default=(), compare=False)  # why something was left out

    def __post_init__(self) -> None:
        known = {f.name for f in self.filters}
        for peer in self.peers:
            missing = [name for name in peer.filters if name not in known]
            if missing:
                raise ValueError(f"peer {peer.address} references unknown filters {missing}")

    def source_address(self, version: int) -> IPAddress | None:
        """The local address for sessions of one family (None: let the kernel choose)."""
        if self.listen_address.version == version:
            return self.listen_address
        return self.listen_address6 if version == 6 else None

    def filter(self, name: str) -> RouteFilter:
        return next(f for f in self.filters if f.name == name)

    def originated_in(self, version: int) -> tuple[OriginatedPrefix, ...]:
        return tuple(p for p in self.originated if p.prefix.version == version)

    def peers_in(self, version: int) -> tuple[Peer, ...]:
        return tuple(p for p in self.peers if p.version == version)
