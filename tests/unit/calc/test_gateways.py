"""Gateway pods derived from EgressGateways: labels, spread, addresses, Elastic IPs."""

from __future__ import annotations

from ipaddress import IPv4Address

from egressgw.calc import gateways
from tests.unit.calc.scenario import resource_set


def test_pods_carry_template_and_operator_labels() -> None:
    rs = resource_set()
    red = next(g for g in rs.egress_gateways if g.metadata.name == "red")
    pods = gateways.pod_specs(red, list(rs.ip_pools))
    assert [p.name for p in pods] == ["red-0", "red-1"]
    assert pods[0].labels["egress-code"] == "red"
    assert pods[0].labels["k8s-app"] == "red"
    assert pods[0].annotations[gateways.POOLS_ANNOTATION] == '["egress-red"]'


def test_default_template_label_is_projectcalico_egw() -> None:
    rs = resource_set()
    blue = next(g for g in rs.egress_gateways if g.metadata.name == "blue")
    assert gateways.pod_specs(blue, [])[0].labels["egress-code"] == "blue"


def materialized():  # type: ignore[no-untyped-def]
    rs = resource_set()
    return gateways.materialize(list(rs.egress_gateways), list(rs.ip_pools), [], list(rs.nodes),
                                gateways.EMPTY_ROLLOUT)


def test_replicas_spread_across_zones_and_get_pool_addresses() -> None:
    placed, _, problems = materialized()
    assert not problems
    red = {p.pod.name: p for p in placed if p.pod.gateway == "red"}
    assert {red["red-0"].node, red["red-1"].node} == {"node-a", "node-b"}
    assert all(str(p.ip).startswith("10.10.10.") for p in red.values())


def test_rollout_is_stable_when_nothing_changes() -> None:
    placed, rollout, _ = materialized()
    rs = resource_set()
    again, rollout2, _ = gateways.materialize(list(rs.egress_gateways), list(rs.ip_pools), [],
                                              list(rs.nodes), rollout)
    assert [(p.pod.name, p.node, p.ip) for p in again] == [(p.pod.name, p.node, p.ip) for p in placed]
    assert rollout2 == rollout


def test_elastic_ips_are_one_per_pod_never_stolen() -> None:
    pod = gateways.GatewayPod("g", "default", "g-0", {}, {}, (), (IPv4Address("198.51.100.1"), IPv4Address("198.51.100.2")), {}, False)
    assert gateways.elastic_ip_for(pod, {IPv4Address("198.51.100.1")}) == IPv4Address("198.51.100.2")
    assert gateways.elastic_ip_for(pod, {IPv4Address("198.51.100.1"), IPv4Address("198.51.100.2")}) is None
