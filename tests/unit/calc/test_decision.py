"""The egress decision, one test per rule of the reference semantics."""

from __future__ import annotations

import json
from ipaddress import IPv4Address

import pytest

from egressgw.calc import annotations as ann
from egressgw.calc.decision import decide, egress_config
from egressgw.calc.egressconfig import Action, Source
from tests.unit.calc.scenario import client, felix, namespace, view

RED = "egress-code == 'red'"
BLUE = "egress-code == 'blue'"
OTHER_NS = "projectcalico.org/name == 'egw'"
SAAS = IPv4Address("203.0.113.10")


def policy(name: str, *rules: dict[str, object]) -> str:
    return json.dumps({"apiVersion": "projectcalico.org/v3", "kind": "EgressGatewayPolicy",
                       "metadata": {"name": name}, "spec": {"rules": list(rules)}})


def gw(selector: str, ns_selector: str = "projectcalico.org/name == 'default'", **extra: object) -> dict[str, object]:
    return {"selector": selector, "namespaceSelector": ns_selector, **extra}


def answer(*docs: str, to: IPv4Address = SAAS):  # type: ignore[no-untyped-def]
    v = view(*docs)
    return decide(v, v.workloads[("default", "client")], to)


def pods(result) -> list[str]:  # type: ignore[no-untyped-def]
    return [h.pod for h in result.gateways]


def test_no_annotation_is_direct() -> None:
    result = answer()
    assert (result.action, result.source) == (Action.DIRECT, Source.NONE)


def test_pod_selector_uses_same_namespace_gateways() -> None:
    result = answer(client({ann.SELECTOR: RED}))
    assert result.action is Action.GATEWAY and result.source is Source.POD_SELECTOR
    assert pods(result) == ["red-0", "red-1"]
    assert all(h.gateway == "red" for h in result.gateways)


def test_selector_without_namespace_selector_ignores_other_namespaces() -> None:
    result = answer(client({ann.SELECTOR: BLUE}))  # blue lives in namespace egw
    assert result.action is Action.DROP


def test_namespace_selector_reaches_other_namespaces() -> None:
    result = answer(client({ann.SELECTOR: BLUE, ann.NAMESPACE_SELECTOR: OTHER_NS}))
    assert result.action is Action.GATEWAY and pods(result) == ["blue-0", "blue-1"]


def test_namespace_selector_alone_selects_every_pod_there() -> None:
    result = answer(client({ann.NAMESPACE_SELECTOR: "team == 'egress'"}))
    assert pods(result) == ["blue-0", "blue-1"]


def test_pod_selector_beats_namespace_selector_and_is_not_merged() -> None:
    ns = namespace("default", {ann.SELECTOR: BLUE, ann.NAMESPACE_SELECTOR: OTHER_NS, ann.MAX_NEXT_HOPS: "1"})
    result = answer(ns, client({ann.SELECTOR: RED}))
    assert result.source is Source.POD_SELECTOR
    assert pods(result) == ["red-0", "red-1"]  # the namespace's maxNextHops is not merged in


def test_namespace_selector_applies_without_pod_annotation() -> None:
    result = answer(namespace("default", {ann.SELECTOR: RED}))
    assert result.source is Source.NAMESPACE_SELECTOR and pods(result) == ["red-0", "red-1"]


def test_namespace_policy_beats_pod_selector() -> None:
    p = policy("p", {"gateway": gw(BLUE, OTHER_NS)})
    result = answer(p, namespace("default", {ann.POLICY: "p"}), client({ann.SELECTOR: RED}))
    assert result.source is Source.NAMESPACE_POLICY and pods(result) == ["blue-0", "blue-1"]


def test_pod_policy_beats_namespace_policy() -> None:
    docs = (policy("ns", {"gateway": gw(BLUE, OTHER_NS)}), policy("pod", {"gateway": gw(RED)}),
            namespace("default", {ann.POLICY: "ns"}), client({ann.POLICY: "pod"}))
    result = answer(*docs)
    assert (result.source, result.policy, pods(result)) == (Source.POD_POLICY, "pod", ["red-0", "red-1"])


def test_policy_annotation_ignores_selector_on_same_object() -> None:
    result = answer(policy("p", {"gateway": gw(BLUE, OTHER_NS)}), client({ann.POLICY: "p", ann.SELECTOR: RED}))
    assert pods(result) == ["blue-0", "blue-1"]


def test_unknown_policy_drops_everything() -> None:
    result = answer(client({ann.POLICY: "nope"}))
    assert (result.action, result.source, result.policy) == (Action.DROP, Source.POD_POLICY, "nope")


def test_missing_pod_policy_falls_back_to_namespace_policy() -> None:
    docs = (policy("ns", {"gateway": gw(RED)}), namespace("default", {ann.POLICY: "ns"}),
            client({ann.POLICY: "nope"}))
    assert answer(*docs).policy == "ns"


