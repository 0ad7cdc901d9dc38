"""The egress decision: for a workload and a destination, `gateway`, `direct` or `drop`.

Pure. Reference semantics (calico-egress-gateway.md §3-§4):
- precedence: pod policy > namespace policy > pod selector > namespace selector, never
  merged; `EnabledPerNamespace` ignores pod annotations, `Disabled` ignores everything;
- a policy's rules match by longest prefix; a rule with no gateway is `direct`; a
  destination no rule covers is `direct`; a gateway set with no usable member is `drop`;
  a policy annotation that names a missing policy drops all egress;
- without a namespaceSelector only gateways in the workload's own namespace qualify;
- `gatewayPreference: PreferNodeLocal` keeps only gateways on the client's node if any;
  `maxNextHops` keeps at most N, the least used on the client's node (calc/hops.py): a
  capped pod's hops depend on the other pods of its node, so `node_configs` decides a
  whole node at once (pods by (namespace, name), previous picks kept first), and
  `egress_config` answers from the node's history-less assignment;
- destinations inside the cluster (pods, services, nodes) never go through a gateway.
"""

from __future__ import annotations

import functools
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network
from itertools import chain

from egressgw.calc import annotations as egress_annotations
from egressgw.calc.annotations import GatewaySelection
from egressgw.calc.cluster import ClusterView, Support, Workload
from egressgw.calc.gateways import GATEWAY_ANNOTATION
from egressgw.calc.hops import Entry, Groups, HopPicker, PickKey, Picks, preference
from egressgw.model import EgressGatewayPolicy, EgressGatewayRule
from egressgw.model.policy import destination_network
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
    text: str = field(init=False, repr=False, compare=False)  # `ip` as text, for the ledger

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", str(self.ip))


@dataclass(frozen=True, slots=True)
class Route:
    """One destination range of a workload's egress configuration."""

    destination: IPv4Network
    rule: int | None  # index into the policy's rules; None for selector annotations
    action: Action
    hops: tuple[Hop, ...] = ()
    description: str = ""
    cap: int = 0  # maxNextHops (0: none): the hops are this pod's own subset
    draining: tuple[IPv4Address, ...] = ()  # matched gateways left out because terminating

    @property
    def capped(self) -> bool:
        """Does maxNextHops apply (the hops are this pod's own pick)?"""
        return self.cap > 0


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


@dataclass(slots=True)
class NodeAssignment:
    """The maxNextHops picks of the pods (with an address) on one node, made lazily: pods
    pick in (namespace, name) order, and a question about one pod runs that order only as
    far as that pod, and only in the groups of its capped routes (hops.Groups: the other
    groups' picks cannot change its own). Configurations are built when asked for."""

    drafts: Mapping[tuple[str, str], _Draft]
    fixed: Counter[str] | None  # the usage by the routes that need no pick (None: no pick yet)
    groups: Groups
    picker: HopPicker  # its ledger: the fixed routes, the kept picks and the picks so far
    kept: Mapping[tuple[str, str], Sequence[tuple[str, ...]]]  # per pending route
    done: dict[str, int] = field(default_factory=dict)  # per group, how many have picked
    picks: dict[Entry, tuple[str, ...]] = field(default_factory=dict)
    built: dict[tuple[str, str], EgressConfig] = field(default_factory=dict)
    memo: dict[tuple[int, frozenset[str]], Route] = field(default_factory=dict)  # see _apply

    def config(self, pod: tuple[str, str]) -> EgressConfig | None:
        """The configuration of `pod`, or None if it is not one of the node's."""
        found = self.built.get(pod)
        if found is None and (draft := self.drafts.get(pod)) is not None:
            if not draft.pending:
                return draft.config
            found = self.built[pod] = _apply(draft, self._picks(draft), self.memo)
        return found

    def newcomer(self, draft: _Draft) -> EgressConfig:
        """The configuration of a pod that is not (yet) one of the node's, as if it arrived now."""
        for group, queue in self.groups.queues.items():
            if queue:
                self._advance(group, queue[-1])
        picker = HopPicker(usage=defaultdict(int, self.picker.usage))
        return _apply(draft, [picker.fill((), p.order, p.cap) for p in draft.pending], {})

    def _picks(self, draft: _Draft) -> tuple[tuple[str, ...], ...]:
        pod, picks = draft.workload.key, self.picks
        for j, p in enumerate(draft.pending):
            if (pod, j) not in picks:
                self._advance(self.groups.group(p.order), (pod, j))
        return tuple(picks[(pod, j)] for j in range(len(draft.pending)))

    def _advance(self, group: str, until: Entry) -> None:
        """The routes of `group` pick, in order, up to and including `until`."""
        queue, at = self.groups.queues[group], self.done.get(group, 0)
        drafts, kept, picks, fill = self.drafts, self.kept, self.picks, self.picker.fill
        while at < len(queue):
            entry = queue[at]
            at += 1
            p = drafts[entry[0]].pending[entry[1]]
            held = kept.get(entry[0])
            picks[entry] = fill(held[entry[1]] if held else (), p.order, p.cap)
            if entry == until:
                break
        self.done[group] = at


