"""The egress decision: for a workload and a destination, `gateway`, `direct` or `drop`.

Pure. Reference semantics (calico-egress-gateway.md §3-§4):
- precedence: pod policy > namespace policy > pod selector > namespace selector, never
  merged; `EnabledPerNamespace` ignores pod annotations, `Disabled` ignores everything;
- a policy's rules match by longest prefix; a rule with no gateway is `direct`; a
  destination no rule covers is `direct`; a gateway set with no usable member is `drop`;
  a policy annotation that names a missing policy drops all egress;
- without a namespaceSelector only gateways in the workload's own namespace qualify;
- `gatewayPreference: PreferNodeLocal` keeps only gateways on the client's node if any;
  `maxNextHops` keeps at most N, chosen by rendezvous hashing (deterministic, spread evenly,
  and when the gateway set changes only the pods that used a departed gateway move);
- destinations inside the cluster (pods, services, nodes) never go through a gateway.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network

from egressgw.calc import annotations as egress_annotations
from egressgw.calc.annotations import GatewaySelection
from egressgw.calc.cluster import ClusterView, Support, Workload
from egressgw.calc.gateways import GATEWAY_ANNOTATION
from egressgw.model import EgressGatewayPolicy, EgressGatewayRule
from egressgw.selector import SelectorParseError, parse

DEFAULT_ROUTE = IPv4Network("0.0.0.0/0")


class Action(StrEnum):
    """What happens to a connection."""

    GATEWAY = "gateway"
    DIRECT = "direct"
    DROP = "drop"


class Source(StrEnum):
    """Which annotation decided."""

    POD_POLICY = "pod-policy"
    NAMESPACE_POLICY = "namespace-policy"
    POD_SELECTOR = "pod-selector"
    NAMESPACE_SELECTOR = "namespace-selector"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Hop:
    """A gateway pod used as a next hop."""

    namespace: str
    gateway: str  # the EgressGateway
    pod: str
    ip: IPv4Address
    node: str | None


@dataclass(frozen=True, slots=True)
class Route:
    """One destination range of a workload's egress configuration."""

    destination: IPv4Network
    rule: int | None  # index into the policy's rules; None for selector annotations
    action: Action
    hops: tuple[Hop, ...] = ()
    description: str = ""
    capped: bool = False  # maxNextHops applies: the hops are this pod's own subset
    draining: tuple[IPv4Address, ...] = ()  # matched gateways left out because terminating


@dataclass(frozen=True, slots=True)
class EgressConfig:
    """A workload's whole egress configuration: what to do per destination range."""

    source: Source
    policy: str | None
    routes: tuple[Route, ...]  # longest prefix first
    reason: str
    problems: tuple[str, ...] = ()
    identity: str = ""  # which policy or selection this is, whatever its gateways are now

    def lookup(self, destination: IPv4Address) -> Route | None:
        """The route for `destination` by longest-prefix match, or None (normal routing)."""
        for route in self.routes:
            if destination in route.destination:
                return route
        return None


