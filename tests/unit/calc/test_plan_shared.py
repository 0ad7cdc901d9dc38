"""What a node's plan shares between pods gives the answers of deciding each pod on its own.

The decision gives the pods of a namespace without annotations their namespace's shared
configuration; the node plan computes a table once per configuration and classifies pods by
it. The oracle is the same cluster with every pod carrying an annotation that means nothing
to egress: that takes the decision pod by pod, and must answer alike.
"""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from egressgw.calc import annotations as ann
from egressgw.calc import decision, nodeplan
from egressgw.calc.cluster import (
    NAMESPACE_NAME_LABEL,
    ClusterView,
    NamespaceInfo,
    Support,
    Workload,
)
from egressgw.calc.gateways import GATEWAY_ANNOTATION
from egressgw.model import parsing
from egressgw.model.policy import EgressGatewayPolicy
from egressgw.plan import dataplane as dp

NODE = nodeplan.NodeInfo("node-a", IPv4Address("10.0.0.1"))
NODES = [NODE, nodeplan.NodeInfo("node-b", IPv4Address("10.0.0.2"))]
NAMESPACES = {  # namespace -> its annotations
    "plain": {},
    "steered": {ann.SELECTOR: "role == 'gw'"},  # its own gateways are among its pods
    "capped": {ann.SELECTOR: "role == 'gw'", ann.NAMESPACE_SELECTOR: "all()", ann.MAX_NEXT_HOPS: "1"},
    "policy": {ann.POLICY: "all-gw"},
    "missing": {ann.POLICY: "nowhere"},
    "broken": {ann.SELECTOR: "role == ((("},
    "none-left": {ann.SELECTOR: "role == 'nobody'"},
}


def all_gw_policy() -> EgressGatewayPolicy:
    doc = {"apiVersion": "projectcalico.org/v3", "kind": "EgressGatewayPolicy", "metadata": {"name": "all-gw"},
           "spec": {"rules": [{"destination": {"cidr": "198.51.100.0/24"}},
                              {"gateway": {"selector": "role == 'gw'", "namespaceSelector": "all()"}}]}}
    found = parsing.from_dict(doc)
    assert isinstance(found, EgressGatewayPolicy)
    return found


def pods(extra: dict[str, str]) -> list[Workload]:
    """Clients in every namespace (some without an address), and gateways: annotated ones
    in `egw`, and plain labelled pods of `steered` that its selector picks (one draining)."""
    out = [Workload(ns, f"c{i}", {}, dict(extra), "node-a", IPv4Address(f"10.244.{n}.{i + 1}") if i != 2 else None)
           for n, ns in enumerate(NAMESPACES) for i in range(4)]  # fmt: skip
    out += [Workload("egw", f"gw-{i}", {"role": "gw"}, {GATEWAY_ANNOTATION: "gw", **extra}, "node-b",
                     IPv4Address(f"10.10.0.{i + 1}")) for i in range(3)]  # fmt: skip
    out += [Workload("steered", f"a-gw-{i}", {"role": "gw"}, dict(extra), "node-a", IPv4Address(f"10.10.1.{i + 1}"),
                     terminating=i == 1) for i in range(3)]  # fmt: skip
    return out


def view(support: Support, extra: dict[str, str]) -> ClusterView:
    namespaces = {ns: NamespaceInfo(ns, {NAMESPACE_NAME_LABEL: ns}, notes) for ns, notes in NAMESPACES.items()}
    return ClusterView(support, namespaces, {w.key: w for w in pods(extra)}, {"all-gw": all_gw_policy()}, ())


@pytest.mark.parametrize("support", list(Support))
def test_pods_without_annotations_are_decided_as_one_by_one(support: Support) -> None:
    shared, alone = view(support, {}), view(support, {"unrelated.example.com/note": "x"})
    for node in ("node-a", "node-b"):
        got, want = decision.node_configs(shared, node), decision.node_configs(alone, node)
        keys = [w.key for w in shared.on_node(node) if w.ip is not None]
        assert [got.config(k) for k in keys] == [want.config(k) for k in keys]
    assert [decision.egress_config(shared, w) for w in shared.workloads.values()] == [
        decision.egress_config(alone, w) for w in alone.workloads.values()]  # fmt: skip
    got_plan = nodeplan.node_plan(shared, NODE, NODES, dp.RoutingSettings(), {}, None)
    want_plan = nodeplan.node_plan(alone, NODE, NODES, dp.RoutingSettings(), {}, None)
    assert got_plan.plan == want_plan.plan
    assert (got_plan.slots, got_plan.classified) == (want_plan.slots, want_plan.classified)


def test_pods_with_equal_configurations_share_one_table() -> None:
    # A policy's configuration is built per pod: equal, but not one object.
    v = view(Support.PER_NAMESPACE_OR_POD, {})
    result = nodeplan.node_plan(v, NODE, NODES, dp.RoutingSettings(), {}, None)
    policy_slots = {c.slot for c in result.plan.classifications if c.source in {IPv4Address("10.244.3.1"),
                                                                                  IPv4Address("10.244.3.2"),
                                                                                  IPv4Address("10.244.3.4")}}
    assert len(policy_slots) == 1
    assert len(result.plan.tables) == len(set(result.slots.values()))


def test_pods_beyond_the_capacity_are_named_in_order_and_not_classified() -> None:
    # mark mask 0x300: three slots; the node wants more distinct configurations than that
    routing = dp.RoutingSettings(mark_mask=0x300)
    v = view(Support.PER_NAMESPACE_OR_POD, {})
    full = nodeplan.node_plan(v, NODE, NODES, dp.RoutingSettings(), {}, None)
    assert len(full.slots) > routing.capacity
    result = nodeplan.node_plan(v, NODE, NODES, routing, {}, None)
    assert len(result.plan.tables) == routing.capacity
    refused = [p.split(":")[0] for p in result.problems]
    assert refused and refused == sorted(refused)
    assert len(result.plan.classifications) + len(refused) == len(full.plan.classifications)
    assert all(f"no free egress slot on node-a (capacity {routing.capacity})" in p for p in result.problems)