def node_configs(view: ClusterView, node: str | None, previous: Picks | None = None) -> NodeAssignment:
    """The configurations of the pods (with an address) on `node`, capped routes picked together.

    Usage counts every gateway route entry on the node. Each capped route first keeps its
    `previous` picks (from the node's last computation, or read back from the kernel) that
    are still usable; then, pod by pod in (namespace, name) order, it fills up to its cap
    with the least-used other candidates. No history: every pod picks in that order."""
    drafts, fixed, groups = _derived(view, node) or _node_drafts(view, node)
    if not groups.queues:
        return NodeAssignment(drafts, fixed, groups, HopPicker(), {})
    if fixed is None:
        fixed = Counter(chain.from_iterable(d.fixed() for d in drafts.values()))
    picker = HopPicker(previous or {}, defaultdict(int, fixed))
    kept = {d.workload.key: [picker.keep(p.key, p.order, p.cap) for p in d.pending]
            for d in drafts.values() if d.pending} if previous else {}
    return NodeAssignment(drafts, fixed, groups, picker, kept)


Base = tuple[dict[tuple[str, str], "_Draft"], "Counter[str] | None", Groups]


def _node_drafts(view: ClusterView, node: str | None) -> Base:
    """The drafts of the pods (with an address) on `node`, their fixed usage (None if no
    capped route needs it) and their capped routes grouped (in (namespace, name) order)."""
    memo, drafts, groups = view.drafts.get(node, {}), {}, Groups()
    for w in view.on_node(node):
        d = memo.get(w.key)  # `_draft`, inlined: this loop runs over every pod of the node
        if not (isinstance(d, _Draft) and d.workload is w):
            d = _new_draft(view, w)
        if w.ip is not None:
            drafts[w.key] = d
            for j, p in enumerate(d.pending):
                groups.add((w.key, j), p.order)
    if not groups.queues:
        return drafts, None, groups
    return drafts, Counter(chain.from_iterable(d.fixed() for d in drafts.values())), groups


def _derived(view: ClusterView, node: str | None) -> Base | None:
    """`_node_drafts` from an earlier view's assignment of `node` and the pods changed since
    (`ClusterView.earlier`): only the changed pods are decided again."""
    base, changed = view.earlier.get(node, (None, frozenset()))
    if not isinstance(base, NodeAssignment):
        return None
    drafts, groups = dict(base.drafts), base.groups.copy()
    fixed = None if base.fixed is None else Counter(base.fixed)
    for key in changed:
        old = drafts.pop(key, None)
        if old is not None:
            if fixed is not None:
                fixed.subtract(old.fixed())
            for j, p in enumerate(old.pending):
                groups.remove((key, j), p.order)
        w = view.workloads.get(key)
        if w is not None and w.node == node and w.ip is not None:
            d = drafts[key] = _draft(view, w)
            if fixed is not None:
                fixed.update(d.fixed())
            for j, p in enumerate(d.pending):
                groups.add((key, j), p.order)
    return drafts, fixed, groups


@dataclass(frozen=True, slots=True)
class _Pick:
    """A capped route with more candidates than its cap: what picking needs, computed once."""

    index: int  # in the configuration's routes
    cap: int
    key: PickKey
    order: tuple[str, ...]  # the candidates' addresses, in the client's tie-break order


@dataclass(slots=True)
class _Draft:
    """A workload's configuration before maxNextHops: capped routes hold every candidate."""

    workload: Workload
    config: EgressConfig
    pending: tuple[_Pick, ...]
    _fixed: tuple[str, ...] | None = None

    def fixed(self) -> tuple[str, ...]:
        """The hops of its routes that need no pick (for the usage ledger)."""
        if self._fixed is None:
            picked = {p.index for p in self.pending}
            self._fixed = tuple(h.text for i, r in enumerate(self.config.routes)
                                if i not in picked and r.action is Action.GATEWAY for h in r.hops)
        return self._fixed


def _draft(view: ClusterView, workload: Workload) -> _Draft:
    found = view.draft(workload)
    if isinstance(found, _Draft) and found.workload is workload:
        return found
    return _new_draft(view, workload)


def _new_draft(view: ClusterView, workload: Workload) -> _Draft:
    config = _config(view, workload)
    pending = []
    for i, route in enumerate(config.routes):
        if 0 < route.cap < len(route.hops):
            key = (workload.key, config.identity, str(route.destination))
            pending.append(_Pick(i, route.cap, key, preference(workload.key, [h.text for h in route.hops])))
    draft = _Draft(workload, config, tuple(pending))
    view.remember(workload, draft)
    return draft


def _apply(draft: _Draft, picks: Sequence[tuple[str, ...]], memo: dict[tuple[int, frozenset[str]], Route]) -> EgressConfig:
    """`draft` with its picks; `memo` shares the picked routes (id of the route with every
    candidate, picks) between the pods of a node, as the unpicked ones are shared."""
    routes = list(draft.config.routes)
    for pick, chosen in zip(draft.pending, picks, strict=True):
        r = routes[pick.index]
        key = (id(r), frozenset(chosen))
        found = memo.get(key)
        if found is None:
            hops = tuple(h for h in r.hops if h.text in chosen)
            found = memo[key] = Route(r.destination, r.rule, r.action, hops, r.description, r.cap, r.draining)
        routes[pick.index] = found
    c = draft.config
    return EgressConfig(c.source, c.policy, tuple(routes), c.reason, c.problems, c.identity)


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
    destination = rule.destination_cidr if rule.destination is None or rule.destination.cidr is None else (
        _destination(rule.destination.cidr))
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


@functools.lru_cache(maxsize=8192)
def _destination(cidr: str) -> IPv4Network:
    """`EgressGatewayRule.destination_cidr` for a written destination: parsed once per text,
    as a new policy's routes are decided per pod until they are shared (~9 us a parse)."""
    return destination_network(cidr)


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
