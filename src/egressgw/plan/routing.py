"""The kernel routing objects a plan stands for: rules, routes, next hops, the VXLAN device,
its neighbour and FDB entries, and sysctls, in the kernel's own vocabulary.

Node (`node_routing`), for routing settings P (priority), M (mark mask), table(s):

    rule P    fwmark 0/M goto P+1         unmarked packets skip our lookups (added first,
                                          so it comes first among the rules at P)
    rule P    fwmark mark(s)/M lookup table(s)     one per slot, never one per pod
    rule P+1  nop                          the skip rule's target

The skip rule shares priority P rather than sitting at P-1, so it never jumps over anyone
else's rule (Calico's WireGuard rule, for one, lives at 99 by default).
    table(s): throw <cluster CIDR>         replies and tunnel packets keep their mark
              throw <its gateway IPs>/32   [vxlan] the outer packet keeps the mark too
              <dst> via {gateways}         resilient nexthop group (the driver's business)
              unreachable <dst> metric FALLBACK_METRIC   fail closed if the group vanishes
              throw <dst> / unreachable <dst>            the policy's direct / drop ranges

Gateway (`gateway_routing`): vxlan0, and each return destination via the client node's
egress.egw MAC, encapsulated to the node IP.

Pure: the one impure input, which device reaches a natively routed gateway, is passed in.
Must not: allocate nexthop ids or ifindexes (the netlink driver does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network

from egressgw.plan import ownership
from egressgw.plan.dataplane import (
    EgressRoute,
    EgressTable,
    GatewayPlan,
    NodePlan,
    RouteKind,
    RoutingSettings,
)

MAIN_TABLE = 254
HopOf = Callable[[IPv4Address], "Hop | None"]  # resolves a gateway to its next hop


class RuleAction(StrEnum):
    LOOKUP = "lookup"
    GOTO = "goto"
    NOP = "nop"


class RouteType(StrEnum):
    UNICAST = "unicast"
    THROW = "throw"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True, slots=True, order=True)
class Rule:
    """An `ip rule` of ours (protocol ownership.RT_PROTO)."""

    priority: int
    action: RuleAction
    fwmark: int = 0
    fwmask: int = 0
    table: int = 0  # LOOKUP only
    goto: int = 0  # GOTO only: the target priority


@dataclass(frozen=True, slots=True, order=True)
class Hop:
    """One next hop: a gateway address on a device."""

    gateway: IPv4Address
    device: str
    onlink: bool = False  # don't require a connected route to the gateway (tunnel devices)


@dataclass(frozen=True, slots=True)
class Route:
    """A route of ours (protocol ownership.RT_PROTO); UNICAST routes carry their hops."""

    table: int
    destination: IPv4Network
    type: RouteType
    metric: int = 0
    hops: frozenset[Hop] = frozenset()

    @property
    def key(self) -> tuple[int, IPv4Network, int]:
        """What the kernel keys a route on (tos and the rest are always 0 for us)."""
        return (self.table, self.destination, self.metric)


@dataclass(frozen=True, slots=True, order=True)
class Neighbour:
    """A permanent ARP entry on our VXLAN device: inner next hop -> remote VTEP MAC."""

    device: str
    address: IPv4Address
    lladdr: str


@dataclass(frozen=True, slots=True, order=True)
class FdbEntry:
    """A permanent FDB entry on our VXLAN device: remote VTEP MAC -> its outer IP."""

    device: str
    lladdr: str
    destination: IPv4Address


@dataclass(frozen=True, slots=True)
class VxlanLink:
    """Our VXLAN device. Learning is always off: every entry is programmed."""

    name: str
    vni: int
    port: int
    mtu: int
    mac: str
    local: IPv4Address | None = None
    underlay: str | None = None


@dataclass(frozen=True, slots=True, order=True)
class Sysctl:
    """A sysctl, by its path under /proc/sys (slashes: device names may hold dots)."""

    key: str
    value: str


@dataclass(frozen=True, slots=True)
class RoutingState:
    """Every routing object of ours in one namespace."""

    link: VxlanLink | None = None
    neighbours: frozenset[Neighbour] = frozenset()
    fdb: frozenset[FdbEntry] = frozenset()
    rules: frozenset[Rule] = frozenset()
    routes: frozenset[Route] = frozenset()
    sysctls: frozenset[Sysctl] = frozenset()


def conf(device: str, name: str) -> str:
    return f"net/ipv4/conf/{device}/{name}"


MULTIPATH_HASH = Sysctl("net/ipv4/fib_multipath_hash_policy", "1")  # L4: spread flows


def node_routing(plan: NodePlan, native_devices: Mapping[IPv4Address, str]) -> RoutingState:
    """The routing objects of a node plan; `native_devices` maps each natively routed
    gateway to the device it is on-link through (unresolved gateways are left out, and a
    route left without gateways falls to its unreachable twin)."""
    rules = frozenset(_node_rules(plan))
    routes = frozenset(_node_routes(plan, native_devices))
    if plan.vxlan is None:
        return RoutingState(rules=rules, routes=routes, sysctls=frozenset({MULTIPATH_HASH}))
    v = plan.vxlan
    macs = {gw: ownership.gateway_mac(gw) for gw in plan.gateways}
    return RoutingState(
        link=VxlanLink(v.device, v.vni, v.port, v.mtu, v.mac, v.local, v.underlay),
        neighbours=frozenset(Neighbour(v.device, gw, mac) for gw, mac in macs.items()),
        fdb=frozenset(FdbEntry(v.device, mac, gw) for gw, mac in macs.items()),
        rules=rules,
        routes=routes,
        # src_valid_mark: the RPF check of replies arriving on the tunnel sees their mark.
        sysctls=frozenset({MULTIPATH_HASH, Sysctl(conf(v.device, "src_valid_mark"), "1")}),
    )


def held_tables(
    state: RoutingState, settings: RoutingSettings, cluster: Iterable[IPv4Network]
) -> dict[int, EgressTable]:
    """The egress tables a node's routes stand for, by slot: what `node_routing` rendered,
    without what it adds (the throws for `cluster` and the tables' gateways, the fallbacks).
    A restarted agent plans from these, so it never changes a table it cannot see whole."""
    by_slot: dict[int, list[Route]] = {}
    for route in state.routes:
        slot = settings.slot_of_table(route.table)
        if slot is not None and route.metric == 0:
            by_slot.setdefault(slot, []).append(route)
    return {slot: EgressTable(slot, tuple(_egress_routes(routes, cluster)))
            for slot, routes in sorted(by_slot.items())}  # fmt: skip


def _egress_routes(routes: Iterable[Route], cluster: Iterable[IPv4Network]) -> Iterable[EgressRoute]:
    routes = list(routes)
    direct = {*cluster, *(IPv4Network(h.gateway) for r in routes for h in r.hops)}
    for route in routes:
        if route.type is RouteType.UNICAST:
            yield EgressRoute.via(route.destination, (h.gateway for h in route.hops))
        elif route.type is RouteType.UNREACHABLE:
            yield EgressRoute.unreachable(route.destination)
        elif route.destination not in direct:
            yield EgressRoute.throw(route.destination)


def _node_rules(plan: NodePlan) -> Iterable[Rule]:
    r = plan.routing
    if not plan.tables:
        return  # no rule at all keeps the kernel's fast path for main/default lookups
    # Rule ordering puts GOTO before LOOKUP at one priority; the driver adds in that order.
    yield Rule(r.rule_priority, RuleAction.GOTO, 0, r.mark_mask, goto=r.nop_priority)
    yield Rule(r.nop_priority, RuleAction.NOP)
    for table in plan.tables:
        mark, number = r.mark(table.slot), r.table(table.slot)
        yield Rule(r.rule_priority, RuleAction.LOOKUP, mark, r.mark_mask, table=number)


def _node_routes(plan: NodePlan, native_devices: Mapping[IPv4Address, str]) -> Iterable[Route]:
    for table in plan.tables:
        number = plan.routing.table(table.slot)
        keep_direct = list(plan.cluster)
        if plan.vxlan is not None:  # the outer packet carries its inner packet's mark
            keep_direct += [IPv4Network(gw) for gw in sorted(table.gateways)]
        direct = {dst: Route(number, dst, RouteType.THROW) for dst in keep_direct}
        yield from direct.values()
        for route in table.routes:
            if route.destination not in direct:  # the cluster always wins
                yield from _policy_routes(number, route, lambda gw: _hop(plan, gw, native_devices))


def _hop(plan: NodePlan, gateway: IPv4Address, native: Mapping[IPv4Address, str]) -> Hop | None:
    if plan.vxlan is not None:
        return Hop(gateway, plan.vxlan.device, onlink=True)
    device = native.get(gateway)
    return Hop(gateway, device) if device is not None else None


def _policy_routes(table: int, route: EgressRoute, hop_of: HopOf) -> Iterable[Route]:
    dst = route.destination
    if route.kind is RouteKind.THROW:
        yield Route(table, dst, RouteType.THROW)
    elif route.kind is RouteKind.UNREACHABLE:
        yield Route(table, dst, RouteType.UNREACHABLE)
    else:
        hops = frozenset(h for gw in route.gateways if (h := hop_of(gw)) is not None)
        if hops:
            yield Route(table, dst, RouteType.UNICAST, hops=hops)
        yield Route(table, dst, RouteType.UNREACHABLE, metric=ownership.FALLBACK_METRIC)


def gateway_routing(plan: GatewayPlan) -> RoutingState:
    """The routing objects of a gateway pod's namespace."""
    sysctls = {
        Sysctl("net/ipv4/ip_forward", "1"),
        # Replies and natively routed clients may come in on either device.
        Sysctl(conf("all", "rp_filter"), "0"),
        Sysctl(conf(plan.uplink, "rp_filter"), "0"),
        # Natively routed clients share the uplink's subnet with the next router: a
        # redirect would teach them to bypass the gateway.
        Sysctl(conf("all", "send_redirects"), "0"),
        Sysctl(conf(plan.uplink, "send_redirects"), "0"),
    }
    if plan.vxlan is None:
        return RoutingState(sysctls=frozenset(sysctls))
    v = plan.vxlan
    sysctls.add(Sysctl(conf(v.device, "rp_filter"), "0"))
    nodes = {r.node: ownership.node_mac(r.node) for r in plan.return_routes}
    routes = (
        Route(
            MAIN_TABLE,
            r.destination,
            RouteType.UNICAST,
            hops=frozenset({Hop(r.node, v.device, True)}),
        )
        for r in plan.return_routes
    )
    return RoutingState(
        link=VxlanLink(v.device, v.vni, v.port, v.mtu, plan.mac, None, plan.uplink),
        neighbours=frozenset(Neighbour(v.device, node, mac) for node, mac in nodes.items()),
        fdb=frozenset(FdbEntry(v.device, mac, node) for node, mac in nodes.items()),
        routes=frozenset(routes),
        sysctls=frozenset(sysctls),
    )
