"""maxNextHops: least used on the node, ties by a stable per-client order, sticky picks.

One test per rule of reference §6.1.5-8 as we apply it. The node's plan (calc/nodeplan.py)
is the observed result: which gateways each client pod's table routes through.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address

from hypothesis import given, settings
from hypothesis import strategies as st

from egressgw.calc import annotations as ann
from egressgw.calc import decision, nodeplan
from egressgw.calc.cluster import ClusterView, Support, Workload
from egressgw.calc.gateways import GATEWAY_ANNOTATION
from egressgw.model import parsing
from egressgw.model.policy import EgressGatewayPolicy
from egressgw.plan import dataplane as dp

NODE = nodeplan.NodeInfo("node-a", IPv4Address("10.0.0.1"))
NODES = [NODE, nodeplan.NodeInfo("node-b", IPv4Address("10.0.0.2"))]
Picks = dict[str, frozenset[int]]  # client name -> the gateways' numbers


def gw(i: int, node: str = "node-b", terminating: bool = False) -> Workload:
    return Workload("egw", f"gw-{i}", {"app": "gw"}, {GATEWAY_ANNOTATION: "gw"}, node,
                    IPv4Address(f"10.10.0.{i}"), terminating)


def client(i: int, cap: int = 1, node: str = "node-a", policy: str | None = None) -> Workload:
    notes = ({ann.POLICY: policy} if policy else
             {ann.SELECTOR: "app == 'gw'", ann.NAMESPACE_SELECTOR: "all()", ann.MAX_NEXT_HOPS: str(cap)})
    return Workload("default", f"c{i:02}", {}, notes, node, IPv4Address(f"10.244.0.{i + 10}"))


def local_policy(cap: int) -> EgressGatewayPolicy:
    doc = {"apiVersion": "projectcalico.org/v3", "kind": "EgressGatewayPolicy", "metadata": {"name": "local"},
           "spec": {"rules": [{"gateway": {"selector": "app == 'gw'", "namespaceSelector": "all()", "maxNextHops": cap},
                               "gatewayPreference": "PreferNodeLocal"}]}}
    found = parsing.from_dict(doc)
    assert isinstance(found, EgressGatewayPolicy)
    return found


def view(pods: Iterable[Workload], failed: Iterable[int] = (), policy: EgressGatewayPolicy | None = None) -> ClusterView:
    policies = {policy.metadata.name: policy} if policy else {}
    return ClusterView(Support.PER_NAMESPACE_OR_POD, {}, {w.key: w for w in pods}, policies, (),
                       frozenset(IPv4Address(f"10.10.0.{i}") for i in failed))


def plan(v: ClusterView, before: nodeplan.NodeResult | None = None) -> nodeplan.NodeResult:
    slots = dict(before.slots) if before else {}
    return nodeplan.node_plan(v, NODE, NODES, dp.RoutingSettings(), slots, None, before)


def picks(result: nodeplan.NodeResult) -> Picks:
    """Each client's gateways, as its classified table routes them."""
    by_slot = {t.slot: t for t in result.plan.tables}
    slot = {str(c.source): c.slot for c in result.plan.classifications}
    out = {}
    for (_, name), _key in result.classified.items():
        table = by_slot[slot[f"10.244.0.{int(name[1:]) + 10}"]]
        out[name] = frozenset(int(str(ip).rsplit(".", 1)[1]) for ip in table.gateways)
    return out


def usage(p: Picks) -> Counter[int]:
    return Counter(g for gws in p.values() for g in gws)


def arrive(gateways: Sequence[Workload], clients: Sequence[Workload]) -> tuple[Picks, nodeplan.NodeResult]:
    """Clients appear one at a time; the node plans after each."""
    result = None
    for n in range(1, len(clients) + 1):
        result = plan(view([*gateways, *clients[:n]]), result)
    assert result is not None
    return picks(result), result


def test_a_client_takes_the_least_used_gateways() -> None:
    found, _ = arrive([gw(1), gw(2), gw(3)], [client(i) for i in range(6)])
    assert sorted(usage(found).values()) == [2, 2, 2]
    found, _ = arrive([gw(1), gw(2), gw(3)], [client(i, cap=2) for i in range(3)])
    assert sorted(usage(found).values()) == [2, 2, 2]


