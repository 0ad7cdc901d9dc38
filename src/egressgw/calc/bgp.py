"""Map Calico's BGP resources to one node's BGP plan (plan.bgp.NodeBgpPlan).

Holds Calico's rules for who peers with whom (node-to-node mesh, BGPPeer node/nodeSelector
with peerIP or peerSelector, route reflectors by RouteReflectorClusterID), what a node
originates (its pod blocks, and the egress IPs of the gateways it hosts at their pool's block
size), what it may pass on (pools without disableBGPExport), and the BGPFilter rules its peers
name. Anything left out is said in the plan's notes rather than silently dropped.

Must not: do I/O, or know BIRD syntax (plan.bird renders the plan).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network, IPv6Network, ip_network

from egressgw.model import (
    BGPConfiguration,
    BGPConfigurationSpec,
    BGPFilter,
    BGPFilterRule,
    BGPPeer,
    IPPool,
    Node,
)
from egressgw.plan.bgp import (
    FilterAction,
    FilterRule,
    IPAddress,
    IPNetwork,
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
from egressgw.selector import parse

RR_CLUSTER_ID_ANNOTATION = "projectcalico.org/RouteReflectorClusterID"
AS_NUMBER_ANNOTATION = "projectcalico.org/ASNumber"
DEFAULT_AS = 64512
MESH_SOURCE = "node-to-node-mesh"

# BGPFilter rule fields we cannot render yet. A rule using one is dropped (never matches)
# rather than rendered without it, which would make it match more than it says.
_UNSUPPORTED_MATCHES = ("peer_type", "communities", "as_path_prefix", "priority")


class BgpPlanError(ValueError):
    """The node cannot speak BGP at all (for example: it has no IPv4 address)."""


def node_bgp_plan(
    node: Node,
    nodes: Sequence[Node],
    config: BGPConfiguration | None,
    peers: Sequence[BGPPeer],
    filters: Mapping[str, BGPFilter],
    pools: Sequence[IPPool],
    local_blocks: Sequence[IPv4Network],
    local_egress_ips: Sequence[IPv4Address],
) -> NodeBgpPlan:
    """The BGP state `node` should have, given the whole cluster's BGP resources."""
    spec = BGPConfigurationSpec() if config is None else config.spec
    address = _address(node)
    notes: list[str] = []
    wanted = _mesh_peers(node, nodes, spec.node_to_node_mesh_enabled, spec.as_number)
    wanted = _explicit_peers(node, nodes, peers, spec.as_number, notes) + wanted
    chosen = _dedupe(p for p in wanted if p.address != address)
    route_filters = _route_filters(chosen, filters, notes)
    known = {f.name for f in route_filters}
    chosen = [_drop_unknown_filters(p, known) for p in chosen]
    originated = _originated(pools, local_blocks, local_egress_ips, notes)
    extra = spec.model_extra or {}
    return NodeBgpPlan(
        node=node.metadata.name,
        router_id=address,
        local_as=node_as(node, spec.as_number),
        listen_address=address,
        listen_port=spec.listen_port,
        strict_bind=extra.get("bindMode") == "NodeIP",
        originated=originated,
        exportable_pools=_exportable_pools(pools),
        peers=tuple(sorted(chosen, key=_peer_key)),
        filters=route_filters,
        route_reflector_cluster_id=rr_cluster_id(node),
        log_severity=spec.log_severity_screen,
        notes=tuple(notes),
    )


# ---------------------------------------------------------------- node facts


def node_as(node: Node, default: int) -> int:
    """The node's AS: Calico's per-node ASNumber annotation, else the cluster default."""
    text = node.metadata.annotations.get(AS_NUMBER_ANNOTATION)
    return int(text) if text and text.isdigit() else default


def rr_cluster_id(node: Node) -> IPv4Address | None:
    """The route-reflector cluster id a node carries, if it is a route reflector."""
    text = node.metadata.annotations.get(RR_CLUSTER_ID_ANNOTATION)
    try:
        return IPv4Address(text) if text else None
    except ValueError:
        return None


def _address(node: Node) -> IPv4Address:
    address = node.internal_ip
    if address is None:
        raise BgpPlanError(f"node {node.metadata.name} has no IPv4 address to speak BGP from")
    return address


def _peer_key(peer: Peer) -> tuple[int, int, int]:
    return peer.version, int(peer.address), peer.port


# ---------------------------------------------------------------- who peers with whom


def _mesh_peers(node: Node, nodes: Sequence[Node], enabled: bool, default_as: int) -> list[Peer]:
    """Full mesh between nodes that are not route reflectors (Calico drops RRs from the mesh)."""
    if not enabled or rr_cluster_id(node) is not None:
        return []
    mine = _address(node)
    return [
        Peer(
            address=address,
            remote_as=node_as(other, default_as),
            kind=PeerKind.MESH,
            passive=int(address) > int(mine),
            source=MESH_SOURCE,
        )
        for other, address in _other_nodes(node, nodes)
        if rr_cluster_id(other) is None
    ]


