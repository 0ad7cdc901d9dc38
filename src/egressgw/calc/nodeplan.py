"""One node's desired egress dataplane, from the egress decision.

Pure. Pods on the node with the same egress configuration share one routing table (one
slot: one mark, one table, one `ip rule`); a slot keeps its number while its configuration
lives, so live connections' conntrack marks stay valid. Gateway pods on the node get a
GatewayPlan each (SNAT, VXLAN endpoint, return routes to client nodes).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from egressgw.calc import decision, linger
from egressgw.calc.assignment import NodeAssignment
from egressgw.calc.cluster import ClusterView, Workload
from egressgw.calc.egressconfig import Action, EgressConfig
from egressgw.calc.gateways import GATEWAY_ANNOTATION
from egressgw.calc.hops import PickKey, Picks
from egressgw.model import Node
from egressgw.plan import dataplane as dp

# A configuration's identity, stable while its gateways come and go: the policy or
# selection, and per route its destination, action and (only where maxNextHops picks a
# per-pod subset) its hops. A table keeps its slot, and so its mark, for as long as the
# identity lives; a gateway set that loses or swaps members is applied to the same table
# (the driver replaces the nexthop group in place), so live connections keep their mark and
# their table. One that grows, or drops a draining gateway, gets a new table (calc.linger).
ConfigKey = tuple[object, ...]


@functools.lru_cache(maxsize=65536)  # asked for every local pod on every plan
def calico_ifname(namespace: str, name: str) -> str:
    """The host-side veth name Calico's CNI gives a pod: `cali` + sha1("<ns>.<name>")[:11]."""
    return "cali" + hashlib.sha1(f"{namespace}.{name}".encode()).hexdigest()[:11]


def pod_cidrs(node: Node) -> tuple[IPv4Network, ...]:
    """A Node's IPv4 pod CIDRs (`spec.podCIDR` first, then `spec.podCIDRs`)."""
    spec = node.spec
    if spec is None:
        return ()
    found = [spec.pod_cidr] if isinstance(spec.pod_cidr, IPv4Network) else []
    found += [c for c in spec.pod_cidrs if isinstance(c, IPv4Network) and c not in found]
    return tuple(found)


def node_infos(nodes: Sequence[Node]) -> list[NodeInfo]:
    """NodeInfo for every node that has an IPv4 address."""
    return [NodeInfo(n.metadata.name, n.internal_ip, pod_cidrs(n)) for n in nodes
            if n.internal_ip is not None]


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What the plan needs of a node."""

    name: str
    ip: IPv4Address
    pod_cidrs: tuple[IPv4Network, ...] = ()


@dataclass(frozen=True, slots=True)
class NodeResult:
    """A node's plans and the slot assignment to carry into the next computation."""

    plan: dp.NodePlan
    gateways: Mapping[tuple[str, str], dp.GatewayPlan]  # local gateway pods by (ns, name)
    slots: Mapping[ConfigKey, int]
    problems: tuple[str, ...]
    tables: Mapping[ConfigKey, dp.EgressTable]  # every table, lingering ones included
    classified: Mapping[tuple[str, str], ConfigKey]  # which pod uses which configuration
    # pods whose previous table lingers for a draining gateway -> that gateway's IP
    maintenance: Mapping[tuple[str, str], IPv4Address]


def config_key(config: EgressConfig) -> ConfigKey:
    """The stable identity of a configuration (see ConfigKey); () when it steers nothing."""
    if not config.routes:
        return ()
    return (config.identity, *(
        (str(r.destination), str(r.action), _hop_key(h.ip for h in r.hops) if r.capped else None)
        for r in config.routes
    ))


def adopted_key(config: EgressConfig, held: Mapping[IPv4Network, Iterable[IPv4Address]]) -> ConfigKey:
    """The key of `config` with its capped routes' hops as a kernel table holds them (`held`:
    destination -> gateways): what the pod was classified under before a restart."""
    if not config.routes:
        return ()
    return (config.identity, *(
        (str(r.destination), str(r.action), _hop_key(held.get(r.destination, ())) if r.capped else None)
        for r in config.routes
    ))


def previous_picks(classified: Mapping[tuple[str, str], ConfigKey]) -> Picks:
    """Each pod's maxNextHops picks as its configuration key records them."""
    picks: dict[PickKey, frozenset[str]] = {}
    capped: dict[int, list[tuple[str, frozenset[str]]]] = {}  # pods share key objects: once each
    for pod, key in classified.items():
        found = capped.get(id(key))
        if found is None:
            found = capped[id(key)] = [(str(e[0]), frozenset(e[2])) for e in key[1:]
                                       if isinstance(e, tuple) and isinstance(e[2], tuple)]
        for destination, hops in found:
            picks[(pod, str(key[0]), destination)] = hops
    return picks


