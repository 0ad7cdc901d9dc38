"""Which of its usable gateways a capped client uses (`maxNextHops`): least used, sticky.

Pure: no I/O, clock or randomness. One HopPicker serves one node for one computation. Its
ledger counts the route entries on the node that use each gateway (reference §6.1.5); a
client that needs n of its usable gateways keeps the previous picks that are still usable
(reference §6.1.6: no re-pick while they all are and there are as many as wanted), and
fills up with the least-used others. Ties go by a rendezvous score of (client, gateway):
stable on every run and on every node, and different from client to client, so tied
clients spread instead of all taking the same gateway.
"""

from __future__ import annotations

import bisect
import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain

Pod = tuple[str, str]
# A capped route of one pod: (pod, its configuration's identity, the route's destination).
PickKey = tuple[Pod, str, str]
# Gateways are named by their address as text, as configuration keys hold them: the
# ledger is hashed and sorted in loops over a node's pods, and text is cheap to hash.
Picks = Mapping[PickKey, frozenset[str]]


def score(client: Pod, gateway: str) -> bytes:
    """The tie-break between equally used gateways: a stable pseudo-random order per client."""
    return hashlib.blake2b(f"{client[0]}/{client[1]}|{gateway}".encode(), digest_size=8).digest()


def preference(client: Pod, gateways: Sequence[str]) -> tuple[str, ...]:
    """`gateways` in `client`'s tie-break order."""
    return tuple(sorted(gateways, key=lambda ip: score(client, ip)))


@dataclass(slots=True)
class HopPicker:
    """One node's usage ledger, and the picks carried over from its previous computation."""

    previous: Picks = field(default_factory=dict)
    usage: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))

    def keep(self, key: PickKey, order: Sequence[str], n: int) -> tuple[str, ...]:
        """The previous picks of `key` still among the candidates `order` (at most `n`, by
        the client's order), now counted. A pick that left the candidates (gone, failed,
        terminating, or not local under PreferNodeLocal) is dropped; the others stay, so
        their flows do not move."""
        before = self.previous.get(key)
        if not before:
            return ()
        kept = tuple(ip for ip in order if ip in before)[:n]
        for ip in kept:
            self.usage[ip] += 1
        return kept

    def fill(self, kept: tuple[str, ...], order: Sequence[str], n: int) -> tuple[str, ...]:
        """`kept` topped up to `n` with the least-used other candidates, now counted; ties
        go by `order` (the client's tie-break order, `preference`)."""
        need = n - len(kept)
        if need <= 0:
            return kept
        usage = self.usage
        if need == 1 and not kept:  # the usual case, made cheap: min() keeps the first of equals
            best = min(order, key=usage.__getitem__)
            usage[best] += 1
            return (best,)
        others = [ip for ip in order if ip not in kept]
        others.sort(key=usage.__getitem__)  # stable: equals keep the client's order
        added = tuple(others[:need])
        for ip in added:
            usage[ip] += 1
        return kept + added


# A capped route of one node: its pod, and its index among the pod's capped routes.
Entry = tuple[Pod, int]


@dataclass(slots=True)
class Groups:
    """A node's capped routes, grouped so that no two groups share a candidate gateway.

    A pick reads and counts only its own candidates, so it depends only on the picks made
    before it in its own group: one pod's picks need its groups' earlier picks, not the
    node's. A route that joins groups merges them; groups never split (when a route goes,
    the grouping is coarser than it could be, which is still right). `copy` is cheap: the
    copies share their queues until one of them changes one."""

    of: dict[str, str] = field(default_factory=dict)  # gateway -> its group (a member's name)
    members: dict[str, tuple[str, ...]] = field(default_factory=dict)  # group -> its gateways
    queues: dict[str, list[Entry]] = field(default_factory=dict)  # group -> routes, in picking order
    _own: set[str] = field(default_factory=set)  # the queues only this instance holds

    def copy(self) -> Groups:
        """An independent grouping, equal to this one."""
        self._own = set()  # shared from now on: either side copies a queue before changing it
        return Groups(dict(self.of), dict(self.members), dict(self.queues))

    def group(self, candidates: Sequence[str]) -> str:
        """The group of a route that was added with `candidates`."""
        return self.of[candidates[0]]

    def add(self, entry: Entry, candidates: Sequence[str]) -> None:
        """Put a capped route into the group of its candidates (merging groups if need be)."""
        of = self.of
        first = of.get(candidates[0])
        if first is not None and all(of.get(ip) == first for ip in candidates):
            queue = self._queue(first)
            if not queue or queue[-1] < entry:
                queue.append(entry)  # in order, as a node's pods are added from scratch
            else:
                bisect.insort(queue, entry)
            return
        joined = {found for ip in candidates if (found := of.get(ip)) is not None}
        name = min(joined) if joined else candidates[0]
        gateways = set(candidates).union(*(self.members.pop(g) for g in joined))
        queue = sorted([entry, *chain.from_iterable(self.queues.pop(g) for g in joined)])
        for ip in gateways:
            of[ip] = name
        self.members[name], self.queues[name] = tuple(sorted(gateways)), queue
        self._own.add(name)

    def remove(self, entry: Entry, candidates: Sequence[str]) -> None:
        """Take a capped route out of its group (which stays as it is otherwise)."""
        queue = self._queue(self.group(candidates))
        del queue[bisect.bisect_left(queue, entry)]

    def _queue(self, group: str) -> list[Entry]:
        if group not in self._own:
            self.queues[group] = list(self.queues[group])
            self._own.add(group)
        return self.queues[group]