def _other_nodes(node: Node, nodes: Sequence[Node]) -> list[tuple[Node, IPv4Address]]:
    """Every other node that has an IPv4 address to peer with, in name order."""
    found = [(n, n.internal_ip) for n in nodes if n.metadata.name != node.metadata.name]
    ordered = sorted(found, key=lambda pair: pair[0].metadata.name)
    return [(n, address) for n, address in ordered if address is not None]


def _explicit_peers(
    node: Node, nodes: Sequence[Node], peers: Sequence[BGPPeer], default_as: int, notes: list[str]
) -> list[Peer]:
    """Peers from BGPPeer resources that apply to `node`, in resource-name order."""
    found: list[Peer] = []
    for resource in sorted(peers, key=lambda p: p.metadata.name):
        spec = resource.spec
        if spec.peer_selector is not None:
            found += _node_peers(resource, node, nodes, spec.peer_selector, default_as)
        elif not _applies_to(resource, node):
            continue
        elif spec.peer_address is not None:
            remote_as = spec.as_number or node_as(node, default_as)
            found.append(_peer(resource, spec.peer_address, remote_as, PeerKind.EXTERNAL))
        else:
            notes.append(f"BGPPeer {resource.metadata.name}: no peerIP or peerSelector; skipped")
    return found


def _applies_to(resource: BGPPeer, node: Node) -> bool:
    spec = resource.spec
    if spec.node:
        return bool(spec.node == node.metadata.name)
    if spec.node_selector:
        return parse(spec.node_selector).matches(node.metadata.labels)
    return True  # neither set: every node peers


def _node_peers(
    resource: BGPPeer, node: Node, nodes: Sequence[Node], selector: str, default_as: int
) -> list[Peer]:
    """Node-to-node sessions of a peerSelector BGPPeer, in both directions: the nodes it
    applies to peer with the selected nodes, and (reversePeering Auto, the default) the
    selected nodes peer back, which is how one BGPPeer sets up route reflectors."""
    chosen = parse(selector)
    forward = _applies_to(resource, node)
    reverse = resource.spec.reverse_peering != "Manual" and chosen.matches(node.metadata.labels)
    mine = _address(node)
    local_as = resource.spec.local_as_number or node_as(node, default_as)
    found: list[Peer] = []
    for other, address in _other_nodes(node, nodes):
        wanted = forward and chosen.matches(other.metadata.labels)
        if not (wanted or (reverse and _applies_to(resource, other))):
            continue
        remote_as = node_as(other, default_as)
        kind = _node_kind(node, other) if remote_as == local_as else PeerKind.NODE
        found.append(_peer(resource, address, remote_as, kind, passive=address > mine))
    return found


def _node_kind(node: Node, other: Node) -> PeerKind:
    """Calico: a route reflector treats every iBGP peer outside its own cluster as a client."""
    mine, theirs = rr_cluster_id(node), rr_cluster_id(other)
    if mine is None:
        return PeerKind.NODE
    return PeerKind.RR_TO_RR if theirs == mine else PeerKind.RR_CLIENT


def _peer(
    resource: BGPPeer, address: IPAddress, remote_as: int, kind: PeerKind, passive: bool = False
) -> Peer:
    """A session asked for by a BGPPeer: its AS override, next hop, reachability and filters."""
    spec = resource.spec
    return Peer(
        address=address,
        remote_as=remote_as,
        kind=kind,
        port=(spec.peer_port or 179) if kind is PeerKind.EXTERNAL else 179,
        local_as=spec.local_as_number,
        next_hop=_next_hop(spec.keep_original_next_hop, spec.next_hop_mode),
        reachable_by=spec.reachable_by if kind is PeerKind.EXTERNAL else None,
        passive=passive,
        filters=tuple(spec.filters),
        source=f"BGPPeer {resource.metadata.name}",
    )


def _next_hop(keep_original: bool | None, mode: str | None) -> NextHopMode:
    if keep_original:
        return NextHopMode.KEEP
    return {"Self": NextHopMode.SELF, "Keep": NextHopMode.KEEP}.get(mode or "", NextHopMode.AUTO)


def _dedupe(peers: Iterable[Peer]) -> list[Peer]:
    """One session per (address, port): the first wins, and explicit peers come first."""
    seen: dict[tuple[IPAddress, int], Peer] = {}
    for peer in peers:
        seen.setdefault((peer.address, peer.port), peer)
    return list(seen.values())


# ---------------------------------------------------------------- filters


