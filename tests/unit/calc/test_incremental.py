"""A view changed pod by pod (`ClusterView.with_workload`) answers as one built afresh.

The decision memoises per view and carries memos (and each node's maxNextHops assignment)
into a changed view; capped routes pick in groups that share gateways (hops.Groups). The
oracle here is the rule itself, written plainly: on each node, pods in (namespace, name)
order, each capped route takes the least-used of its candidates (ledger: every route entry
on the node through the gateway), ties by the client's order (`hops.preference`).
"""

from __future__ import annotations

from collections import Counter
from ipaddress import IPv4Address

from hypothesis import given, settings
from hypothesis import strategies as st

from egressgw.calc import annotations as ann
from egressgw.calc import decision, hops
from egressgw.calc.cluster import ClusterView, Support, Workload
from egressgw.calc.gateways import GATEWAY_ANNOTATION

NODES = ("node-a", "node-b")
# Each gateway has a colour; selections take two colours, so each overlaps the others in
# part: groups form, join, and outlive the routes that joined them.
SELECTORS = ("c in {'0', '1'}", "c in {'1', '2'}", "c in {'2', '0'}", "all()")


def gateway(i: int, colour: int, node: str) -> Workload:
    labels = {"c": str(colour), "role": "gw"}
    return Workload("egw", f"gw-{i}", labels, {GATEWAY_ANNOTATION: "gw"}, node, IPv4Address(f"10.10.0.{i + 1}"))


def client(i: int, selector: int, cap: int, node: str, has_ip: bool = True) -> Workload:
    notes = {ann.SELECTOR: f"role == 'gw' && {SELECTORS[selector]}", ann.NAMESPACE_SELECTOR: "all()"}
    if cap:
        notes[ann.MAX_NEXT_HOPS] = str(cap)
    ip = IPv4Address(f"10.244.0.{i + 10}") if has_ip else None
    return Workload("default", f"c{i:02}", {}, notes, node, ip)


def fresh(pods: dict[tuple[str, str], Workload]) -> ClusterView:
    return ClusterView(Support.PER_NAMESPACE_OR_POD, {}, dict(pods), {}, ())


def oracle(view: ClusterView) -> dict[tuple[str, str], tuple[frozenset[str], ...]]:
    """Each client's gateways, by the rule written plainly (node by node, in order)."""
    out: dict[tuple[str, str], tuple[frozenset[str], ...]] = {}
    for node in NODES:
        clients = [w for w in view.on_node(node) if w.ip is not None and GATEWAY_ANNOTATION not in w.annotations]
        candidates = {}
        for w in clients:
            found = ann.read(w.annotations)
            assert found is not None and found.selection is not None
            hopped = decision.choose_hops(view, w, found.selection, prefer_local=False)
            candidates[w.key] = ([str(h.ip) for h in hopped], found.selection.max_next_hops)
        usage: Counter[str] = Counter()
        for ips, cap in candidates.values():
            if not 0 < cap < len(ips):
                usage.update(ips)
        for w in clients:
            ips, cap = candidates[w.key]
            if 0 < cap < len(ips):
                order = hops.preference(w.key, ips)
                chosen = sorted(order, key=lambda ip: usage[ip])[:cap]  # stable: ties by order
                usage.update(chosen)
                ips = chosen
            out[w.key] = (frozenset(ips),)
    return out


def answers(view: ClusterView, order: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[frozenset[str], ...]]:
    """Each client's gateways per route, asking in `order`."""
    out = {}
    for key in order:
        w = view.workloads[key]
        if w.ip is not None and GATEWAY_ANNOTATION not in w.annotations:
            config = decision.egress_config(view, w)
            out[key] = tuple(frozenset(str(h.ip) for h in r.hops) for r in config.routes)
    return out


gateways = st.lists(st.tuples(st.integers(0, 2), st.sampled_from(NODES)), min_size=2, max_size=7)
clients = st.tuples(st.integers(0, 11), st.integers(0, 3), st.integers(0, 3), st.sampled_from(NODES),
                    st.booleans() | st.just(True))


@settings(max_examples=60, deadline=None)
@given(gateways=gateways, initial=st.lists(clients, max_size=12), changes=st.lists(clients, min_size=1, max_size=8),
       asked=st.sets(st.integers(0, 7)), seed=st.randoms())
def test_a_changed_view_answers_as_a_fresh_one_and_as_the_rule(
    gateways: list[tuple[int, str]],
    initial: list[tuple[int, int, int, str, bool]],
    changes: list[tuple[int, int, int, str, bool]],
    asked: set[int],
    seed: object,
) -> None:
    pods = {w.key: w for w in (gateway(i, colour, node) for i, (colour, node) in enumerate(gateways))}
    pods |= {w.key: w for w in (client(*c) for c in initial)}
    view = fresh(pods)
    assert answers(view, sorted(pods)) == oracle(view)
    for step, change in enumerate(changes):
        w = client(*change)
        pods[w.key] = w
        want = oracle(fresh(pods))
        # The first question to a changed view runs only its pod's groups: ask each pod first.
        for key in want:
            assert answers(view.with_workload(w), [key]) == {key: want[key]}
        view = view.with_workload(w)
        if step in asked:  # some views are asked (their assignments carry on), some are not
            keys = sorted(pods)
            seed.shuffle(keys)  # type: ignore[attr-defined]
            assert answers(view, keys) == answers(fresh(pods), sorted(pods)) == want
    keys = sorted(pods)
    seed.shuffle(keys)  # type: ignore[attr-defined]
    assert answers(view, keys) == oracle(fresh(pods))


def test_a_changed_gateway_resets_the_memos_and_still_answers_right() -> None:
    pods = {w.key: w for w in [gateway(0, 0, "node-a"), gateway(1, 1, "node-b"), gateway(2, 2, "node-a"), *(client(i, i % 4, 1, "node-a") for i in range(6))]}
    view = fresh(pods)
    assert answers(view, sorted(pods)) == oracle(view)
    moved = gateway(1, 2, "node-a")
    pods[moved.key] = moved
    changed = view.with_workload(moved)
    assert answers(changed, sorted(pods, reverse=True)) == oracle(fresh(pods))


def test_the_first_question_runs_the_earlier_picks_its_gateways_share_with_others() -> None:
    """c10's candidates (the colour-2 gateways) are among c04's (colours 1 and 2), which
    share the colour-1 ones with c01's: asked first, c10 depends on c01's pick through
    c04's, though it shares no gateway with c01."""
    pods = {w.key: w for w in [*(gateway(i, colour, "node-a") for i, colour in enumerate((1, 2, 1, 2))),
                               client(1, 0, 1, "node-a"), client(4, 1, 1, "node-a"), client(10, 2, 1, "node-a")]}
    want = oracle(fresh(pods))
    for key in want:
        assert answers(fresh(pods), [key]) == {key: want[key]}
