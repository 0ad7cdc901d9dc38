"""Which old tables of a node's egress configurations linger, and for how long.

Pure. A table is never changed in a way that would move a live connection: when a
configuration's gateway set loses a draining gateway, or gains one (a replica added, or
back from a failure), new connections get a fresh table and the old one is set aside,
unchanged, for the connections whose conntrack mark names it. This module decides the
set-asides, when they retire and go, and which kernel tables a restarted agent adopts as
such. It must not classify pods or assign slots (calc.nodeplan does).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address
from typing import NamedTuple

from egressgw.plan import dataplane as dp

Key = tuple[object, ...]  # a configuration key (calc.nodeplan.ConfigKey)
Tables = Mapping[Key, dp.EgressTable]
Routes = Mapping[Key, tuple[dp.EgressRoute, ...]]

# Retired tables kept per configuration (see `bound`): connections survive this many
# successive changes of its gateway set (a 2 -> 3 -> 4 -> 5 scale-up, a rolling restart of
# three replicas) before the oldest table goes. With the tables of draining gateways, this
# bounds the slots a configuration holds.
RETIRED_PER_CONFIGURATION = 3


class Aside(NamedTuple):
    """The key of `config`'s table set aside from `slot`; `age` orders set-asides on a node
    (a table adopted after a restart has age 0)."""

    config: Key
    slot: int
    age: int


def shape(key: Key) -> Key:
    """A key without its maxNextHops picks: the configuration whatever the pod picked."""
    return tuple(e[:2] if isinstance(e, tuple) and e[2] is not None else e for e in key)


def drained(
    before: Tables, content: Routes, draining: set[IPv4Address], present: set[IPv4Address],
    previous: Mapping[Key, int],
) -> tuple[dict[Key, dp.EgressTable], dict[Key, int]]:
    """The set-aside tables that stay, with the tables a drain sets aside now; and the slots.

    A table whose content drops a draining gateway is not changed in place (that would move
    its live connections): it is set aside, unchanged, and its configuration starts afresh
    in a new slot. It stays while a draining gateway it routes through still exists. Then it
    retires but stays, unchanged: the connections it holds through its other gateways carry
    its mark, and without it they would lose their route (and break) when the drain ends. A
    retired table goes when its configuration is no longer used on the node, when none of
    its gateways exists any more, or when newer ones crowd it out (`bound`).
    """
    lingering: dict[Key, dp.EgressTable] = {}
    slots = dict(previous)
    age = next_age(before)
    # A configuration lives on whatever its pods pick: a pod that moved off a draining
    # gateway kept its other picks, whose connections the retired table still carries.
    shapes = {shape(k) for k in content}
    for key, table in before.items():
        if isinstance(key, Aside):
            retired = shape(key.config) in shapes and bool(table.gateways & present)
            if table.gateways & draining or retired:
                lingering[key] = table
            continue
        if not table.gateways & draining:
            continue
        new_gateways = frozenset(g for r in content.get(key, ()) for g in r.gateways)
        if key not in content or not (table.gateways & draining) <= new_gateways:
            _set_aside(key, table, age, lingering, slots)
    return lingering, slots


def grown(
    before: Tables, content: Routes, lingering: dict[Key, dp.EgressTable], previous: Mapping[Key, int]
) -> dict[Key, int]:
    """`previous`, with each table whose gateway set grows set aside (into `lingering`).

    A resilient group given a new member in place hands it only buckets idle for the idle
    timer: under load the new gateway would get almost no new connections for minutes, and
    an idle long-lived connection could move to it. Instead new connections get a fresh
    table with the whole set, evenly hashed, and the old one lingers unchanged, retired from
    the start: its connections keep their gateway. It is never given the new member, which
    would let the kernel move its idle buckets. A gateway that leaves, or is replaced by
    another (maxNextHops re-picks), still changes the table in place: the kernel hands its
    buckets to the others at once and moves no survivor; so does a gateway route that was
    unreachable (it carried nothing).
    """
    slots = dict(previous)
    held = {t.slot: (k, t) for k, t in before.items() if not isinstance(k, Aside)}
    age = next_age(before)
    for key, routes in content.items():
        old = held.get(slots.get(key, -1))
        if old is not None and grows(old[1].routes, routes):
            slots.pop(key)
            _set_aside(old[0], old[1], age, lingering, slots)
    return slots


def grows(old: Iterable[dp.EgressRoute], new: Iterable[dp.EgressRoute]) -> bool:
    """Whether a gateway route of `new` has more gateways than its route in `old`: only then
    would a change in place leave the old members more than their share of the buckets (a
    replaced member's buckets go to its replacement at once)."""
    had = {r.destination: len(r.gateways) for r in old if r.kind is dp.RouteKind.VIA}
    return any(len(r.gateways) > had.get(r.destination, len(r.gateways)) for r in new)


def revived(
    content: Routes, lingering: dict[Key, dp.EgressTable], draining: set[IPv4Address],
    previous: Mapping[Key, int],
) -> dict[Key, int]:
    """`previous`, with a configuration that needs a new table taking back a retired table of
    its own that holds exactly what it wants (scaled 2 -> 3 -> 2, a replica back after a
    drain): that table is live again, unchanged, so nothing moves and no slot is spent."""
    slots = dict(previous)
    for key in sorted((k for k in content if k not in slots), key=repr):
        want = dp.EgressTable(0, content[key]).routes
        for aside, table in sorted(lingering.items(), key=lambda e: e[1].slot):
            assert isinstance(aside, Aside)
            if shape(aside.config) == shape(key) and table.routes == want and not table.gateways & draining:
                del lingering[aside]
                slots[key] = slots.pop(aside, table.slot)
                break
    return slots


def bound(lingering: dict[Key, dp.EgressTable], draining: set[IPv4Address], wanted: int, capacity: int) -> None:
    """Drop retired tables from `lingering`, oldest first: beyond RETIRED_PER_CONFIGURATION
    of one configuration, and while the `wanted` configurations would not all get a slot.
    Tables of draining gateways always stay (no more than there are draining gateways)."""
    retired = sorted((k for k, t in lingering.items() if isinstance(k, Aside) and not t.gateways & draining),
                     key=lambda k: (k.age, k.slot), reverse=True)  # fmt: skip
    kept: dict[Key, int] = {}
    for key in retired:
        kept[shape(key.config)] = kept.get(shape(key.config), 0) + 1
        if kept[shape(key.config)] > RETIRED_PER_CONFIGURATION:
            del lingering[key]
    for key in reversed(retired):
        if wanted + len(lingering) <= capacity:
            break
        lingering.pop(key, None)


def next_age(before: Tables) -> int:
    """The age of tables set aside now: newer than every one set aside before."""
    return 1 + max((k.age for k in before if isinstance(k, Aside)), default=0)


def _set_aside(key: Key, table: dp.EgressTable, age: int,
               lingering: dict[Key, dp.EgressTable], slots: dict[Key, int]) -> None:  # fmt: skip
    moved = Aside(key, table.slot, age)
    lingering[moved] = table
    slots.pop(key, None)
    slots[moved] = table.slot


def adopted(held: Mapping[int, dp.EgressTable], slots: Mapping[Key, int]) -> dict[Key, dp.EgressTable]:
    """The kernel's tables (`held`, by slot) under the keys a plan gives them, after a restart.

    `slots`: the configurations adopted from the classification map. A table no pod is
    classified into lingers for some configuration: it is adopted, set aside with age 0, for
    the configuration whose table has the same destinations and actions and shares the most
    gateways with it. One that matches none would retire at once (its configuration is no
    longer used on the node), so it is left out and the driver removes it.
    """
    out = {key: held[slot] for key, slot in slots.items() if slot in held}
    classified = sorted(out.items(), key=lambda e: e[1].slot)
    for slot, table in sorted(held.items()):
        if slot in slots.values():
            continue
        fits = [(len(t.gateways & table.gateways), -t.slot, k) for k, t in classified
                if _layout(t) == _layout(table) and t.gateways & table.gateways]  # fmt: skip
        if fits:
            out[Aside(max(fits, key=lambda f: f[:2])[2], slot, 0)] = table
    return out


def _layout(table: dp.EgressTable) -> tuple[tuple[object, dp.RouteKind], ...]:
    return tuple((r.destination, r.kind) for r in table.routes)
