"""`EgressGatewayPolicy` (projectcalico.org/v3, cluster-scoped): per-destination gateway rules.

Holds the model and the checks Calico makes when the object is written (reference §3.2).
What the rules mean for a workload (longest prefix match, empty sets) is the decision's job.
"""

from __future__ import annotations

import functools
from ipaddress import IPv4Network
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field, StrictInt, field_validator, model_validator

from egressgw.model.fields import INT32_MAX, FieldError, Selector, parse_cidr
from egressgw.model.meta import Frozen, Resource

DEFAULT_DESTINATION = IPv4Network("0.0.0.0/0")


@functools.lru_cache(maxsize=8192)  # the decision asks once per rule and pod (~9 us a parse)
def destination_network(text: str) -> IPv4Network:
    """An IPv4 destination as a policy writes it: a CIDR or a bare IP (= /32)."""
    network = parse_cidr(text, allow_bare_ip=True)
    if not isinstance(network, IPv4Network):
        raise ValueError(f"{text}: egress gateway policy destinations must be IPv4")
    return network


class RuleDestination(Frozen):
    cidr: str | None = None
    """Kept as written (`8.8.8.8` stays `8.8.8.8`); see `EgressGatewayRule.destination_cidr`."""

    @field_validator("cidr")
    @classmethod
    def _ipv4(cls, cidr: str | None) -> str | None:
        if cidr is not None:
            destination_network(cidr)
        return cidr


def _required(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text


class EgressSpec(Frozen):
    """Which gateways to use: pods matching `selector` in namespaces matching the other one."""

    selector: Annotated[Selector, AfterValidator(_required)]
    namespace_selector: Annotated[Selector, AfterValidator(_required)]
    max_next_hops: StrictInt = Field(default=0, ge=0, le=INT32_MAX)


class EgressGatewayRule(Frozen):
    destination: RuleDestination | None = None
    description: str | None = None
    gateway: EgressSpec | None = None
    gateway_preference: Literal["None", "PreferNodeLocal"] = "None"

    @property
    def destination_cidr(self) -> IPv4Network:
        """The destination as a network: absent means 0.0.0.0/0, a bare IP means /32."""
        if self.destination is None or self.destination.cidr is None:
            return DEFAULT_DESTINATION
        return destination_network(self.destination.cidr)

    @property
    def is_noop(self) -> bool:
        """Neither a destination nor a gateway: a rule that says nothing on its own."""
        return self.destination is None and self.gateway is None


def _duplicate_destinations(rules: list[EgressGatewayRule]) -> None:
    first: dict[IPv4Network, int] = {}
    for index, rule in enumerate(rules):
        network = rule.destination_cidr
        if network in first:
            raise FieldError(
                ("rules", index, "destination", "cidr"),
                f"destination {network} is already used by rule {first[network]}:"
                " rules match by longest prefix, so each destination may appear only once",
            )
        first[network] = index


class EgressGatewayPolicySpec(Frozen):
    rules: list[EgressGatewayRule]

    @model_validator(mode="after")
    def _rules(self) -> EgressGatewayPolicySpec:
        if not self.rules:
            raise FieldError(("rules",), "No egress gateway rule is specified")
        if all(rule.is_noop for rule in self.rules):
            raise FieldError(("rules",), "no rule has a destination or a gateway")
        _duplicate_destinations(self.rules)
        return self


class EgressGatewayPolicy(Resource):
    namespaced: ClassVar[bool] = False

    kind: Literal["EgressGatewayPolicy"] = "EgressGatewayPolicy"
    api_version: Literal["projectcalico.org/v3"] = "projectcalico.org/v3"
    spec: EgressGatewayPolicySpec
