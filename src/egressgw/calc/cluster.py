"""The cluster as the egress decision sees it: workloads, namespaces, policies, ranges.

Pure. Built once per state from resources; holds indexes (pods by namespace and by node)
and memos: which gateway pods each distinct selection matches, shared routes, each
namespace's annotations, each pod's configuration before maxNextHops picks, each node's
assignment (and, in a changed view, the earlier assignment a node's is derived from). The
memos cache pure functions of the view's own contents, so they never change an answer.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network

from egressgw.calc.annotations import GatewaySelection
from egressgw.calc.gateways import GATEWAY_ANNOTATION
from egressgw.model import EgressGatewayPolicy, Namespace, Pod

NAMESPACE_NAME_LABEL = "projectcalico.org/name"  # on every namespace, as Calico adds it
POD_NAMESPACE_LABEL = "projectcalico.org/namespace"  # on every pod, as Calico adds it
ORCHESTRATOR_LABEL = "projectcalico.org/orchestrator"


class Support(StrEnum):
    """FelixConfiguration `egressIPSupport`."""

    DISABLED = "Disabled"
    PER_NAMESPACE = "EnabledPerNamespace"
    PER_NAMESPACE_OR_POD = "EnabledPerNamespaceOrPerPod"


@dataclass(frozen=True, slots=True)
class Workload:
    """A pod: a client of egress gateways, and perhaps a gateway itself."""

    namespace: str
    name: str
    labels: Mapping[str, str]  # with the labels Calico adds (projectcalico.org/namespace)
    annotations: Mapping[str, str]
    node: str | None
    ip: IPv4Address | None
    terminating: bool = False  # deletion requested: in its maintenance window
    # (namespace, name): stored, as the decision reads it for every pod of a node
    key: tuple[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (self.namespace, self.name))

    @property
    def gateway(self) -> str:
        """The EgressGateway this pod belongs to (its own name if none)."""
        return self.annotations.get(GATEWAY_ANNOTATION) or self.labels.get("k8s-app", self.name)


@dataclass(frozen=True, slots=True)
class NamespaceInfo:
    """A namespace's labels (with projectcalico.org/name) and annotations."""

    name: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]


def _key(w: Workload) -> tuple[str, str]:
    return w.key


class Overlay(Mapping[tuple[str, str], "Workload"]):
    """`base` with some pods added or replaced: a changed view's pods, not a copy of them.

    A copy of 10,000s of entries takes ~30 us, and ~0.5 ms more each time the collector's
    youngest generation scans it; an overlay holds two references. It folds into a plain
    dict once its changes grow to an eighth of `base`, so lookups stay two steps deep."""

    __slots__ = ("base", "changes")

    def __init__(self, base: Mapping[tuple[str, str], Workload], changes: dict[tuple[str, str], Workload]) -> None:
        self.base, self.changes = base, changes

    @classmethod
    def changed(cls, pods: Mapping[tuple[str, str], Workload], pod: Workload) -> Mapping[tuple[str, str], Workload]:
        """`pods` with `pod` added or replaced."""
        if isinstance(pods, Overlay):
            changes = {**pods.changes, pod.key: pod}
            if len(changes) * 8 <= len(pods.base):
                return cls(pods.base, changes)
            return {**pods.base, **changes}
        return cls(pods, {pod.key: pod})

    def __getitem__(self, key: tuple[str, str]) -> Workload:
        found = self.changes.get(key)
        return self.base[key] if found is None else found

    def __iter__(self) -> Iterator[tuple[str, str]]:
        yield from self.base
        yield from (k for k in self.changes if k not in self.base)

    def __len__(self) -> int:
        return len(self.base) + sum(1 for k in self.changes if k not in self.base)


# A memoised selection: the selection, the pods it matches (sorted), and their keys.
Match = tuple[GatewaySelection, tuple[Workload, ...], frozenset[tuple[str, str]]]


def workload_from(pod: Pod) -> Workload:
    """The Workload for a Pod resource."""
    ns = pod.metadata.namespace or "default"
    labels = {**pod.metadata.labels, POD_NAMESPACE_LABEL: ns, ORCHESTRATOR_LABEL: "k8s"}
    return Workload(
        namespace=ns,
        name=pod.metadata.name,
        labels=labels,
        annotations=dict(pod.metadata.annotations),
        node=pod.spec.node_name if pod.spec is not None else None,
        ip=pod.ip,
        terminating=pod.metadata.deletion_timestamp is not None,
    )


