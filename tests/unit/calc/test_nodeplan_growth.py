"""A node's tables when a configuration's gateway set grows: new connections get a fresh
table over the whole set, the old one lingers unchanged for the live ones (calc/linger.py).

The observed result is the node plan: which tables (slot -> gateways) it holds and which
slot the client pods are classified into.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network

from egressgw.calc import annotations as ann
from egressgw.calc import linger, nodeplan
from egressgw.calc.cluster import ClusterView, Support, Workload
from egressgw.calc.gateways import GATEWAY_ANNOTATION
from egressgw.plan import dataplane as dp
from egressgw.plan import routing as rt

NODE = nodeplan.NodeInfo("node-a", IPv4Address("10.0.0.1"))
NODES = [NODE, nodeplan.NodeInfo("node-b", IPv4Address("10.0.0.2"))]
ROUTING = dp.RoutingSettings()


def gw(i: int, terminating: bool = False) -> Workload:
    return Workload("egw", f"gw-{i}", {"app": "gw"}, {GATEWAY_ANNOTATION: "gw"}, "node-b",
                    IPv4Address(f"10.10.0.{i}"), terminating)  # fmt: skip


def client(i: int, cap: int | None = None, selector: str = "app == 'gw'") -> Workload:
    notes = {ann.SELECTOR: selector, ann.NAMESPACE_SELECTOR: "all()"}
    if cap is not None:
        notes[ann.MAX_NEXT_HOPS] = str(cap)
    return Workload("default", f"c{i:02}", {}, notes, "node-a", IPv4Address(f"10.244.0.{i + 10}"))


CLIENTS = [client(0), client(1)]


def view(pods: Iterable[Workload], failed: Iterable[int] = ()) -> ClusterView:
    return ClusterView(Support.PER_NAMESPACE_OR_POD, {}, {w.key: w for w in pods}, {}, (),
                       frozenset(IPv4Address(f"10.10.0.{i}") for i in failed))  # fmt: skip


def plan(v: ClusterView, before: nodeplan.NodeResult | None = None,
         routing: dp.RoutingSettings = ROUTING) -> nodeplan.NodeResult:  # fmt: skip
    slots = dict(before.slots) if before else {}
    return nodeplan.node_plan(v, NODE, NODES, routing, slots, None, before)


def tables(result: nodeplan.NodeResult) -> dict[int, set[int]]:
    """slot -> the gateways' numbers, of every table in the plan."""
    return {t.slot: {int(str(ip).rsplit(".", 1)[1]) for ip in t.gateways} for t in result.plan.tables}


def classified(result: nodeplan.NodeResult) -> set[int]:
    """The slots the client pods' new connections use."""
    return {c.slot for c in result.plan.classifications}


def steps(*sets: Iterable[int], clients: Iterable[Workload] = CLIENTS) -> list[nodeplan.NodeResult]:
    """Plan after each gateway set in turn (a set of numbers; a negative one is terminating)."""
    out: list[nodeplan.NodeResult] = []
    for gateways in sets:
        pods = [gw(abs(i), terminating=i < 0) for i in gateways]
        out.append(plan(view([*pods, *clients]), out[-1] if out else None))
    return out


def test_a_new_replica_gets_a_fresh_table_and_the_old_one_lingers_unchanged() -> None:
    two, three = steps({1, 2}, {1, 2, 3})
    (old,) = classified(two)
    (new,) = classified(three)
    assert new != old
    assert tables(three) == {old: {1, 2}, new: {1, 2, 3}}
    old_table = next(t for t in three.plan.tables if t.slot == old)
    assert old_table == next(t for t in two.plan.tables if t.slot == old)  # unchanged
    assert three.maintenance == {}  # growth is no maintenance


def test_a_returning_replica_leaves_the_survivors_table_to_its_flows() -> None:
    gateways = [gw(1), gw(2), *CLIENTS]
    two = plan(view(gateways))
    one = plan(view(gateways, failed=[1]), two)
    back = plan(view(gateways), one)
    (slot,) = classified(two)
    assert tables(one) == {slot: {2}} and classified(one) == {slot}  # a member leaves in place
    (new,) = classified(back)
    assert tables(back) == {slot: {2}, new: {1, 2}}


