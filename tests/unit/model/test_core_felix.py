"""FelixConfiguration, Namespace, Pod, Node and ObjectMeta."""

from __future__ import annotations

from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv6Address

import pytest
from pydantic import ValidationError

from egressgw.model import (
    FelixConfiguration,
    IPPool,
    IPPoolSpec,
    Namespace,
    Node,
    ObjectMeta,
    Pod,
    default_felix_configuration,
)
from egressgw.model.parsing import from_dict, to_dict

from .helpers import load, manifest, refusal


def test_felix_defaults() -> None:
    spec = default_felix_configuration().spec
    assert spec.egress_ip_support == "Disabled"
    assert (spec.egress_ip_vxlan_port, spec.egress_ip_vxlan_vni) == (4790, 4097)
    assert spec.egress_ip_routing_rule_priority == 100
    assert (spec.egress_gateway_poll_interval, spec.egress_gateway_poll_failure_count) == ("10s", 3)
    assert spec.aws_secondary_ip_support == "Disabled"
    assert spec.route_table_ranges is None


@pytest.mark.parametrize(
    ("written", "normal"),
    [
        ("enabledpernamespaceorperpod", "EnabledPerNamespaceOrPerPod"),
        ("ENABLEDPERNAMESPACE", "EnabledPerNamespace"),
        ("disabled", "Disabled"),
    ],
)
def test_egress_ip_support_is_case_insensitive(written: str, normal: str) -> None:
    res = load("FelixConfiguration", {"egressIPSupport": written})
    assert isinstance(res, FelixConfiguration) and res.spec.egress_ip_support == normal


def test_felix_keeps_settings_it_does_not_model() -> None:
    spec = {
        "egressIPSupport": "EnabledPerNamespace",
        "bpfEnabled": True,
        "flowLogsFileAggregationKindForAllowed": 1,
    }
    res = load("FelixConfiguration", spec)
    assert to_dict(res)["spec"]["bpfEnabled"] is True
    assert from_dict(to_dict(res)) == res


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"egressIPSupport": "Enabled"}, "spec.egressIPSupport"),
        ({"egressIPVXLANPort": 0}, "spec.egressIPVXLANPort"),
        ({"egressGatewayPollInterval": "10"}, "spec.egressGatewayPollInterval"),
        ({"egressGatewayPollFailureCount": 0}, "spec.egressGatewayPollFailureCount"),
        ({"routeTableRanges": [{"min": 250, "max": 1}]}, "spec.routeTableRanges[0]"),
    ],
)
def test_felix_refusals(spec: dict[str, object], field: str) -> None:
    assert refusal("FelixConfiguration", spec)[0] == field


def test_pod_ip_is_the_first_ipv4() -> None:
    pod = load(
        "Pod",
        {"nodeName": "node-1"},
        status={"podIP": "fd00::5", "podIPs": [{"ip": "fd00::5"}, {"ip": "10.244.1.5"}]},
    )
    assert isinstance(pod, Pod)
    assert pod.ip == IPv4Address("10.244.1.5")
    assert pod.status.pod_ip == IPv6Address("fd00::5")
    assert pod.spec.node_name == "node-1"


def test_pod_without_status_has_no_ip() -> None:
    pod = load("Pod", {"containers": [{"name": "c", "image": "busybox"}]})
    assert isinstance(pod, Pod) and pod.ip is None
    assert pod.metadata.namespace == "default"


def test_pod_status_keeps_other_fields() -> None:
    pod = load(
        "Pod", {}, status={"phase": "Running", "hostIP": "10.0.160.10", "podIP": "10.244.0.7"}
    )
    assert to_dict(pod)["status"]["phase"] == "Running"
    assert isinstance(pod, Pod) and pod.ip == IPv4Address("10.244.0.7")


def test_node_internal_ip_from_addresses_then_annotation() -> None:
    addresses = [
        {"type": "Hostname", "address": "n"},
        {"type": "InternalIP", "address": "fd00::1"},
        {"type": "InternalIP", "address": "10.1.0.4"},
    ]
    node = load(
        "Node",
        {"podCIDR": "10.244.1.0/24"},
        status={"addresses": addresses, "capacity": {"cpu": "2"}},
    )
    assert isinstance(node, Node) and node.internal_ip == IPv4Address("10.1.0.4")
    obj = manifest("Node")
    obj["metadata"]["annotations"] = {"projectcalico.org/IPv4Address": "10.1.0.5/24"}
    annotated = from_dict(obj)
    assert isinstance(annotated, Node) and annotated.internal_ip == IPv4Address("10.1.0.5")
    assert isinstance(load("Node"), Node) and load("Node").internal_ip is None  # type: ignore[attr-defined]


def test_namespace_names_are_dns_labels() -> None:
    assert isinstance(load("Namespace"), Namespace)
    obj = manifest("Namespace", name="a.b")
    with pytest.raises(Exception, match="DNS label"):
        from_dict(obj)


def test_metadata_round_trips_bookkeeping_fields() -> None:
    obj = manifest("Pod", name="gw-1")
    obj["metadata"] |= {
        "namespace": "tenant0-egw",
        "uid": "0a1b",
        "resourceVersion": "42",
        "creationTimestamp": "2024-01-01T00:00:00Z",
        "deletionTimestamp": "2024-01-01T00:01:00Z",
        "deletionGracePeriodSeconds": 60,
        "ownerReferences": [{"kind": "ReplicaSet", "name": "gw"}],
        "finalizers": ["x"],
    }
    pod = from_dict(obj)
    assert pod.metadata.deletion_timestamp == datetime(2024, 1, 1, 0, 1, tzinfo=UTC)
    assert pod.metadata.deletion_grace_period_seconds == 60
    assert to_dict(pod)["metadata"]["creationTimestamp"] == "2024-01-01T00:00:00Z"
    assert from_dict(to_dict(pod)) == pod


def test_cluster_scoped_kind_built_with_a_namespace_is_refused() -> None:
    with pytest.raises(ValidationError, match="cluster-scoped"):
        IPPool(
            metadata=ObjectMeta(name="p", namespace="default"), spec=IPPoolSpec(cidr="10.0.0.0/16")
        )
