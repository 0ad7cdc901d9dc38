"""EgressGateway: defaults, the operator's single-object checks, passthrough of the template."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

import pytest
from pydantic import ValidationError

from egressgw.model import (
    EGW_LABEL,
    AWSEgressGateway,
    EgressGateway,
    EgressGatewayIPPool,
    EgressGatewaySpec,
    ObjectMeta,
)
from egressgw.model.parsing import to_dict

from .helpers import load, refusal

POOLS = {"ipPools": [{"name": "egress-pool"}]}


def gateway(**spec: Any) -> EgressGateway:
    res = load("EgressGateway", POOLS | spec)
    assert isinstance(res, EgressGateway)
    return res


def test_defaults() -> None:
    gw = gateway()
    assert gw.metadata.namespace == "default"
    assert (gw.spec.replicas, gw.spec.log_severity, gw.spec.external_networks) == (1, "Info", [])
    assert gw.spec.aws is None and gw.spec.egress_gateway_failure_detection is None
    assert gw.status is None


def test_template_labels_default_to_the_operator_label() -> None:
    assert gateway().template_labels == {EGW_LABEL: "x"}
    labelled = gateway(template={"metadata": {"labels": {"egress-code": "red"}}})
    assert labelled.template_labels == {"egress-code": "red"}


def test_probe_defaults() -> None:
    detection = gateway(
        egressGatewayFailureDetection={
            "icmpProbe": {"ips": ["192.0.2.1"]},
            "httpProbe": {"urls": ["http://192.0.2.1"]},
        }
    ).spec.egress_gateway_failure_detection
    assert detection is not None and detection.icmp_probe and detection.http_probe
    assert detection.health_timeout_data_store_seconds == 90
    assert (detection.icmp_probe.interval_seconds, detection.icmp_probe.timeout_seconds) == (5, 15)
    assert (detection.http_probe.interval_seconds, detection.http_probe.timeout_seconds) == (10, 30)
    assert detection.icmp_probe.ips == [IPv4Address("192.0.2.1")]


def test_aws_defaults_native_ip_disabled() -> None:
    aws = gateway(aws={}).spec.aws
    assert aws == AWSEgressGateway(native_ip="Disabled", elastic_ips=[])


def test_quick_reference_object_is_accepted() -> None:
    gw = gateway(
        replicas=2,
        logSeverity="Info",
        ipPools=[{"name": "egress-red"}, {"cidr": "10.10.10.0/30"}],
        externalNetworks=["red"],
        egressGatewayFailureDetection={
            "healthTimeoutDataStoreSeconds": 90,
            "icmpProbe": {"ips": ["192.0.2.1"], "intervalSeconds": 5, "timeoutSeconds": 15},
            "httpProbe": {
                "urls": ["http://example.com"],
                "intervalSeconds": 10,
                "timeoutSeconds": 30,
            },
        },
        aws={"nativeIP": "Enabled", "elasticIPs": ["198.51.100.3", "198.51.100.4"]},
        template={
            "metadata": {"labels": {"egress-code": "red"}, "annotations": {}},
            "spec": {
                "nodeSelector": {},
                "affinity": {},
                "tolerations": [],
                "priorityClassName": "",
                "terminationGracePeriodSeconds": 60,
                "topologySpreadConstraints": [],
                "containers": [
                    {
                        "name": "egress-gateway",
                        "resources": {},
                        "readinessProbe": {"periodSeconds": 3},
                    }
                ],
                "initContainers": [{"name": "egress-gateway-init", "resources": {}}],
            },
        },
    )
    assert gw.spec.ip_pools[1].cidr is not None and str(gw.spec.ip_pools[1].cidr) == "10.10.10.0/30"
    assert gw.spec.template.spec.containers[0]["readinessProbe"] == {"periodSeconds": 3}
    written = to_dict(gw)
    assert written["spec"]["aws"] == {
        "nativeIP": "Enabled",
        "elasticIPs": ["198.51.100.3", "198.51.100.4"],
    }


def test_status_sits_beside_spec() -> None:
    status = {"state": "Ready", "conditions": [{"type": "Available", "status": "True"}]}
    res = load("EgressGateway", POOLS, status=status)
    assert isinstance(res, EgressGateway) and res.status and res.status.state == "Ready"
    assert to_dict(res)["status"] == status


def test_topology_spread_constraints_keep_newer_fields() -> None:
    tsc = {
        "maxSkew": 1,
        "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "DoNotSchedule",
        "minDomains": 2,
    }
    gw = gateway(template={"spec": {"topologySpreadConstraints": [tsc]}})
    assert to_dict(gw)["spec"]["template"]["spec"]["topologySpreadConstraints"] == [tsc]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"replicas": -1}, "spec.replicas"),
        ({"logSeverity": "Warning"}, "spec.logSeverity"),
        ({"ipPools": [{"cidr": "10.0.0.1/30"}]}, "spec.ipPools[0].cidr"),
        ({"template": {"spec": {"hostNetwork": True}}}, "spec.template.spec.hostNetwork"),
        ({"template": {"metadata": {"name": "x"}}}, "spec.template.metadata.name"),
        ({"aws": {"nativeIP": "enabled"}}, "spec.aws.nativeIP"),
        ({"aws": {"nativeIP": "Enabled", "elasticIPs": ["2001:db8::1"]}}, "spec.aws.elasticIPs[0]"),
        (
            {"egressGatewayFailureDetection": {"icmpProbe": {"ips": []}}},
            "spec.egressGatewayFailureDetection.icmpProbe.ips",
        ),
        (
            {"egressGatewayFailureDetection": {"httpProbe": {}}},
            "spec.egressGatewayFailureDetection.httpProbe.urls",
        ),
        (
            {
                "egressGatewayFailureDetection": {
                    "healthTimeoutDataStoreSeconds": 0,
                    "icmpProbe": {"ips": ["192.0.2.1"]},
                }
            },
            "spec.egressGatewayFailureDetection.healthTimeoutDataStoreSeconds",
        ),
    ],
)
def test_refusals(spec: dict[str, Any], field: str) -> None:
    assert refusal("EgressGateway", POOLS | spec)[0] == field


def test_spec_is_required() -> None:
    assert refusal("EgressGateway") == ("spec", "required field is missing")


def test_built_in_python_with_snake_case_names() -> None:
    gw = EgressGateway(
        metadata=ObjectMeta(name="egw-1"),
        spec=EgressGatewaySpec(ip_pools=[EgressGatewayIPPool(name="p")], replicas=3),
    )
    assert gw.key.namespace == "default"
    assert gw.spec.replicas == 3
    with pytest.raises(ValidationError):
        gw.spec.replicas = 4  # type: ignore[misc]