def test_longest_prefix_wins_whatever_the_rule_order() -> None:
    rules = [{"gateway": gw(RED)},
             {"destination": {"cidr": "203.0.113.0/24"}},
             {"destination": {"cidr": "203.0.113.10"}, "gateway": gw(BLUE, OTHER_NS)}]
    for order in (rules, rules[::-1]):
        docs = (policy("p", *order), client({ann.POLICY: "p"}))
        assert pods(answer(*docs, to=SAAS)) == ["blue-0", "blue-1"]
        assert answer(*docs, to=IPv4Address("203.0.113.11")).action is Action.DIRECT
        assert pods(answer(*docs, to=IPv4Address("198.51.100.1"))) == ["red-0", "red-1"]


def test_rule_index_is_reported() -> None:
    rules = [{"destination": {"cidr": "8.8.8.8"}, "gateway": gw(RED)}, {"gateway": gw(BLUE, OTHER_NS)}]
    result = answer(policy("p", *rules), client({ann.POLICY: "p"}), to=IPv4Address("8.8.8.8"))
    assert result.rule == 0
    assert answer(policy("p", *rules), client({ann.POLICY: "p"})).rule == 1


def test_rule_without_gateway_is_direct() -> None:
    result = answer(policy("p", {"destination": {"cidr": "0.0.0.0/0"}}, {"destination": {"cidr": "10.0.0.0/8"}, "gateway": gw(RED)}),
                    client({ann.POLICY: "p"}))
    assert result.action is Action.DIRECT and result.rule == 0


def test_destination_matching_no_rule_is_direct() -> None:
    result = answer(policy("p", {"destination": {"cidr": "192.0.2.0/24"}, "gateway": gw(RED)}), client({ann.POLICY: "p"}))
    assert result.action is Action.DIRECT and result.rule is None and result.source is Source.POD_POLICY


def test_empty_gateway_set_drops() -> None:
    result = answer(policy("p", {"gateway": gw("egress-code == 'green'")}), client({ann.POLICY: "p"}))
    assert result.action is Action.DROP and result.rule == 0


def test_max_next_hops_caps_the_set() -> None:
    result = answer(client({ann.SELECTOR: RED, ann.MAX_NEXT_HOPS: "1"}))
    assert len(result.gateways) == 1


def test_max_next_hops_in_policy() -> None:
    result = answer(policy("p", {"gateway": gw(RED, maxNextHops=1)}), client({ann.POLICY: "p"}))
    assert len(result.gateways) == 1


def test_bad_max_next_hops_means_all() -> None:
    result = answer(client({ann.SELECTOR: RED, ann.MAX_NEXT_HOPS: "-3"}))
    assert len(result.gateways) == 2
    v = view(client({ann.SELECTOR: RED, ann.MAX_NEXT_HOPS: "-3"}))
    assert egress_config(v, v.workloads[("default", "client")]).problems


def test_prefer_node_local_keeps_local_gateways() -> None:
    v = view(client({ann.POLICY: "p"}), policy("p", {"gateway": gw(RED), "gatewayPreference": "PreferNodeLocal"}))
    me = v.workloads[("default", "client")]
    result = decide(v, me, SAAS)
    assert [h.node for h in result.gateways] == [me.node]


def test_prefer_node_local_falls_back_to_all() -> None:
    v = view(client({ann.POLICY: "p"}, node="node-c"), policy("p", {"gateway": gw(RED), "gatewayPreference": "PreferNodeLocal"}))
    assert len(decide(v, v.workloads[("default", "client")], SAAS).gateways) == 2


@pytest.mark.parametrize("inside", ["10.244.3.3", "10.0.0.2", "10.10.10.1"])
def test_cluster_destinations_never_use_a_gateway(inside: str) -> None:
    result = answer(client({ann.SELECTOR: RED}), to=IPv4Address(inside))
    assert result.action is Action.DIRECT and "inside the cluster" in result.reason


def test_disabled_support_ignores_everything() -> None:
    result = answer(felix("Disabled"), client({ann.SELECTOR: RED}), namespace("default", {ann.SELECTOR: RED}))
    assert (result.action, result.source) == (Action.DIRECT, Source.NONE)


def test_per_namespace_support_ignores_pod_annotations() -> None:
    docs = (felix("EnabledPerNamespace"), client({ann.SELECTOR: BLUE, ann.NAMESPACE_SELECTOR: OTHER_NS}),
            namespace("default", {ann.SELECTOR: RED}))
    result = answer(*docs)
    assert result.source is Source.NAMESPACE_SELECTOR and pods(result) == ["red-0", "red-1"]


def test_invalid_selector_annotation_is_ignored_and_reported() -> None:
    v = view(client({ann.SELECTOR: "egress-code == "}), namespace("default", {ann.SELECTOR: RED}))
    me = v.workloads[("default", "client")]
    assert decide(v, me, SAAS).source is Source.NAMESPACE_SELECTOR
    assert egress_config(v, me).problems


def test_terminating_and_failed_gateways_are_not_used() -> None:
    v = view(client({ann.SELECTOR: RED}))
    red0 = v.workloads[("default", "red-0")]
    v2 = type(v)(v.support, v.namespaces, v.workloads, v.policies, v.internal, frozenset({red0.ip}) if red0.ip else frozenset())
    assert pods(decide(v2, v2.workloads[("default", "client")], SAAS)) == ["red-1"]
