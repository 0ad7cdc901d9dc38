"""The egress decision: for a workload and a destination, `gateway`, `direct` or `drop`.

Pure: no I/O, clock or randomness. It decides one workload at a time, by the reference's
semantics (calico-egress-gateway.md §3-§4):
- precedence: pod policy > namespace policy > pod selector > namespace selector, never
  merged; `EnabledPerNamespace` ignores pod annotations, `Disabled` ignores everything;
- a policy's rules match by longest prefix; a rule with no gateway is `direct`; a
  destination no rule covers is `direct`; a gateway set with no usable member is `drop`;
  a policy annotation that names a missing policy drops all egress;
- without a namespaceSelector only gateways in the workload's own namespace qualify;
- `gatewayPreference: PreferNodeLocal` keeps only gateways on the client's node if any;
- destinations inside the cluster (pods, services, nodes) never go through a gateway.
`maxNextHops` keeps at most N candidates, which depends on the other pods of the client's
node: this module does not pick. It drafts each pod's configuration with every candidate
(an assignment.Draft) and hands a node's drafts to calc/assignment.py (`node_configs`);
`egress_config` answers from the node's history-less assignment.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from egressgw.calc import annotations as egress_annotations
from egressgw.calc import assignment
from egressgw.calc.annotations import GatewaySelection
from egressgw.calc.assignment import Draft, NodeAssignment, Pick
from egressgw.calc.cluster import ClusterView, Support, Workload
from egressgw.calc.egressconfig import Action, EgressConfig, Hop, Route, Source
from egressgw.calc.gateways import GATEWAY_ANNOTATION
from egressgw.calc.hops import Picks, Pod, preference
from egressgw.model import EgressGatewayPolicy, EgressGatewayRule
from egressgw.selector import SelectorParseError, parse

DEFAULT_ROUTE = IPv4Network("0.0.0.0/0")
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
    """The egress configuration that applies to `workload`, by the reference's precedence.

    Capped routes carry the picks of its node's assignment with no history (`node_configs`):
    what a freshly started agent programs."""
    draft = _draft(view, workload)
    if not draft.pending:
        return draft.config
    found = view.assignments.get(workload.node)
    if not isinstance(found, NodeAssignment):
        found = view.assignments[workload.node] = node_configs(view, workload.node)
    return found.config(workload.key) or found.newcomer(draft)


def node_configs(view: ClusterView, node: str | None, previous: Picks | None = None) -> NodeAssignment:
    """The configurations of the pods (with an address) on `node`, capped routes picked
    together (calc/assignment.py), keeping their `previous` picks that are still usable.

    From an earlier view's assignment of the node, only the pods changed since are decided
    again (`ClusterView.earlier`); else every pod of the node is."""
    base, changed = view.earlier.get(node, (None, frozenset()))
    if isinstance(base, NodeAssignment):
        return assignment.derived(base, {key: _draft_on(view, key, node) for key in changed}, previous)
    return assignment.assign(_node_drafts(view, node), previous)


def _node_drafts(view: ClusterView, node: str | None) -> dict[Pod, Draft]:
    """The drafts of the pods (with an address) on `node`, in (namespace, name) order."""
    memo, drafts = view.drafts.get(node, {}), {}
    plain: dict[str, _Plain] = {}  # per namespace, see _plain_draft
    for w in view.on_node(node):
        if w.ip is None:
            continue
        d = memo.get(w.key)  # `_draft`, inlined: this loop runs over every pod of the node
        if not (isinstance(d, Draft) and d.workload is w):
            d = None if w.annotations else _plain_draft(view, w, plain)
            if d is None:
                d = _new_draft(view, w)
        drafts[w.key] = d
    return drafts


# Of a namespace, for its pods without annotations: the configuration they share (None:
# decided pod by pod) and the pods it is not for (those its selection picks as gateways).
_Plain = tuple[EgressConfig | None, frozenset[Pod]]
_NOT_SHARED: _Plain = (None, frozenset())


def _plain_draft(view: ClusterView, workload: Workload, plain: dict[str, _Plain]) -> Draft | None:
    """`_new_draft` of a pod without annotations, from its namespace's shared configuration
    when there is one (the usual case: 10,000s of pods, one namespace annotation); else None.

    Without annotations of its own, a pod's configuration is its namespace's: none, or its
    selection's, which is the same for every pod it does not pick (`_from_selection`)."""
    found = plain.get(workload.namespace)
    if found is None:
        found = _plain(view, workload)
        if found is None:  # `workload` is one of the gateways: ask again with the next pod
            return None
        plain[workload.namespace] = found
    config, picked = found
    if config is None or workload.key in picked:
        return None
    draft = Draft(workload, config, ())
    view.remember(workload, draft)
    return draft


def _plain(view: ClusterView, workload: Workload) -> _Plain | None:
    """The `_Plain` of `workload`'s namespace (`workload` has no annotations), or None when
    `workload` is one of the pods it is not for."""
    if view.support is Support.DISABLED:
        return _NOT_SHARED
    ns = _namespace_annotations(view, workload.namespace)
    if ns is None:
        return NO_EGRESS, frozenset()
    if ns.policy is not None or ns.selection is None:
        return _NOT_SHARED
    picked = frozenset(w.key for w in view.matching(ns.selection, workload.namespace))
    if workload.key in picked:
        return None
    config = _config(view, workload)
    if any(0 < route.cap < len(route.hops) for route in config.routes):
        return _NOT_SHARED  # each pod picks its own maxNextHops (its draft is pending)
    return config, picked


def _draft_on(view: ClusterView, key: Pod, node: str | None) -> Draft | None:
    """The draft of pod `key` if it is on `node` with an address, else None."""
    w = view.workloads.get(key)
    return _draft(view, w) if w is not None and w.node == node and w.ip is not None else None