def _hop_key(hops: Iterable[IPv4Address]) -> tuple[str, ...]:
    # By address, as a kernel table lists them too: a key rebuilt from it is the same key.
    return tuple(str(ip) for ip in sorted(hops))


def table_routes(config: EgressConfig) -> tuple[dp.EgressRoute, ...]:
    """The kernel routes of an egress configuration, in a canonical order."""
    routes = []
    for route in config.routes:
        if route.action is Action.GATEWAY:
            routes.append(dp.EgressRoute.via(route.destination, (h.ip for h in route.hops)))
        elif route.action is Action.DROP:
            routes.append(dp.EgressRoute.unreachable(route.destination))
        else:
            routes.append(dp.EgressRoute.throw(route.destination))
    return tuple(sorted(routes, key=lambda r: (r.destination.prefixlen, int(r.destination.network_address))))


def node_plan(
    view: ClusterView,
    node: NodeInfo,
    nodes: Sequence[NodeInfo],
    routing: dp.RoutingSettings,
    previous: Mapping[ConfigKey, int],
    vxlan: dp.VxlanSettings | None,
    before: NodeResult | None = None,
    adopted: Mapping[tuple[str, str], ConfigKey] | None = None,
) -> NodeResult:
    """The plan for `node`: classification and tables for its pods, plans for its gateways.

    maxNextHops picks are sticky: each pod keeps the picks its previous configuration
    recorded (`before.classified`, or `adopted` from the kernel after a restart) while they
    stay usable, and a pod whose picks change keeps its table slot when no pod uses its
    old configuration any more (the changed gateway set applies in place, see ConfigKey).

    Draining and growth: a table that is no longer wanted but routes through a gateway that
    is still terminating (not yet gone), or whose gateway set gains a member, lingers,
    unchanged and with no classification pointing at it, so connections that carry its mark
    keep their gateway; new connections get a fresh table (see calc.linger).
    """
    local = [w for w in view.on_node(node.name) if w.ip is not None]
    history = before.classified if before is not None else adopted or {}
    assignment = decision.node_configs(view, node.name, previous_picks(history))
    wanted, users, content = _configurations(local, assignment)
    distinct = list(content)  # the wanted keys, each once, as the very objects `wanted` holds
    draining = {w.ip for w in view.workloads.values() if w.terminating and w.ip is not None}
    held = before.tables if before is not None else {}
    present = _present(view) if any(isinstance(k, linger.Aside) for k in held) else set()
    lingering, previous = linger.drained(held, content, draining, present, previous)
    previous = _carried(history, wanted, distinct, previous)
    previous = linger.grown(held, content, lingering, previous)
    previous = linger.revived(content, lingering, draining, previous)
    linger.bound(lingering, draining, len(distinct), routing.capacity)
    slots = dp.assign_slots([*distinct, *lingering], previous, routing.capacity)
    unslotted = {id(k) for k in distinct if k not in slots}
    problems = [f"{ns}/{name}: no free egress slot on {node.name} (capacity {routing.capacity})"
                for (ns, name), key in sorted(wanted.items()) if id(key) in unslotted] if unslotted else []
    classifications = tuple(
        dp.Classification(calico_ifname(w.namespace, w.name), _ip(w), slot)
        for key, pods in zip(distinct, users, strict=True) if (slot := slots.get(key)) is not None
        for w in pods
    )
    content.update({k: t.routes for k, t in lingering.items()})
    used = {slots[k] for k in [*distinct, *lingering] if k in slots}
    tables = {key: dp.EgressTable(slot, content[key]) for key, slot in slots.items() if slot in used}
    plan = dp.NodePlan(routing, view.internal, tuple(tables.values()), classifications, vxlan)
    gateways = {w.key: gateway_plan(w, node, nodes, vxlan) for w in local if GATEWAY_ANNOTATION in w.annotations}
    maintenance = _maintenance(before, lingering, draining)
    return NodeResult(plan, gateways, {k: v for k, v in slots.items() if v in used},
                      tuple(problems), tables, wanted, maintenance)


def _configurations(
    local: Sequence[Workload], assignment: NodeAssignment
) -> tuple[dict[tuple[str, str], ConfigKey], list[list[Workload]], dict[ConfigKey, tuple[dp.EgressRoute, ...]]]:
    """Each local pod's configuration key (pods that steer nothing left out); per distinct
    key, in order of first use, its table's routes (`content`) and its pods.

    Pods share configuration objects, and configurations share keys: a key is computed
    once per configuration object, and equal keys are one object (the one in `content`),
    so the per-pod work is a lookup by identity."""
    wanted: dict[tuple[str, str], ConfigKey] = {}
    content: dict[ConfigKey, tuple[dp.EgressRoute, ...]] = {}
    groups: dict[ConfigKey, tuple[ConfigKey, list[Workload]]] = {}
    known: dict[int, tuple[EgressConfig, ConfigKey, list[Workload] | None]] = {}
    for w in local:
        config = assignment.config(w.key)
        assert config is not None  # every pod with an address on the node has one
        found = known.get(id(config))
        if found is None or found[0] is not config:
            found = known[id(config)] = _group(config, content, groups)
        if found[2] is not None:
            wanted[w.key] = found[1]
            found[2].append(w)
    return wanted, [pods for _, pods in groups.values()], content


