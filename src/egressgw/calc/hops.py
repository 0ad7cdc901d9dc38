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

import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

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
