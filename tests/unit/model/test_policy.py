"""EgressGatewayPolicy: destinations, rule defaults and the rules of reference §3.2."""

from __future__ import annotations

from ipaddress import IPv4Network
from typing import Any

import pytest

from egressgw.model import EgressGatewayPolicy, EgressGatewayRule

from .helpers import load, refusal

GATEWAY = {
    "namespaceSelector": "projectcalico.org/name == 'default'",
    "selector": "egress-code == 'red'",
}


def policy(*rules: dict[str, Any]) -> EgressGatewayPolicy:
    res = load("EgressGatewayPolicy", {"rules": list(rules)})
    assert isinstance(res, EgressGatewayPolicy)
    return res


def test_destination_forms() -> None:
    rules = policy(
        {"gateway": GATEWAY},
        {"destination": {"cidr": "8.8.8.8"}},
        {"destination": {"cidr": "10.0.0.0/8"}},
    ).spec.rules
    assert [r.destination_cidr for r in rules] == [
        IPv4Network("0.0.0.0/0"),
        IPv4Network("8.8.8.8/32"),
        IPv4Network("10.0.0.0/8"),
    ]


def test_empty_destination_collides_with_an_omitted_one() -> None:
    field, _ = refusal(
        "EgressGatewayPolicy", {"rules": [{"gateway": GATEWAY}, {"destination": {}}]}
    )
    assert field == "spec.rules[1].destination.cidr"


def test_rule_defaults() -> None:
    rule = EgressGatewayRule()
    assert (rule.gateway_preference, rule.gateway, rule.destination) == ("None", None, None)
    assert rule.is_noop
    (gateway_rule,) = policy({"gateway": GATEWAY}).spec.rules
    assert gateway_rule.gateway is not None and gateway_rule.gateway.max_next_hops == 0


def test_a_noop_rule_among_others_is_allowed() -> None:
    assert (
        len(policy({"description": "no-op"}, {"destination": {"cidr": "10.0.0.0/8"}}).spec.rules)
        == 2
    )


def test_destination_only_rules_are_not_noops() -> None:
    (rule,) = policy({"destination": {"cidr": "10.0.0.0/8"}}).spec.rules
    assert not rule.is_noop and rule.gateway is None


@pytest.mark.parametrize(
    ("rules", "field"),
    [
        ([{"destination": {"cidr": "10.0.0.1/8"}}], "spec.rules[0].destination.cidr"),
        ([{"destination": {"cidr": "not-a-cidr"}}], "spec.rules[0].destination.cidr"),
        ([{"gateway": GATEWAY, "gatewayPreference": "Local"}], "spec.rules[0].gatewayPreference"),
        ([{"gateway": GATEWAY | {"maxNextHops": 2**31}}], "spec.rules[0].gateway.maxNextHops"),
        (
            [{"gateway": GATEWAY | {"namespaceSelector": "global()"}}],
            "spec.rules[0].gateway.namespaceSelector",
        ),
        ([{"gateway": GATEWAY | {"selector": "   "}}], "spec.rules[0].gateway.selector"),
        ([{"gateway": GATEWAY, "destinations": {}}], "spec.rules[0].destinations"),
    ],
)
def test_refusals(rules: list[dict[str, Any]], field: str) -> None:
    assert refusal("EgressGatewayPolicy", {"rules": rules})[0] == field


def test_rules_are_required() -> None:
    assert refusal("EgressGatewayPolicy", {}) == ("spec.rules", "required field is missing")