NO_EGRESS = EgressConfig(Source.NONE, None, (), "no egress annotation applies")


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer for one workload and one destination, with its reasons."""

    pod: tuple[str, str]
    destination: IPv4Address
    action: Action
    source: Source
    policy: str | None
    rule: int | None
    gateways: tuple[Hop, ...]
    reason: str


def decide(view: ClusterView, workload: Workload, destination: IPv4Address) -> Decision:
    """What happens to a new connection from `workload` to `destination`. Pure."""
    config = egress_config(view, workload)
    if view.is_internal(destination):
        reason = f"{destination} is inside the cluster (pods, services, nodes): never via a gateway"
        return Decision(workload.key, destination, Action.DIRECT, config.source, config.policy,
                        None, (), reason)
    route = config.lookup(destination)
    if route is None:
        reason = config.reason
        if config.source is not Source.NONE:
            reason += f"; no rule covers {destination}: normal routing"
        return Decision(workload.key, destination, Action.DIRECT, config.source, config.policy,
                        None, (), reason)
    reason = f"{config.reason}; {_route_reason(route)}"
    return Decision(workload.key, destination, route.action, config.source, config.policy,
                    route.rule, route.hops, reason)


def egress_config(view: ClusterView, workload: Workload) -> EgressConfig:
    """The egress configuration that applies to `workload`, by the reference's precedence."""
    if view.support is Support.DISABLED:
        return EgressConfig(Source.NONE, None, (), "egressIPSupport is Disabled")
    if GATEWAY_ANNOTATION in workload.annotations:
        # A gateway forwards others' traffic and sends its own directly, even in a namespace
        # whose annotations steer every other pod (REF-AWS annotates the gateways' namespace).
        return EgressConfig(Source.NONE, None, (), "an egress gateway is never a client of one")
    pod = None
    if view.support is Support.PER_NAMESPACE_OR_POD:
        pod = egress_annotations.read(workload.annotations)
    ns = egress_annotations.read(view.namespace(workload.namespace).annotations)
    problems = tuple((pod.problems if pod else ()) + (ns.problems if ns else ()))
    missing: tuple[Source, str] | None = None
    for level, found in ((Source.POD_POLICY, pod), (Source.NAMESPACE_POLICY, ns)):
        if found is None or found.policy is None:
            continue
        policy = view.policies.get(found.policy)
        if policy is not None:
            return _from_policy(view, workload, level, policy, problems)
        missing = missing or (level, found.policy)
    if missing is not None:
        return _missing_policy(*missing, problems)
    for level, found in ((Source.POD_SELECTOR, pod), (Source.NAMESPACE_SELECTOR, ns)):
        if found is not None and found.selection is not None:
            return _from_selection(view, workload, level, found.selection, problems)
    return EgressConfig(Source.NONE, None, (), NO_EGRESS.reason, problems)


def _from_policy(
    view: ClusterView,
    workload: Workload,
    level: Source,
    policy: EgressGatewayPolicy,
    problems: tuple[str, ...],
) -> EgressConfig:
    name = policy.metadata.name
    routes = [_policy_route(view, workload, name, i, rule) for i, rule in enumerate(policy.spec.rules)]
    routes.sort(key=lambda r: (-r.destination.prefixlen, int(r.destination.network_address)))
    where = "pod" if level is Source.POD_POLICY else "namespace"
    reason = f"{where} annotation egressGatewayPolicy={policy.metadata.name}"
    return EgressConfig(level, policy.metadata.name, tuple(routes), reason, problems,
                        identity=f"policy:{policy.metadata.name}")


def _policy_route(
    view: ClusterView, workload: Workload, policy: str, index: int, rule: EgressGatewayRule
) -> Route:
    description = rule.description or ""
    if rule.gateway is None:
        return Route(rule.destination_cidr, index, Action.DIRECT, (), description)
    try:
        selection = GatewaySelection(
            parse(rule.gateway.selector) if rule.gateway.selector else None,
            parse(rule.gateway.namespace_selector),
            rule.gateway.max_next_hops,
        )
    except SelectorParseError:
        return Route(rule.destination_cidr, index, Action.DROP, (), description)
    prefer_local = rule.gateway_preference == "PreferNodeLocal"
    # Without a cap the route depends on the pod only through its node (PreferNodeLocal)
    # and on whether the pod is itself one of the gateways: share it between pods.
    shared = selection.max_next_hops == 0 and not any(
        w.key == workload.key for w in view.matching(selection, workload.namespace)
    )
    memo_key = (policy, index, (workload.node or "") if prefer_local else "")
    if shared and isinstance(found := view.routes.get(memo_key), Route):
        return found
    hops = choose_hops(view, workload, selection, prefer_local)
    action = Action.GATEWAY if hops else Action.DROP
    capped = selection.max_next_hops > 0
    draining = terminating_members(view, workload, selection)
    route = Route(rule.destination_cidr, index, action, hops, description, capped, draining)
    if shared:
        view.routes[memo_key] = route
    return route


