"""The cluster as the egress decision sees it: workloads, namespaces, policies, ranges.

Pure. Built once per state from resources; holds indexes (pods by namespace and by node)
and memos: which gateway pods each distinct selection matches, shared routes, each pod's
configuration before maxNextHops picks, each node's assignment. The memos cache pure
functions of the view's own contents, so they never change an answer.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
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

    @property
    def key(self) -> tuple[str, str]:
        """(namespace, name)."""
        return self.namespace, self.name

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
    # (selection key, scope) -> (selection, the pods it matches)
    matches: dict[tuple[tuple[str, str], str], tuple[GatewaySelection, tuple[Workload, ...]]] = field(
        default_factory=dict
    )
    # results the decision computed from `matches` alone (policy routes, selection configs)
    routes: dict[tuple[object, ...], object] = field(default_factory=dict)
    # each pod's configuration before maxNextHops picks: node -> pod -> decision's draft;
    # a changed view shares its parent's per-node dicts and copies one before writing to it
    drafts: dict[str | None, dict[tuple[str, str], object]] = field(default_factory=dict)
    _own: set[str | None] = field(default_factory=set)  # the per-node draft dicts it may write
    # each node's history-less maxNextHops assignment (node -> decision.NodeAssignment)
    assignments: dict[str | None, object] = field(default_factory=dict)
    by_node: dict[str | None, tuple[Workload, ...]] | None = None  # built on first use

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
        scope = "" if selection.namespace_selector is not None else own_namespace
        memo_key = (selection.key, scope)
        found = self.matches.get(memo_key)
        if found is None:
            found = (selection, tuple(self._match(selection, own_namespace)))
            self.matches[memo_key] = found
        return found[1]

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

    def _selects(self, selection: GatewaySelection, scope: str, w: Workload) -> bool:
        if w.ip is None:
            return False
        ns_sel = selection.namespace_selector
        in_scope = w.namespace == scope if ns_sel is None else ns_sel.matches(
            self.namespace(w.namespace).labels
        )
        return in_scope and (selection.selector is None or selection.selector.matches(w.labels))

    def with_workload(self, workload: Workload) -> ClusterView:
        """This view with one pod added or replaced; memos kept where it cannot matter."""
        old = self.workloads.get(workload.key)
        workloads = {**self.workloads, workload.key: workload}
        members = [w for w in self.by_namespace.get(workload.namespace, ()) if w.key != workload.key]
        members.append(workload)
        by_namespace = {**self.by_namespace, workload.namespace: tuple(sorted(members, key=lambda w: w.key))}
        matches = {
            key: (sel, found)
            for key, (sel, found) in self.matches.items()
            if not (old is not None and old in found) and not self._selects(sel, key[1], workload)
        }
        kept = len(matches) == len(self.matches)  # else every memo may be stale
        touched = {workload.node, old.node if old is not None else workload.node}
        drafts = dict(self.drafts) if kept else {}
        for node in touched & drafts.keys():  # copied: the parent's stay as they are
            drafts[node] = dict(drafts[node])
            drafts[node].pop(workload.key, None)
        assignments = dict(self.assignments) if kept else {}
        for node in touched:
            assignments.pop(node, None)
        return ClusterView(self.support, self.namespaces, workloads, self.policies, self.internal,
                           self.failed, by_namespace, matches, dict(self.routes) if kept else {},
                           drafts, touched & drafts.keys(), assignments, self._nodes_with(old, workload))

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