def _group(
    config: EgressConfig,
    content: dict[ConfigKey, tuple[dp.EgressRoute, ...]],
    groups: dict[ConfigKey, tuple[ConfigKey, list[Workload]]],
) -> tuple[EgressConfig, ConfigKey, list[Workload] | None]:
    """`config`, its key (the very object of an equal key met before) and that key's pods
    (None: it steers nothing)."""
    key = config_key(config)
    if not key:
        return config, key, None
    found = groups.get(key)
    if found is None:
        found = groups[key] = (key, [])
        content[key] = table_routes(config)
    return config, found[0], found[1]


def _present(view: ClusterView) -> set[IPv4Address]:
    """The addresses of every pod (asked for only when a set-aside table may retire)."""
    return {w.ip for w in view.workloads.values() if w.ip is not None}


def restarted(
    routing: dp.RoutingSettings,
    held: Mapping[int, dp.EgressTable],
    slots: Mapping[ConfigKey, int],
    classified: Mapping[tuple[str, str], ConfigKey],
) -> NodeResult:
    """What a restarted agent finds in the kernel, as the `before` of its first plan: the
    tables it holds (`held`, by slot; plan.routing.held_tables), the configurations adopted
    from the classification map (`slots`) and each pod's (`classified`). Tables no pod is
    classified into are adopted as set aside (linger.adopted), so they keep lingering."""
    tables = linger.adopted(held, slots)
    plan = dp.NodePlan(routing, (), tuple(tables.values()))
    return NodeResult(plan, {}, {k: t.slot for k, t in tables.items()}, (), tables, dict(classified), {})


def _carried(
    history: Mapping[tuple[str, str], ConfigKey],
    wanted: Mapping[tuple[str, str], ConfigKey],
    distinct: Sequence[ConfigKey],
    previous: Mapping[ConfigKey, int],
) -> dict[ConfigKey, int]:
    """`previous`, with the slot of a configuration no pod uses any more handed to the
    configuration its first pod moved to when only maxNextHops picks differ. (`distinct`:
    the wanted keys, each once, as the very objects `wanted` holds.)"""
    fresh = {id(k) for k in distinct if k and k not in previous}
    used = set(distinct)
    if not fresh or all(k in used for k in previous):  # nothing to move, or no slot to free
        return dict(previous)
    slots = dict(previous)
    for pod in sorted(pod for pod, key in wanted.items() if id(key) in fresh):
        key, old = wanted[pod], history.get(pod)
        if old and old in slots and old not in used and key not in slots and linger.shape(old) == linger.shape(key):
            slots[key] = slots.pop(old)
    return slots


def _maintenance(
    before: NodeResult | None, lingering: Mapping[ConfigKey, dp.EgressTable], draining: set[IPv4Address]
) -> dict[tuple[str, str], IPv4Address]:
    if before is None:
        return {}
    by_old_key = {k.config: t for k, t in lingering.items()  # set aside now, for a drain
                  if isinstance(k, linger.Aside) and k not in before.tables and t.gateways & draining}  # fmt: skip
    out: dict[tuple[str, str], IPv4Address] = {}
    for pod, key in before.classified.items():
        table = by_old_key.get(key)
        if table is not None:
            out[pod] = max(table.gateways & draining)
    for pod, ip in before.maintenance.items():
        if ip in draining and any(ip in t.gateways for t in lingering.values()):
            out.setdefault(pod, ip)
    return out


def gateway_plan(
    pod: Workload, node: NodeInfo, nodes: Sequence[NodeInfo], vxlan: dp.VxlanSettings | None
) -> dp.GatewayPlan:
    """A gateway pod's plan: SNAT to its own IP; over VXLAN, replies go back the same way."""
    address = _ip(pod)
    if vxlan is None:
        return dp.GatewayPlan(address=address, egress_ip=address, native=True)
    returns = tuple(
        dp.ReturnRoute(cidr, other.ip)
        for other in nodes if other.name != node.name
        for cidr in other.pod_cidrs
    )
    tunnel = dp.GatewayVxlan(mtu=vxlan.mtu, vni=vxlan.vni, port=vxlan.port)
    return dp.GatewayPlan(address=address, egress_ip=address, vxlan=tunnel, native=True,
                          return_routes=returns)


def _ip(w: Workload) -> IPv4Address:
    assert w.ip is not None
    return w.ip
