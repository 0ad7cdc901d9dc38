"""`EgressGateway` (operator.tigera.io/v1, namespaced): a group of gateway pods.

Holds the model and the checks the operator makes on one object (reference §2.2, §2.4).
Checks that need other objects (pools exist, awsSubnetID) live in `references`.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, Field, StrictInt, model_validator

from egressgw.model.fields import Cidr, FieldError, IPv4
from egressgw.model.meta import Frozen, Passthrough, Resource

EGW_LABEL = "projectcalico.org/egw"
LogSeverity = Literal["Fatal", "Error", "Warn", "Info", "Debug", "Trace"]


class EgressGatewayIPPool(Frozen):
    """A pool the gateway pods take their IPs from, by name or by exact CIDR."""

    name: str | None = None
    cidr: Cidr | None = None

    @model_validator(mode="after")
    def _name_or_cidr(self) -> EgressGatewayIPPool:
        if self.name is None and self.cidr is None:
            raise ValueError("either name or cidr must be specified")
        return self


class LabelSelectorRequirement(Frozen):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = []


class LabelSelector(Frozen):
    """A Kubernetes (not Calico) label selector, as in topology spread constraints."""

    match_labels: dict[str, str] = {}
    match_expressions: list[LabelSelectorRequirement] = []


class TopologySpreadConstraint(Passthrough):
    """Passed through to the pod template; newer Kubernetes fields are kept as extras."""

    max_skew: StrictInt = Field(ge=1)
    topology_key: str
    when_unsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"]
    label_selector: LabelSelector | None = None


class EgressGatewayTemplateMetadata(Frozen):
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}


class EgressGatewayTemplateSpec(Frozen):
    """The subset of a pod spec the operator lets users set; sub-objects pass through."""

    node_selector: dict[str, str] = {}
    termination_grace_period_seconds: StrictInt | None = Field(default=None, ge=0)
    topology_spread_constraints: list[TopologySpreadConstraint] = []
    affinity: dict[str, Any] | None = None
    tolerations: list[dict[str, Any]] = []
    priority_class_name: str | None = None
    containers: list[dict[str, Any]] = []
    init_containers: list[dict[str, Any]] = []


class EgressGatewayTemplate(Frozen):
    metadata: EgressGatewayTemplateMetadata = EgressGatewayTemplateMetadata()
    spec: EgressGatewayTemplateSpec = EgressGatewayTemplateSpec()


def _timeout_not_below_interval(probe: str, interval: int, timeout: int) -> None:
    if timeout < interval:
        raise FieldError(
            ("timeoutSeconds",), f"{probe} probe timeout must be greater than interval"
        )


def _not_empty(items: list[Any]) -> list[Any]:
    if not items:
        raise ValueError("at least one entry is required")
    return items


class ICMPProbe(Frozen):
    """Ready while any of `ips` answers a ping within `timeout_seconds`."""

    ips: Annotated[list[IPv4], AfterValidator(_not_empty)]
    interval_seconds: StrictInt = Field(default=5, ge=0)
    timeout_seconds: StrictInt = Field(default=15, ge=0)

    @model_validator(mode="after")
    def _timeout(self) -> ICMPProbe:
        _timeout_not_below_interval("ICMP", self.interval_seconds, self.timeout_seconds)
        return self


class HTTPProbe(Frozen):
    """Ready while any of `urls` gives any HTTP response within `timeout_seconds`."""

    urls: Annotated[list[str], AfterValidator(_not_empty)]
    interval_seconds: StrictInt = Field(default=10, ge=0)
    timeout_seconds: StrictInt = Field(default=30, ge=0)

    @model_validator(mode="after")
    def _timeout(self) -> HTTPProbe:
        _timeout_not_below_interval("HTTP", self.interval_seconds, self.timeout_seconds)
        return self


class FailureDetection(Frozen):
    health_timeout_data_store_seconds: StrictInt = Field(default=90, ge=1)
    icmp_probe: ICMPProbe | None = None
    http_probe: HTTPProbe | None = None

    @model_validator(mode="after")
    def _some_probe(self) -> FailureDetection:
        if self.icmp_probe is None and self.http_probe is None:
            raise ValueError("either ICMP or HTTP probe must be configured")
        return self


class AWSEgressGateway(Frozen):
    native_ip: Literal["Enabled", "Disabled"] = Field(default="Disabled", alias="nativeIP")
    elastic_ips: list[IPv4] = Field(default=[], alias="elasticIPs")

    @model_validator(mode="after")
    def _eips_need_native_ip(self) -> AWSEgressGateway:
        if self.elastic_ips and self.native_ip != "Enabled":
            raise FieldError(("elasticIPs",), "NativeIP must be enabled when elastic IPs are used")
        return self


def _some_pool(pools: list[EgressGatewayIPPool]) -> list[EgressGatewayIPPool]:
    if not pools:
        raise ValueError("at least one IPPool must be specified")
    return pools


class EgressGatewaySpec(Frozen):
    replicas: StrictInt = Field(default=1, ge=0, le=2**31 - 1)
    ip_pools: Annotated[list[EgressGatewayIPPool], AfterValidator(_some_pool)]
    external_networks: list[str] = []
    log_severity: LogSeverity = "Info"
    template: EgressGatewayTemplate = EgressGatewayTemplate()
    egress_gateway_failure_detection: FailureDetection | None = None
    aws: AWSEgressGateway | None = None


class EgressGatewayStatus(Frozen):
    state: str | None = None
    conditions: list[dict[str, Any]] = []


class EgressGateway(Resource):
    """A group of gateway pods; the operator renders one Deployment of the same name."""

    namespaced: ClassVar[bool] = True

    kind: Literal["EgressGateway"] = "EgressGateway"
    api_version: Literal["operator.tigera.io/v1"] = "operator.tigera.io/v1"
    spec: EgressGatewaySpec
    status: EgressGatewayStatus | None = None

    @property
    def template_labels(self) -> dict[str, str]:
        """The pod labels, defaulted as the operator does when the template sets none (§2.3)."""
        labels = self.spec.template.metadata.labels
        return dict(labels) if labels else {EGW_LABEL: self.metadata.name}
