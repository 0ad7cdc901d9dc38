"""`FelixConfiguration` (projectcalico.org/v3, cluster-scoped): the egress-related knobs.

Only the fields egress gateways use are typed (reference §5); every other Felix setting is
kept as an extra so a user's whole FelixConfiguration still loads and round-trips.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, StrictInt, field_validator, model_validator

from egressgw.model.fields import UINT32_MAX, Duration
from egressgw.model.meta import Frozen, ObjectMeta, Passthrough, Resource

EgressIPSupport = Literal["Disabled", "EnabledPerNamespace", "EnabledPerNamespaceOrPerPod"]
_EGRESS_IP_SUPPORT: dict[str, EgressIPSupport] = {
    "disabled": "Disabled",
    "enabledpernamespace": "EnabledPerNamespace",
    "enabledpernamespaceorperpod": "EnabledPerNamespaceOrPerPod",
}


class RouteTableRange(Frozen):
    min: StrictInt = Field(ge=1, le=UINT32_MAX)
    max: StrictInt = Field(ge=1, le=UINT32_MAX)

    @model_validator(mode="after")
    def _ordered(self) -> RouteTableRange:
        if self.min > self.max:
            raise ValueError("min must not be greater than max")
        return self


class FelixConfigurationSpec(Passthrough):
    egress_ip_support: EgressIPSupport = Field(default="Disabled", alias="egressIPSupport")
    egress_ip_vxlan_port: StrictInt = Field(default=4790, alias="egressIPVXLANPort", ge=1, le=65535)
    egress_ip_vxlan_vni: StrictInt = Field(
        default=4097, alias="egressIPVXLANVNI", ge=1, le=2**24 - 1
    )
    egress_ip_routing_rule_priority: StrictInt = Field(
        default=100, alias="egressIPRoutingRulePriority", ge=1, le=32765
    )
    egress_ip_host_iface_pattern: str | None = Field(default=None, alias="egressIPHostIfacePattern")
    egress_gateway_poll_interval: Duration = "10s"
    egress_gateway_poll_failure_count: StrictInt = Field(default=3, ge=1)
    external_network_support: Literal["Disabled", "Enabled"] | None = None
    route_table_ranges: list[RouteTableRange] | None = None
    policy_sync_path_prefix: str | None = None
    aws_secondary_ip_support: Literal["Disabled", "Enabled", "EnabledENIPerWorkload"] = Field(
        default="Disabled", alias="awsSecondaryIPSupport"
    )
    flow_logs_flush_interval: Duration | None = None

    @field_validator("egress_ip_support", mode="before")
    @classmethod
    def _any_case(cls, value: Any) -> Any:
        # The CRD pattern is case-insensitive; keep one spelling so comparisons are simple.
        if isinstance(value, str):
            return _EGRESS_IP_SUPPORT.get(value.lower(), value)
        return value


class FelixConfiguration(Resource):
    """Felix settings; only `default` is global (`node.<name>` objects are per node)."""

    namespaced: ClassVar[bool] = False

    kind: Literal["FelixConfiguration"] = "FelixConfiguration"
    api_version: Literal["projectcalico.org/v3"] = "projectcalico.org/v3"
    spec: FelixConfigurationSpec = FelixConfigurationSpec()


def default_felix_configuration() -> FelixConfiguration:
    """What Felix uses when no `default` object exists: every field at its default."""
    return FelixConfiguration(metadata=ObjectMeta(name="default"))
