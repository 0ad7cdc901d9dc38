"""One node's maxNextHops assignment: which of its candidates each capped route uses.

Pure: no I/O, clock or randomness, and no egress decision of its own. It takes the drafts
the decision made (calc/decision.py: each pod's configuration with every candidate in its
capped routes) and picks for the node as a whole, as a capped pod's hops depend on the
other pods of its node. Usage counts every gateway route entry on the node (the routes
that need no pick, then the picks so far); each capped route first keeps its `previous`
picks that are still usable, then, pod by pod in (namespace, name) order, fills up to its
cap with the least-used other candidates, ties broken by the client's rendezvous order
(calc/hops.py). Picks are made lazily, and only in the groups of candidates the asked-for
pod's routes belong to (hops.Groups); a changed view's assignment is `derived` from an
earlier one with only the changed pods drafted again (ClusterView.earlier).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain

from egressgw.calc.cluster import Workload
from egressgw.calc.egressconfig import Action, EgressConfig, Route
from egressgw.calc.hops import Entry, Groups, HopPicker, PickKey, Picks, Pod


@dataclass(frozen=True, slots=True)
class Pick:
    """A capped route with more candidates than its cap: what picking needs, computed once."""

    index: int  # in the configuration's routes
    cap: int
    key: PickKey
    order: tuple[str, ...]  # the candidates' addresses, in the client's tie-break order


@dataclass(slots=True)
class Draft:
    """A workload's configuration before maxNextHops: capped routes hold every candidate."""

    workload: Workload
    config: EgressConfig
    pending: tuple[Pick, ...]
    _fixed: tuple[str, ...] | None = None

    def fixed(self) -> tuple[str, ...]:
        """The hops of its routes that need no pick (for the usage ledger)."""
        if self._fixed is None:
            picked = {p.index for p in self.pending}
            self._fixed = tuple(h.text for i, r in enumerate(self.config.routes)
                                if i not in picked and r.action is Action.GATEWAY for h in r.hops)
        return self._fixed


@dataclass(slots=True)
class NodeAssignment:
    """The maxNextHops picks of the pods (with an address) on one node, made lazily: pods
    pick in (namespace, name) order, and a question about one pod runs that order only as
    far as that pod, and only in the groups of its capped routes (hops.Groups: the other
    groups' picks cannot change its own). Configurations are built when asked for."""

    drafts: Mapping[Pod, Draft]
    fixed: Counter[str] | None  # the usage by the routes that need no pick (None: no pick yet)
    groups: Groups
    picker: HopPicker  # its ledger: the fixed routes, the kept picks and the picks so far
    kept: Mapping[Pod, Sequence[tuple[str, ...]]]  # per pending route
    done: dict[str, int] = field(default_factory=dict)  # per group, how many have picked
    picks: dict[Entry, tuple[str, ...]] = field(default_factory=dict)
    built: dict[Pod, EgressConfig] = field(default_factory=dict)
    memo: dict[tuple[int, frozenset[str]], Route] = field(default_factory=dict)  # see _apply

    def config(self, pod: Pod) -> EgressConfig | None:
        """The configuration of `pod`, or None if it is not one of the node's."""
        found = self.built.get(pod)
        if found is None and (draft := self.drafts.get(pod)) is not None:
            if not draft.pending:
                return draft.config
            found = self.built[pod] = _apply(draft, self._picks(draft), self.memo)
        return found

    def newcomer(self, draft: Draft) -> EgressConfig:
        """The configuration of a pod that is not (yet) one of the node's, as if it arrived now."""
        for group, queue in self.groups.queues.items():
            if queue:
                self._advance(group, queue[-1])
        picker = HopPicker(usage=defaultdict(int, self.picker.usage))
        return _apply(draft, [picker.fill((), p.order, p.cap) for p in draft.pending], {})

    def _picks(self, draft: Draft) -> tuple[tuple[str, ...], ...]:
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


def assign(drafts: dict[Pod, Draft], previous: Picks | None = None) -> NodeAssignment:
    """The assignment of a node whose pods (with an address) have `drafts`.

    With `previous` (the node's last picks, or those read back from the kernel), each
    capped route keeps those of its picks that are still candidates; without, every pod
    picks afresh in (namespace, name) order."""
    groups = Groups()
    for key, d in drafts.items():
        for j, p in enumerate(d.pending):
            groups.add((key, j), p.order)
    return _started(drafts, None, groups, previous)


def derived(base: NodeAssignment, redrafted: Mapping[Pod, Draft | None], previous: Picks | None = None) -> NodeAssignment:
    """`assign` for `base`'s node with the pods in `redrafted` drafted again (None: no longer
    one of the node's pods with an address), without going over its other pods."""
    drafts, groups = dict(base.drafts), base.groups.copy()
    fixed = None if base.fixed is None else Counter(base.fixed)
    for key, new in redrafted.items():
        old = drafts.pop(key, None)
        if old is not None:
            if fixed is not None:
                fixed.subtract(old.fixed())
            for j, p in enumerate(old.pending):
                groups.remove((key, j), p.order)
        if new is not None:
            drafts[key] = new
            if fixed is not None:
                fixed.update(new.fixed())
            for j, p in enumerate(new.pending):
                groups.add((key, j), p.order)
    return _started(drafts, fixed, groups, previous)


def _started(drafts: Mapping[Pod, Draft], fixed: Counter[str] | None, groups: Groups,
             previous: Picks | None) -> NodeAssignment:
    """The assignment before any pick, its ledger counting the routes that need none and
    the previous picks kept."""
    if not groups.queues:
        return NodeAssignment(drafts, fixed, groups, HopPicker(), {})
    if fixed is None:  # counted only once some route needs a pick
        fixed = Counter(chain.from_iterable(d.fixed() for d in drafts.values()))
    picker = HopPicker(previous or {}, defaultdict(int, fixed))
    kept = {d.workload.key: [picker.keep(p.key, p.order, p.cap) for p in d.pending]
            for d in drafts.values() if d.pending} if previous else {}
    return NodeAssignment(drafts, fixed, groups, picker, kept)


def _apply(draft: Draft, picks: Sequence[tuple[str, ...]], memo: dict[tuple[int, frozenset[str]], Route]) -> EgressConfig:
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