def _missing_policy(level: Source, name: str, problems: tuple[str, ...]) -> EgressConfig:
    where = "pod" if level is Source.POD_POLICY else "namespace"
    reason = (f"{where} annotation egressGatewayPolicy={name} names a policy that does not "
              "exist: all egress is dropped")
    route = Route(DEFAULT_ROUTE, None, Action.DROP)
    return EgressConfig(level, name, (route,), reason, problems, identity=f"missing:{name}")


def _from_selection(
    view: ClusterView,
    workload: Workload,
    level: Source,
    selection: GatewaySelection,
    problems: tuple[str, ...],
) -> EgressConfig:
    # Without a cap, every pod of a namespace that is not itself one of the gateways gets
    # the same configuration: share it (the memo is keyed on everything it depends on).
    scope = workload.namespace if selection.namespace_selector is None else "*"
    matched = view.matching(selection, workload.namespace)
    shared = selection.max_next_hops == 0 and not any(w.key == workload.key for w in matched)
    memo_key = ("selection", str(level), *selection.key, scope, problems)
    if shared and isinstance(found := view.routes.get(memo_key), EgressConfig):
        return found
    hops = choose_hops(view, workload, selection, prefer_local=False)
    action = Action.GATEWAY if hops else Action.DROP
    where = "pod" if level is Source.POD_SELECTOR else "namespace"
    parts = [f"selector={selection.selector}"] if selection.selector else []
    if selection.namespace_selector is not None:
        parts.append(f"namespaceSelector={selection.namespace_selector}")
    reason = f"{where} annotation " + ", ".join(parts)
    route = Route(DEFAULT_ROUTE, None, action, hops, capped=selection.max_next_hops > 0,
                  draining=terminating_members(view, workload, selection))
    sel, ns = selection.key
    identity = f"selector:{sel}|{ns}|{scope}|{selection.max_next_hops}"
    config = EgressConfig(level, None, (route,), reason, problems, identity=identity)
    if shared:
        view.routes[memo_key] = config
    return config


def choose_hops(
    view: ClusterView, workload: Workload, selection: GatewaySelection, prefer_local: bool
) -> tuple[Hop, ...]:
    """The usable gateways for `workload` under `selection`, sorted by (namespace, pod)."""
    usable = [
        w for w in view.matching(selection, workload.namespace)
        if w.key != workload.key and not w.terminating and w.ip not in view.failed
    ]
    if prefer_local:
        local = [w for w in usable if w.node is not None and w.node == workload.node]
        usable = local or usable
    cap = selection.max_next_hops
    if 0 < cap < len(usable):
        usable = sorted(usable, key=lambda w: _score(workload, w))[:cap]
        usable.sort(key=lambda w: w.key)
    return tuple(Hop(w.namespace, w.gateway, w.name, w.ip, w.node) for w in usable if w.ip)


def terminating_members(
    view: ClusterView, workload: Workload, selection: GatewaySelection
) -> tuple[IPv4Address, ...]:
    """The gateways `selection` matches that are terminating (draining), sorted."""
    return tuple(sorted(
        w.ip for w in view.matching(selection, workload.namespace)
        if w.terminating and w.ip is not None and w.key != workload.key
    ))


def _score(client: Workload, gateway: Workload) -> bytes:
    # Rendezvous (highest random weight) hashing: a stable pseudo-random order per client.
    text = f"{client.namespace}/{client.name}|{gateway.ip}".encode()
    return hashlib.blake2b(text, digest_size=8).digest()


def _route_reason(route: Route) -> str:
    where = f"rule {route.rule} ({route.destination})" if route.rule is not None else str(route.destination)
    if route.description:
        where += f" {route.description!r}"
    if route.action is Action.GATEWAY:
        names = ", ".join(f"{h.namespace}/{h.pod} ({h.ip})" for h in route.hops)
        return f"{where} matched: via {names}"
    if route.action is Action.DROP:
        return f"{where} matched: its gateway set has no usable member, traffic is dropped"
    return f"{where} matched: no gateway, normal routing"