def test_ties_go_by_a_stable_order_that_differs_between_clients() -> None:
    pods = [gw(1), gw(2), gw(3), gw(4)]
    first = {c: picks(plan(view([*pods, client(c)]))) for c in range(12)}
    assert first == {c: picks(plan(view([*pods, client(c)]))) for c in range(12)}  # stable
    assert len({next(iter(p.values())) for p in first.values()}) > 1  # not all the same gateway


def test_with_no_history_the_answer_is_the_same_on_every_run_and_for_explain() -> None:
    pods = [gw(1), gw(2), gw(3), *(client(i) for i in range(7))]
    result = plan(view(pods))
    assert plan(view(reversed(pods))).classified == result.classified
    v = view(pods)
    for w in pods[3:]:
        config = decision.egress_config(v, w)
        assert nodeplan.config_key(config) == result.classified[w.key]
        assert decision.decide(v, w, IPv4Address("203.0.113.1")).gateways == config.routes[0].hops


def test_picks_are_sticky_while_all_still_usable() -> None:
    gateways = [gw(1), gw(2), gw(3)]
    found, result = arrive(gateways, [client(i) for i in range(5)])
    more = plan(view([*gateways, *(client(i) for i in range(5)), gw(4)]), result)  # a new replica
    assert {k: v for k, v in picks(more).items()} == found  # capped clients at their cap keep theirs
    assert picks(plan(view([*gateways, *(client(i) for i in range(6))]), result))["c05"] <= {1, 2, 3}


def test_a_failed_hop_is_replaced_and_the_others_are_kept() -> None:
    gateways = [gw(1), gw(2), gw(3)]
    clients = [client(i, cap=2) for i in range(3)]
    found, result = arrive(gateways, clients)
    victim = 1
    after = picks(plan(view([*gateways, *clients], failed=[victim]), result))
    for name, before in found.items():
        if victim in before:
            assert before - {victim} < after[name] and victim not in after[name]
        else:
            assert after[name] == before


def test_a_removed_hop_is_replaced_and_the_others_stay() -> None:
    gateways = [gw(1), gw(2), gw(3), gw(4)]
    clients = [client(i) for i in range(4)]
    found, result = arrive(gateways, clients)
    after = picks(plan(view([*gateways[1:], *clients]), result))
    assert {n: p for n, p in after.items() if 1 not in found[n]} == {n: p for n, p in found.items() if 1 not in p}
    assert all(1 not in p for p in after.values())


def test_a_pod_whose_picks_change_keeps_its_table_slot() -> None:
    """Its gateway set changes in place (as for uncapped sets): connections through the
    gateways it keeps keep their mark, their table and, by the resilient group, their hop."""
    gateways = [gw(1), gw(2), gw(3)]
    clients = [client(0, cap=2)]
    found, result = arrive(gateways, clients)
    gone = min(found["c00"])
    after = plan(view([*(g for g in gateways if g.name != f"gw-{gone}"), *clients]), result)
    assert gone not in picks(after)["c00"] and found["c00"] - {gone} < picks(after)["c00"]
    assert list(after.slots.values()) == list(result.slots.values())


def test_more_replicas_top_up_clients_below_their_cap_only() -> None:
    clients = [client(0, cap=2), client(1, cap=1)]
    found, result = arrive([gw(1)], clients)
    assert found == {"c00": {1}, "c01": {1}}
    grown = plan(view([gw(1), gw(2), *clients]), result)
    assert picks(grown) == {"c00": {1, 2}, "c01": {1}}
    # Topped up, the pod's new connections get a fresh table over both; its old table
    # lingers unchanged for its live connections (calc/linger.py).
    old = result.slots[result.classified[("default", "c00")]]
    assert grown.slots[grown.classified[("default", "c00")]] != old
    assert [t.gateways for t in grown.plan.tables if t.slot == old] == [frozenset({IPv4Address("10.10.0.1")})]


def test_a_terminating_gateway_that_is_not_picked_changes_nothing() -> None:
    gateways = [gw(1), gw(2), gw(3)]
    clients = [client(0, cap=2)]
    found, result = arrive(gateways, clients)
    (spare,) = {1, 2, 3} - found["c00"]
    draining = [gw(i, terminating=i == spare) for i in (1, 2, 3)]
    after = plan(view([*draining, *clients]), result)
    assert picks(after) == found and after.slots == result.slots