def _draft(view: ClusterView, workload: Workload) -> Draft:
    found = view.draft(workload)
    if isinstance(found, Draft) and found.workload is workload:
        return found
    return _new_draft(view, workload)


def _new_draft(view: ClusterView, workload: Workload) -> Draft:
    config = _config(view, workload)
    pending = []
    for i, route in enumerate(config.routes):
        if 0 < route.cap < len(route.hops):
            key = (workload.key, config.identity, str(route.destination))
            pending.append(Pick(i, route.cap, key, preference(workload.key, [h.text for h in route.hops])))
    draft = Draft(workload, config, tuple(pending))
    view.remember(workload, draft)
    return draft


def _config(view: ClusterView, workload: Workload) -> EgressConfig:
    if view.support is Support.DISABLED:
        return EgressConfig(Source.NONE, None, (), "egressIPSupport is Disabled")
    if GATEWAY_ANNOTATION in workload.annotations:
        # A gateway forwards others' traffic and sends its own directly, even in a namespace
        # whose annotations steer every other pod (REF-AWS annotates the gateways' namespace).
        return EgressConfig(Source.NONE, None, (), "an egress gateway is never a client of one")
    pod = None
    if view.support is Support.PER_NAMESPACE_OR_POD:
        pod = egress_annotations.read(workload.annotations)
    ns = _namespace_annotations(view, workload.namespace)
    if pod is None:  # the usual case, made cheap: the namespace's annotations alone decide
        if ns is None:
            return NO_EGRESS
        if ns.policy is None and ns.selection is not None:
            return _from_selection(view, workload, Source.NAMESPACE_SELECTOR, ns.selection, ns.problems)
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
    return EgressConfig(Source.NONE, None, (), NO_EGRESS.reason, problems) if problems else NO_EGRESS


def _namespace_annotations(view: ClusterView, name: str) -> egress_annotations.EgressAnnotations | None:
    """The egress annotations of namespace `name`, read once per view (not once per pod)."""
    found = view.namespace_notes.get(name, view)  # the view itself: not read yet
    if found is view:
        found = view.namespace_notes[name] = egress_annotations.read(view.namespace(name).annotations)
    return found  # type: ignore[return-value]


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
    destination = rule.destination_cidr
    if rule.gateway is None:
        return Route(destination, index, Action.DIRECT, (), description)
    try:
        selection = GatewaySelection(
            parse(rule.gateway.selector) if rule.gateway.selector else None,
            parse(rule.gateway.namespace_selector),
            rule.gateway.max_next_hops,
        )
    except SelectorParseError:
        return Route(destination, index, Action.DROP, (), description)
    prefer_local = rule.gateway_preference == "PreferNodeLocal"
    # The route (with every candidate, before maxNextHops picks) depends on the pod only
    # through its node (PreferNodeLocal) and on whether the pod is itself one of the
    # gateways: share it between pods.
    shared = not view.picks_pod(selection, workload.namespace, workload.key)
    memo_key = (policy, index, (workload.node or "") if prefer_local else "")
    if shared and isinstance(found := view.routes.get(memo_key), Route):
        return found
    hops = choose_hops(view, workload, selection, prefer_local)
    action = Action.GATEWAY if hops else Action.DROP
    draining = terminating_members(view, workload, selection)
    route = Route(destination, index, action, hops, description, selection.max_next_hops, draining)
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
    # Before maxNextHops picks, every pod of a namespace that is not itself one of the
    # gateways gets the same configuration: share it (the memo is keyed on everything it
    # depends on).
    scope = workload.namespace if selection.namespace_selector is None else "*"
    shared = not view.picks_pod(selection, workload.namespace, workload.key)
    memo_key = ("selection", level, selection.key, selection.max_next_hops, scope, problems)
    if shared and isinstance(found := view.routes.get(memo_key), EgressConfig):
        return found
    hops = choose_hops(view, workload, selection, prefer_local=False)
    action = Action.GATEWAY if hops else Action.DROP
    where = "pod" if level is Source.POD_SELECTOR else "namespace"
    parts = [f"selector={selection.selector}"] if selection.selector else []
    if selection.namespace_selector is not None:
        parts.append(f"namespaceSelector={selection.namespace_selector}")
    reason = f"{where} annotation " + ", ".join(parts)
    route = Route(DEFAULT_ROUTE, None, action, hops, cap=selection.max_next_hops,
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
    """The usable gateways for `workload` under `selection`, sorted by (namespace, pod):
    the candidates maxNextHops picks from (`node_configs`)."""
    usable = [
        w for w in view.matching(selection, workload.namespace)
        if w.key != workload.key and not w.terminating and w.ip not in view.failed
    ]
    if prefer_local:
        local = [w for w in usable if w.node is not None and w.node == workload.node]
        usable = local or usable
    return tuple(_hop(view, w) for w in usable if w.ip)


def _hop(view: ClusterView, gateway: Workload) -> Hop:
    found = view.routes.get(("hop", gateway.key))
    if isinstance(found, tuple) and found[0] is gateway:
        return found[1]  # type: ignore[no-any-return]
    assert gateway.ip is not None
    hop = Hop(gateway.namespace, gateway.gateway, gateway.name, gateway.ip, gateway.node)
    view.routes[("hop", gateway.key)] = (gateway, hop)
    return hop


def terminating_members(
    view: ClusterView, workload: Workload, selection: GatewaySelection
) -> tuple[IPv4Address, ...]:
    """The gateways `selection` matches that are terminating (draining), sorted."""
    return tuple(sorted(
        w.ip for w in view.matching(selection, workload.namespace)
        if w.terminating and w.ip is not None and w.key != workload.key
    ))


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
