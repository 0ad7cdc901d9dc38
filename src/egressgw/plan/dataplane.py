"""The desired egress dataplane of one client node (`NodePlan`) and of one gateway pod
(`GatewayPlan`): pure frozen values, validated on construction.

A node plan says which pods' new connections leaving the cluster are steered
(`Classification`: ingress interface + source IPv4 -> slot) and, per slot, the routing
table they use (`EgressTable`: one route per destination range, longest prefix wins in
the kernel). A slot is the index of one distinct egress configuration on the node: its
packet/conntrack mark and its routing table number both derive from it
(`RoutingSettings.mark`, `RoutingSettings.table`). Slots must stay stable while a
configuration lives (`assign_slots`), because a live connection's conntrack mark keeps
naming its slot.

Must not: do I/O, or know how the kernel spells any of this (plan.nft and plan.routing
translate; the drivers apply).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network, collapse_addresses
from itertools import pairwise
from operator import attrgetter, itemgetter
from typing import TypeVar

from egressgw.plan import ownership

IFNAMSIZ = 16  # kernel interface names are at most 15 bytes


class RouteKind(StrEnum):
    """What a destination range of an egress configuration does (calc.egressconfig.Action)."""

    VIA = "via"  # through the gateways (GATEWAY)
    THROW = "throw"  # leave the table: normal routing (DIRECT)
    UNREACHABLE = "unreachable"  # drop with ICMP host unreachable (DROP, empty gateway set)


class Transport(StrEnum):
    """How a client node reaches its gateways."""

    VXLAN = "vxlan"  # encapsulated to the gateway pod IP itself (the reference's way)
    NATIVE = "native"  # routed: the gateway IP is on-link (same L2, or a local pod veth)


@dataclass(frozen=True, slots=True)
class EgressRoute:
    """One destination range of one egress configuration."""

    destination: IPv4Network
    kind: RouteKind
    gateways: frozenset[IPv4Address] = frozenset()  # non-empty exactly when kind is VIA

    def __post_init__(self) -> None:
        if (self.kind is RouteKind.VIA) != bool(self.gateways):
            raise ValueError(f"{self.destination}: a {self.kind} route takes gateways iff VIA")

    @classmethod
    def via(cls, destination: IPv4Network, gateways: Iterable[IPv4Address]) -> EgressRoute:
        return cls(destination, RouteKind.VIA, frozenset(gateways))

    @classmethod
    def throw(cls, destination: IPv4Network) -> EgressRoute:
        return cls(destination, RouteKind.THROW)

    @classmethod
    def unreachable(cls, destination: IPv4Network) -> EgressRoute:
        return cls(destination, RouteKind.UNREACHABLE)


@dataclass(frozen=True, slots=True)
class EgressTable:
    """The routing table of one slot; routes are kept sorted by destination."""

    slot: int
    routes: tuple[EgressRoute, ...]

    def __post_init__(self) -> None:
        routes = tuple(sorted(self.routes, key=lambda r: r.destination))
        destinations = [route.destination for route in routes]
        if len(set(destinations)) != len(destinations):
            raise ValueError(f"slot {self.slot}: two routes for one destination")
        object.__setattr__(self, "routes", routes)

    @property
    def gateways(self) -> frozenset[IPv4Address]:
        return frozenset(gw for route in self.routes for gw in route.gateways)


@dataclass(frozen=True, slots=True, init=False)
class Classification:
    """New connections from `source` arriving on `iifname` use `slot`'s table.

    Keying on the ingress interface (the pod's host-side veth) is the anti-spoofing: a pod
    cannot borrow another pod's egress by forging its source address.
    """

    iifname: str
    source: IPv4Address
    slot: int
    # (iifname, source as text, slot): how the nft map spells it. Computed once, because
    # diffs of 10,000s of entries hash and sort these, and IPv4Address does both in Python.
    element: tuple[str, str, int] = field(init=False, repr=False, compare=False)

    def __init__(self, iifname: str, source: IPv4Address, slot: int) -> None:
        # Written out, not generated: a plan builds one per classified pod (10,000s), and
        # the generated __init__ and __post_init__ took twice as long.
        # len(name) bounds the UTF-8 length from below; encode only names that are not ASCII
        if not 0 < len(iifname) < IFNAMSIZ or not (iifname.isascii() or len(iifname.encode()) < IFNAMSIZ):
            raise ValueError(f"bad interface name {iifname!r}")
        b = source.packed  # str(IPv4Address) spelled directly, at a third of the cost
        element = (iifname, f"{b[0]}.{b[1]}.{b[2]}.{b[3]}", slot)
        set_iifname, set_source, set_slot, set_element = _CLASSIFICATION_SLOTS
        set_iifname(self, iifname)
        set_source(self, source)
        set_slot(self, slot)
        set_element(self, element)

    @classmethod
    def from_element(cls, element: tuple[str, str, int]) -> Classification:
        iifname, source, slot = element
        return cls(iifname, IPv4Address(source), slot)


# The slots' own setters: what a frozen dataclass's __init__ does with object.__setattr__,
# without looking each name up.
_CLASSIFICATION_SLOTS = tuple(getattr(Classification, f).__set__ for f in ("iifname", "source", "slot", "element"))


@dataclass(frozen=True, slots=True)
class RoutingSettings:
    """Node-wide numbers: rule priority, table numbers and mark bits (FelixConfiguration)."""

    rule_priority: int = ownership.DEFAULT_RULE_PRIORITY  # egressIPRoutingRulePriority
    table_base: int = ownership.DEFAULT_TABLE_BASE  # slot s uses table table_base + s
    mark_mask: int = ownership.DEFAULT_MARK_MASK  # contiguous bits of skb and conntrack marks

    def __post_init__(self) -> None:
        if not 1 <= self.rule_priority <= 32764:
            raise ValueError("rule priority must be in 1..32764 (P+1 is used too)")
        low = self.mark_mask & -self.mark_mask
        if not 0 < self.mark_mask <= 0xFFFFFFFF or (self.mark_mask + low) & self.mark_mask:
            raise ValueError(f"mark mask {self.mark_mask:#x} must be one run of set bits")
        reserved = (0, 253, 254, 255)  # unspec, default, main, local
        if any(t in self.tables for t in reserved) or self.tables[-1] > 0xFFFFFFFF:
            raise ValueError(f"tables {self.table_base}..{self.tables[-1]} overlap reserved ones")

    @property
    def shift(self) -> int:
        return (self.mark_mask & -self.mark_mask).bit_length() - 1

    @property
    def capacity(self) -> int:
        """How many slots fit in the mask (mark 0 means "not ours")."""
        return self.mark_mask >> self.shift

    @property
    def tables(self) -> range:
        return range(self.table_base, self.table_base + self.capacity)

    def mark(self, slot: int) -> int:
        return (slot + 1) << self.shift

    def table(self, slot: int) -> int:
        return self.table_base + slot

    def slot_of_mark(self, mark: int) -> int | None:
        value = (mark & self.mark_mask) >> self.shift
        return value - 1 if value else None

    def slot_of_table(self, table: int) -> int | None:
        return table - self.table_base if table in self.tables else None

    @property
    def nop_priority(self) -> int:
        """The jump target just after our lookup rules."""
        return self.rule_priority + 1


@dataclass(frozen=True, slots=True)
class VxlanSettings:
    """The node's VXLAN device toward its gateways (reference §6.1.9, our MAC formula)."""

    local: IPv4Address  # the node IP: outer source, and what gateways send replies to
    mtu: int  # underlay MTU - ownership.VXLAN_OVERHEAD
    underlay: str | None = None  # the device holding the node IP (vxlan `dev`), if pinned
    vni: int = ownership.DEFAULT_VXLAN_VNI
    port: int = ownership.DEFAULT_VXLAN_PORT

    def __post_init__(self) -> None:
        _check_vxlan(self.vni, self.port, self.mtu)

    @property
    def device(self) -> str:
        return ownership.NODE_VXLAN_DEVICE

    @property
    def mac(self) -> str:
        return ownership.node_mac(self.local)

    @property
    def mss(self) -> int:
        """TCP MSS that fits the tunnel without fragmentation."""
        return self.mtu - ownership.TCP_IP_HEADERS


@dataclass(frozen=True, slots=True)
class NodePlan:
    """Everything one client node's egress dataplane should hold."""

    routing: RoutingSettings
    cluster: tuple[IPv4Network, ...]  # pod pools, service ranges, node IPs: never via a gateway
    tables: tuple[EgressTable, ...] = ()
    classifications: tuple[Classification, ...] = ()
    vxlan: VxlanSettings | None = None  # None: native transport

    def __post_init__(self) -> None:
        object.__setattr__(self, "cluster", tuple(collapse_addresses(self.cluster)))
        object.__setattr__(self, "tables", tuple(sorted(self.tables, key=lambda t: t.slot)))
        ordered = sorted(self.classifications, key=attrgetter("element"))
        object.__setattr__(self, "classifications", tuple(ordered))
        self._check_slots()

    def _check_slots(self) -> None:
        slots = [table.slot for table in self.tables]
        if len(set(slots)) != len(slots):
            raise ValueError("two tables for one slot")
        if slots and not 0 <= slots[0] <= slots[-1] < self.routing.capacity:
            raise ValueError(f"slots must be in 0..{self.routing.capacity - 1}")
        # sorted by element: a source classified twice on one interface is in adjacent ones
        elements = [c.element for c in self.classifications]
        if any(a[0] == b[0] and a[1] == b[1] for a, b in pairwise(elements)):
            raise ValueError("a source is classified twice on one interface")
        missing = set(map(itemgetter(2), elements)) - set(slots)
        if missing:
            raise ValueError(f"classified into slots without a table: {sorted(missing)}")

    @property
    def transport(self) -> Transport:
        return Transport.NATIVE if self.vxlan is None else Transport.VXLAN

    @property
    def gateways(self) -> frozenset[IPv4Address]:
        """Every gateway IP some table routes through."""
        return frozenset(gw for table in self.tables for gw in table.gateways)


@dataclass(frozen=True, slots=True)
class ReturnRoute:
    """On a gateway: replies to `destination` go back through the VXLAN to client `node`."""

    destination: IPv4Network  # the client node's pod CIDR, or a client pod /32
    node: IPv4Address  # the client node IP: VTEP, and the basis of its egress.egw MAC


@dataclass(frozen=True, slots=True)
class GatewayVxlan:
    """A gateway pod's vxlan0 (reference §6.3: same VNI and port as the nodes)."""

    mtu: int
    vni: int = ownership.DEFAULT_VXLAN_VNI
    port: int = ownership.DEFAULT_VXLAN_PORT

    def __post_init__(self) -> None:
        _check_vxlan(self.vni, self.port, self.mtu)

    @property
    def device(self) -> str:
        return ownership.GATEWAY_VXLAN_DEVICE

    @property
    def mss(self) -> int:
        return self.mtu - ownership.TCP_IP_HEADERS


@dataclass(frozen=True, slots=True)
class GatewayPlan:
    """Everything one gateway pod's own namespace should hold."""

    address: IPv4Address  # the pod IP: VTEP, and the basis of its vxlan0 MAC
    egress_ip: IPv4Address  # source address of everything it forwards (usually `address`)
    uplink: str = "eth0"
    vxlan: GatewayVxlan | None = None  # accept encapsulated traffic from client nodes
    native: bool = False  # accept natively routed traffic arriving on the uplink
    return_routes: tuple[ReturnRoute, ...] = field(default=())

    def __post_init__(self) -> None:
        routes = tuple(sorted(set(self.return_routes), key=lambda r: (r.destination, r.node)))
        if len({r.destination for r in routes}) != len(routes):
            raise ValueError("one return destination via two nodes")
        if routes and self.vxlan is None:
            raise ValueError("return routes need the VXLAN transport")
        object.__setattr__(self, "return_routes", routes)

    @property
    def mac(self) -> str:
        return ownership.gateway_mac(self.address)


@dataclass(frozen=True, slots=True)
class ApplyStats:
    """What one reconcile changed; `errors` lists items it could not fix (left dirty)."""

    added: int = 0
    removed: int = 0
    changed: int = 0
    errors: tuple[str, ...] = ()

    @property
    def changes(self) -> int:
        return self.added + self.removed + self.changed

    def __add__(self, other: ApplyStats) -> ApplyStats:
        return ApplyStats(
            self.added + other.added,
            self.removed + other.removed,
            self.changed + other.changed,
            self.errors + other.errors,
        )


K = TypeVar("K", bound=Hashable)


def assign_slots(keys: Iterable[K], previous: Mapping[K, int], capacity: int) -> dict[K, int]:
    """Give each configuration key a slot, keeping the slot it had; pure and deterministic.

    Keys already in `previous` keep their slot (live connections' marks stay valid); new
    keys take the lowest free slots in sorted order. Keys that do not fit are left out.
    """
    wanted = sorted(set(keys), key=repr)
    kept = {key: previous[key] for key in wanted if key in previous and previous[key] < capacity}
    free = iter(sorted(set(range(capacity)) - set(kept.values())))
    fresh = dict(zip((k for k in wanted if k not in kept), free, strict=False))
    return kept | fresh


def vxlan_mtu(underlay_mtu: int) -> int:
    """The tunnel device MTU for an underlay MTU."""
    return underlay_mtu - ownership.VXLAN_OVERHEAD


def _check_vxlan(vni: int, port: int, mtu: int) -> None:
    if not 0 < vni < 2**24 or not 0 < port < 2**16 or not 576 <= mtu <= 65535:
        raise ValueError(f"bad VXLAN settings vni={vni} port={port} mtu={mtu}")