def test_a_terminating_pick_drains_new_connections_go_elsewhere_and_the_others_stay() -> None:
    """Reference: a terminating hop triggers no re-pick. Ours: the pod's other picks stay,
    new connections leave the draining gateway, and its old table lingers unchanged for
    the live connections (see nodeplan._lingering)."""
    gateways = [gw(1), gw(2), gw(3)]
    clients = [client(0, cap=2)]
    found, result = arrive(gateways, clients)
    victim = min(found["c00"])
    old_slot = result.slots[result.classified[("default", "c00")]]
    after = plan(view([*(gw(i, terminating=i == victim) for i in (1, 2, 3)), *clients]), result)
    now = picks(after)["c00"]
    assert victim not in now and found["c00"] - {victim} < now
    lingering = [t for t in after.plan.tables if t.slot == old_slot]
    assert [t.gateways for t in lingering] == [frozenset(IPv4Address(f"10.10.0.{i}") for i in found["c00"])]
    assert after.maintenance == {("default", "c00"): IPv4Address(f"10.10.0.{victim}")}


def test_prefer_node_local_picks_among_local_gateways_and_leaves_remote_picks() -> None:
    policy = local_policy(cap=1)
    remote = [gw(1), gw(2)]
    clients = [client(i, policy="local") for i in range(4)]
    result = plan(view([*remote, *clients], policy=policy))
    assert usage(picks(result)) == {1: 2, 2: 2}
    local = [gw(3, node="node-a"), gw(4, node="node-a")]
    after = plan(view([*remote, *local, *clients], policy=policy), result)
    assert usage(picks(after)) == {3: 2, 4: 2}


def test_a_restart_adopts_the_picks_the_kernel_holds() -> None:
    """The picks a history made (here: every client on gw-1, the only replica when they
    came) are not what a fresh computation gives; rebuilt from the kernel, they stay."""
    clients = [client(i) for i in range(4)]
    _, result = arrive([gw(1)], clients)
    v = view([gw(1), gw(2), *clients])
    kept = plan(v, result)
    assert set(usage(picks(kept))) == {1} and set(usage(picks(plan(v)))) == {1, 2}
    held = {t.slot: {r.destination: r.gateways for r in t.routes} for t in kept.plan.tables}
    by_source = {str(c.source): c.slot for c in kept.plan.classifications}
    adopted, slots = {}, {}
    for w in clients:
        slot = by_source[str(w.ip)]
        key = nodeplan.adopted_key(decision.egress_config(v, w), held[slot])
        adopted[w.key], slots[key] = key, slot
    restarted = nodeplan.node_plan(v, NODE, NODES, dp.RoutingSettings(), slots, None, None, adopted)
    assert restarted.plan == kept.plan


@settings(max_examples=40, deadline=None)
@given(gateways=st.integers(2, 5), cap=st.integers(1, 4), clients=st.integers(1, 14), seed=st.randoms())
def test_clients_arriving_one_by_one_spread_evenly(gateways: int, cap: int, clients: int, seed: object) -> None:
    pods = [gw(i) for i in range(1, gateways + 1)]
    order = [client(i, cap) for i in range(clients)]
    seed.shuffle(order)  # type: ignore[attr-defined]
    result = None
    for n in range(1, clients + 1):
        result = plan(view([*pods, *order[:n]]), result)
        counts = usage(picks(result))
        spread = [counts.get(i, 0) for i in range(1, gateways + 1)]
        assert max(spread) - min(spread) <= 1, (n, spread)


@settings(max_examples=25, deadline=None)
@given(st.permutations([gw(1), gw(2), gw(3, node="node-a"), *(client(i, cap=1 + i % 2) for i in range(8))]))
def test_the_assignment_does_not_depend_on_the_order_of_the_resources(pods: list[Workload]) -> None:
    assert picks(plan(view(pods))) == EXPECTED


EXPECTED = picks(plan(view([gw(1), gw(2), gw(3, node="node-a"), *(client(i, cap=1 + i % 2) for i in range(8))])))
