"""The decision depends only on the state, not on the order resources arrive in."""

from __future__ import annotations

import json
import textwrap
from ipaddress import IPv4Address

from hypothesis import given, settings
from hypothesis import strategies as st

from egressgw.calc import annotations as ann
from egressgw.calc import decision, snapshot
from egressgw.calc.egressconfig import Action
from egressgw.model import parsing
from egressgw.model.resourceset import ResourceSet
from tests.unit.calc.scenario import BASE

EXTRA = [
    json.dumps({"apiVersion": "projectcalico.org/v3", "kind": "EgressGatewayPolicy", "metadata": {"name": "p"},
                "spec": {"rules": [
                    {"gateway": {"selector": "egress-code == 'red'", "namespaceSelector": "all()", "maxNextHops": 1}},
                    {"destination": {"cidr": "203.0.113.0/25"}, "gateway": {"selector": "has(egress-code)", "namespaceSelector": "all()"}},
                    {"destination": {"cidr": "203.0.113.0/26"}}]}}),
] + [
    json.dumps({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": f"c{i}", "namespace": "default", "annotations": a},
                "spec": {"nodeName": "node-b" if i % 2 else "node-a"}, "status": {"podIP": f"10.244.1.{i}"}})
    for i, a in enumerate([{ann.POLICY: "p"}, {ann.SELECTOR: "egress-code == 'red'", ann.MAX_NEXT_HOPS: "1"},
                           {ann.NAMESPACE_SELECTOR: "all()", ann.SELECTOR: "has(egress-code)"}, {}, {ann.POLICY: "x"}])
]
DESTINATIONS = [IPv4Address(a) for a in ("203.0.113.1", "203.0.113.100", "203.0.113.200", "198.51.100.7", "10.244.0.9")]


def all_decisions(docs: list[parsing.Resource]) -> list[tuple[object, ...]]:
    view, _, _ = snapshot.view_of_manifests(ResourceSet.build(docs))
    out = []
    for key in sorted(view.workloads):
        w = view.workloads[key]
        for dst in DESTINATIONS:
            d = decision.decide(view, w, dst)
            out.append((key, dst, d.action, d.source, d.rule, tuple((h.pod, h.ip) for h in d.gateways)))
    return out


DOCS = parsing.parse_documents(textwrap.dedent(BASE) + "\n---\n" + "\n---\n".join(EXTRA), "order.yaml")
EXPECTED = all_decisions(DOCS)


@settings(max_examples=25, deadline=None)
@given(st.permutations(DOCS))
def test_decisions_do_not_depend_on_input_order(order: list[parsing.Resource]) -> None:
    assert all_decisions(list(order)) == EXPECTED


def test_the_scenario_exercises_every_action() -> None:
    assert {row[2] for row in EXPECTED} == {Action.GATEWAY, Action.DIRECT, Action.DROP}