def namespace_from(ns: Namespace) -> NamespaceInfo:
    """The NamespaceInfo for a Namespace resource."""
    labels = {**ns.metadata.labels, NAMESPACE_NAME_LABEL: ns.metadata.name}
    return NamespaceInfo(ns.metadata.name, labels, dict(ns.metadata.annotations))


@dataclass(slots=True)
class ClusterView:
    """Everything the decision reads. Immutable by convention: change it with `with_workload`.

    The memos make repeated questions cheap; they cache pure functions of the view's
    contents and are carried over to a changed view only where the change cannot touch them.
    """

    support: Support
    namespaces: Mapping[str, NamespaceInfo]
    workloads: Mapping[tuple[str, str], Workload]
    policies: Mapping[str, EgressGatewayPolicy]
    internal: tuple[IPv4Network, ...]  # pod pools, node addresses, service ranges
    failed: frozenset[IPv4Address] = frozenset()  # gateways failed by health probing
    by_namespace: dict[str, tuple[Workload, ...]] = field(default_factory=dict)
    # (selection key, scope) -> (selection, the pods it matches, their keys)
    matches: dict[tuple[tuple[str, str], str], Match] = field(default_factory=dict)
    # results the decision computed from `matches` alone (policy routes, selection configs)
    routes: dict[tuple[object, ...], object] = field(default_factory=dict)
    # each pod's configuration before maxNextHops picks: node -> pod -> decision's draft;
    # a changed view shares its parent's per-node dicts and copies one before writing to it
    drafts: dict[str | None, dict[tuple[str, str], object]] = field(default_factory=dict)
    _own: set[str | None] = field(default_factory=set)  # the per-node draft dicts it may write
    # each node's history-less maxNextHops assignment (node -> assignment.NodeAssignment)
    assignments: dict[str | None, object] = field(default_factory=dict)
    # node -> (an assignment of an earlier view, the pods changed since): the decision
    # derives the node's assignment from it rather than going over all the node's pods
    earlier: dict[str | None, tuple[object, frozenset[tuple[str, str]]]] = field(default_factory=dict)
    by_node: dict[str | None, tuple[Workload, ...]] | None = None  # built on first use
    # namespace -> its egress annotations as the decision reads them; shared with changed
    # views, as `with_workload` changes no namespace
    namespace_notes: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.by_namespace:
            return
        groups: dict[str, list[Workload]] = {}
        for w in sorted(self.workloads.values(), key=lambda w: w.key):
            groups.setdefault(w.namespace, []).append(w)
        self.by_namespace = {ns: tuple(ws) for ns, ws in groups.items()}

    def on_node(self, node: str | None) -> tuple[Workload, ...]:
        """The pods on `node` (None: not scheduled), sorted by (namespace, name)."""
        if self.by_node is None:
            groups: dict[str | None, list[Workload]] = {}
            for w in sorted(self.workloads.values(), key=lambda w: w.key):
                groups.setdefault(w.node, []).append(w)
            self.by_node = {node: tuple(ws) for node, ws in groups.items()}
        return self.by_node.get(node, ())

    def draft(self, workload: Workload) -> object | None:
        """The memoised draft of `workload`, if any."""
        return self.drafts.get(workload.node, {}).get(workload.key)

    def remember(self, workload: Workload, draft: object) -> None:
        """Memoise the draft of `workload` (see `draft`)."""
        if workload.node not in self._own:
            self.drafts[workload.node] = dict(self.drafts.get(workload.node, {}))
            self._own.add(workload.node)
        self.drafts[workload.node][workload.key] = draft

    def namespace(self, name: str) -> NamespaceInfo:
        """The namespace (an unknown one has only its name label)."""
        found = self.namespaces.get(name)
        return found or NamespaceInfo(name, {NAMESPACE_NAME_LABEL: name}, {})

    def is_internal(self, address: IPv4Address) -> bool:
        """Is `address` inside the cluster (pods, services, nodes)?"""
        return any(address in net for net in self.internal)

    def matching(self, selection: GatewaySelection, own_namespace: str) -> tuple[Workload, ...]:
        """The pods (with an IPv4 address) that `selection` picks, sorted by (ns, name)."""
        return self._matched(selection, own_namespace)[1]

    def picks_pod(self, selection: GatewaySelection, own_namespace: str, pod: tuple[str, str]) -> bool:
        """Is `pod` one of the pods `selection` picks (see `matching`)?"""
        return pod in self._matched(selection, own_namespace)[2]

    def _matched(self, selection: GatewaySelection, own_namespace: str) -> Match:
        scope = "" if selection.namespace_selector is not None else own_namespace
        memo_key = (selection.key, scope)
        found = self.matches.get(memo_key)
        if found is None:
            members = tuple(self._match(selection, own_namespace))
            found = self.matches[memo_key] = (selection, members, frozenset(w.key for w in members))
        return found

    def _match(self, selection: GatewaySelection, own_namespace: str) -> Iterable[Workload]:
        ns_sel = selection.namespace_selector
        if ns_sel is None:
            names: Sequence[str] = [own_namespace]
        else:
            names = sorted(
                n for n in self.by_namespace if ns_sel.matches(self.namespace(n).labels)
            )
        sel = selection.selector
        for name in names:
            for w in self.by_namespace.get(name, ()):
                if w.ip is not None and (sel is None or sel.matches(w.labels)):
                    yield w

    def _selector_of(self, workload: Workload) -> Callable[[GatewaySelection, str], bool]:
        """Whether a selection (in a scope, see `matches`) picks `workload`: the namespace
        part is decided once per namespace selector, as most selections share one."""
        if workload.ip is None:
            return lambda selection, scope: False
        labels, pod_labels = self.namespace(workload.namespace).labels, workload.labels
        in_namespace: dict[int, bool] = {}  # id of a namespace selector -> does it match

        def selects(selection: GatewaySelection, scope: str) -> bool:
            ns_sel = selection.namespace_selector
            if ns_sel is None:
                in_scope = workload.namespace == scope
            elif id(ns_sel) in in_namespace:
                in_scope = in_namespace[id(ns_sel)]
            else:
                in_scope = in_namespace[id(ns_sel)] = ns_sel.matches(labels)
            return in_scope and (selection.selector is None or selection.selector.matches(pod_labels))

        return selects

    def with_workload(self, workload: Workload) -> ClusterView:
        """This view with one pod added or replaced; memos kept where it cannot matter."""
        old = self.workloads.get(workload.key)
        workloads = Overlay.changed(self.workloads, workload)
        members = [w for w in self.by_namespace.get(workload.namespace, ()) if w.key != workload.key]
        members.append(workload)
        by_namespace = {**self.by_namespace, workload.namespace: tuple(sorted(members, key=_key))}
        selects = self._selector_of(workload)
        matches = {
            key: found for key, found in self.matches.items()
            if not (old is not None and old.key in found[2]) and not selects(found[0], key[1])
        }
        kept = len(matches) == len(self.matches)  # else every memo may be stale
        touched = {workload.node, old.node if old is not None else workload.node}
        drafts = dict(self.drafts) if kept else {}
        for node in touched & drafts.keys():  # copied: the parent's stay as they are
            drafts[node] = dict(drafts[node])
            drafts[node].pop(workload.key, None)
        assignments = dict(self.assignments) if kept else {}
        earlier = dict(self.earlier) if kept else {}
        for node in touched if kept else ():
            found = assignments.pop(node, None)
            if found is not None:
                earlier[node] = (found, frozenset((workload.key,)))
            elif node in earlier:
                earlier[node] = (earlier[node][0], earlier[node][1] | {workload.key})
        return ClusterView(self.support, self.namespaces, workloads, self.policies, self.internal,
                           self.failed, by_namespace, matches, dict(self.routes) if kept else {},
                           drafts, touched & drafts.keys(), assignments, earlier,
                           self._nodes_with(old, workload), self.namespace_notes)

    def _nodes_with(
        self, old: Workload | None, workload: Workload
    ) -> dict[str | None, tuple[Workload, ...]] | None:
        if self.by_node is None:
            return None
        by_node = dict(self.by_node)
        if old is not None:  # sorted by key, so found by bisection
            members = list(by_node.get(old.node, ()))
            at = bisect.bisect_left(members, old.key, key=_key)
            if at < len(members) and members[at].key == old.key:
                del members[at]
            by_node[old.node] = tuple(members)
        members = list(by_node.get(workload.node, ()))
        bisect.insort(members, workload, key=_key)
        by_node[workload.node] = tuple(members)
        return by_node