def _route_filters(
    peers: Sequence[Peer], filters: Mapping[str, BGPFilter], notes: list[str]
) -> tuple[RouteFilter, ...]:
    names = sorted({name for peer in peers for name in peer.filters})
    for name in names:
        if name not in filters:
            notes.append(f"BGPFilter {name} does not exist; peers naming it skip it")
    return tuple(_route_filter(name, filters[name], notes) for name in names if name in filters)


def _drop_unknown_filters(peer: Peer, known: set[str]) -> Peer:
    return replace(peer, filters=tuple(n for n in peer.filters if n in known))


def _route_filter(name: str, resource: BGPFilter, notes: list[str]) -> RouteFilter:
    spec = resource.spec
    return RouteFilter(
        name=name,
        export_v4=_rules(name, "exportV4", spec.export_v4, notes),
        import_v4=_rules(name, "importV4", spec.import_v4, notes),
        export_v6=_rules(name, "exportV6", spec.export_v6, notes),
        import_v6=_rules(name, "importV6", spec.import_v6, notes),
    )


def _rules(
    name: str, key: str, rules: Sequence[BGPFilterRule], notes: list[str]
) -> tuple[FilterRule, ...]:
    kept: list[FilterRule] = []
    for index, rule in enumerate(rules, start=1):
        unsupported = [f for f in _UNSUPPORTED_MATCHES if getattr(rule, f, None)]
        if unsupported:
            notes.append(f"BGPFilter {name} {key} rule {index}: {unsupported} unsupported; dropped")
            continue
        if rule.operations:
            notes.append(f"BGPFilter {name} {key} rule {index}: operations are not applied")
        kept.append(_rule(rule))
    return tuple(kept)


def _rule(rule: BGPFilterRule) -> FilterRule:
    lengths = rule.prefix_length
    return FilterRule(
        action=FilterAction(rule.action),
        cidr=rule.cidr,
        operator=None if rule.match_operator is None else MatchOperator(rule.match_operator),
        prefix_min=None if lengths is None else lengths.min,
        prefix_max=None if lengths is None else lengths.max,
        source=None if rule.source is None else RouteSource(rule.source),
        interface=rule.interface,
    )


# ---------------------------------------------------------------- what the node originates


def _originated(
    pools: Sequence[IPPool],
    blocks: Sequence[IPv4Network],
    egress_ips: Sequence[IPv4Address],
    notes: list[str],
) -> tuple[OriginatedPrefix, ...]:
    found: dict[IPNetwork, OriginatedPrefix] = {}
    for block in blocks:
        pool = _owning_pool(pools, block)
        if pool is None:
            notes.append(f"pod block {block} is in no IPPool; not advertised")
            continue
        found.setdefault(block, _prefix(block, PrefixKind.POD_BLOCK, pool))
    for ip in egress_ips:
        _add_egress(found, pools, ip, notes)
    ordered = sorted(
        found.values(), key=lambda p: (int(p.prefix.network_address), p.prefix.prefixlen)
    )
    return tuple(ordered)


def _add_egress(
    found: dict[IPNetwork, OriginatedPrefix],
    pools: Sequence[IPPool],
    ip: IPv4Address,
    notes: list[str],
) -> None:
    pool = _owning_pool(pools, ip_network(ip))
    if pool is None:
        notes.append(f"egress IP {ip} is in no IPPool; not advertised")
        return
    # Calico advertises whole IPAM blocks: a gateway's IP goes out as its /31 (or /32) block.
    block = ip_network(f"{ip}/{pool.spec.effective_block_size}", strict=False)
    found[block] = _prefix(block, PrefixKind.EGRESS, pool)


def _prefix(block: IPNetwork, kind: PrefixKind, pool: IPPool) -> OriginatedPrefix:
    return OriginatedPrefix(prefix=block, kind=kind, export=not pool.spec.disable_bgp_export)


def _owning_pool(pools: Sequence[IPPool], net: IPNetwork) -> IPPool | None:
    """The most specific pool holding `net` (pools of one cluster should not overlap)."""
    holders = [p for p in pools if _within(net, p.spec.cidr)]
    holders.sort(key=lambda p: (-p.spec.cidr.prefixlen, p.metadata.name))
    return holders[0] if holders else None


def _within(inner: IPNetwork, outer: IPNetwork) -> bool:
    if isinstance(inner, IPv4Network) and isinstance(outer, IPv4Network):
        return inner.subnet_of(outer)
    if isinstance(inner, IPv6Network) and isinstance(outer, IPv6Network):
        return inner.subnet_of(outer)
    return False


def _exportable_pools(pools: Sequence[IPPool]) -> tuple[IPNetwork, ...]:
    cidrs = {p.spec.cidr for p in pools if not p.spec.disable_bgp_export}
    return tuple(sorted(cidrs, key=lambda n: (n.version, int(n.network_address), n.prefixlen)))