def test_a_replaced_member_changes_the_table_in_place() -> None:
    """Same size: the kernel gives the departed member's buckets to its replacement at once."""
    before, after = steps({1, 2}, {1, 3})
    assert tables(after) == {s: {1, 3} for s in classified(before)} and classified(after) == classified(before)


def test_repeated_growth_keeps_a_bounded_number_of_retired_tables_newest_first() -> None:
    results = steps(*({*range(1, n + 1)} for n in range(2, 9)))  # 2 -> 3 -> ... -> 8 replicas
    last = results[-1]
    assert len(last.plan.tables) == 1 + linger.RETIRED_PER_CONFIGURATION
    (live,) = classified(last)
    assert tables(last)[live] == set(range(1, 9))
    kept = sorted(len(g) for s, g in tables(last).items() if s != live)
    assert kept == list(range(8 - linger.RETIRED_PER_CONFIGURATION, 8))  # the newest ones


def test_retired_tables_go_with_their_configuration_or_their_gateways() -> None:
    *_, grown = steps({1, 2}, {1, 2, 3})
    plain = [Workload("default", c.name, {}, {}, "node-a", c.ip) for c in CLIENTS]  # no egress
    assert plan(view([gw(1), gw(2), gw(3), *plain]), grown).plan.tables == ()
    gone = plan(view([gw(3), gw(4), *CLIENTS]), grown)  # neither 1 nor 2 exists any more
    assert tables(gone) == {s: {3, 4} for s in classified(grown)}  # the live one: in place


def test_growth_while_draining_sets_the_table_aside_once() -> None:
    before, after = steps({1, 2}, {1, -2, 3})
    (old,) = classified(before)
    (new,) = classified(after)
    assert tables(after) == {old: {1, 2}, new: {1, 3}}
    assert set(after.maintenance.values()) == {IPv4Address("10.10.0.2")}
    done = plan(view([gw(1), gw(3), *CLIENTS]), after)  # drained: 2 is gone; 1 still exists
    assert tables(done) == {old: {1, 2}, new: {1, 3}}


def test_scaling_back_takes_the_retired_table_back_instead_of_a_new_slot() -> None:
    two, three, draining, back = steps({1, 2}, {1, 2, 3}, {1, 2, -3}, {1, 2})
    assert classified(draining) == classified(two)  # the old table holds exactly {1, 2}
    (grown,) = classified(three)
    assert tables(draining) == {**tables(two), grown: {1, 2, 3}}
    assert tables(back) == tables(draining)  # 3 is gone, 1 and 2 exist: it retires


def test_retired_tables_give_way_when_slots_run_out() -> None:
    small = dp.RoutingSettings(mark_mask=0x300)  # three slots
    a, b = client(0, selector="app == 'gw'"), client(1, selector="app == 'gw' || app == 'x'")
    result = plan(view([gw(1), gw(2), a, b]), routing=small)
    result = plan(view([gw(1), gw(2), gw(3), a, b]), result, small)  # both grow: four tables wanted
    assert len(result.plan.tables) == 3 and result.problems == ()
    assert set(tables(result)[s] == {1, 2, 3} for s in classified(result)) == {True}


def test_a_capped_pod_topped_up_gets_a_fresh_table() -> None:
    capped = [client(0, cap=2)]
    one, two = steps({1}, {1, 2}, clients=capped)
    (old,) = classified(one)
    (new,) = classified(two)
    assert tables(two) == {old: {1}, new: {1, 2}}


def test_a_restarted_agent_adopts_the_lingering_tables() -> None:
    *_, grown = steps({1, 2}, {1, 2, 3})
    state = rt.node_routing(grown.plan, {IPv4Address(f"10.10.0.{i}"): "eth0" for i in (1, 2, 3)})
    held = rt.held_tables(state, ROUTING, [IPv4Network("10.244.0.0/16")])
    assert held == {t.slot: t for t in grown.plan.tables}
    by_slot = {c.slot for c in grown.plan.classifications}
    slots = {k: s for k, s in grown.slots.items() if s in by_slot}  # what the nft map gives back
    before = nodeplan.restarted(ROUTING, held, slots, grown.classified)
    again = plan(view([gw(1), gw(2), gw(3), *CLIENTS]), before)
    assert again.plan == grown.plan
    four = plan(view([gw(1), gw(2), gw(3), gw(4), *CLIENTS]), before)  # grew while it was down
    assert sorted(map(len, tables(four).values())) == [2, 3, 4]
