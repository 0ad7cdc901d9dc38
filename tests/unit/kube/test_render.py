"""The Deployment and status rendered for an EgressGateway, checked field by field and
against the Kubernetes apps/v1 schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import kubernetes_validate
import pytest

from egressgw.kube import render
from egressgw.manifests import read_resources
from egressgw.model import EgressGateway, EgressGatewayStatus, IPPool, Resource
from egressgw.model.parsing import from_dict, to_dict

ROOT = Path(__file__).resolve().parents[3]
CONFIG = render.GatewayConfig(image="ghcr.io/egressgw/egressgw:0.1.0")


def _load(example: str) -> dict[tuple[str, str | None, str], Resource]:
    return {r.key: r for r in read_resources([ROOT / "examples" / example])}


AZURE = _load("azure-hub-spoke")
AWS = _load("aws-public-ip")
TENANT0 = cast(EgressGateway, AZURE[("EgressGateway", "tenant0-egw", "tenant0-egw")])
AZURE_POOLS = [r for r in AZURE.values() if isinstance(r, IPPool)]
EGW1 = cast(EgressGateway, AWS[("EgressGateway", "default", "egw-1")])
AWS_POOLS = [r for r in AWS.values() if isinstance(r, IPPool)]


def _gateway(**spec: Any) -> EgressGateway:
    base = to_dict(TENANT0)
    base["spec"].update(spec)
    return cast(EgressGateway, from_dict(base))


def _pod(dep: dict[str, Any]) -> dict[str, Any]:
    return cast(dict[str, Any], dep["spec"]["template"])


def _main(dep: dict[str, Any]) -> dict[str, Any]:
    (container,) = _pod(dep)["spec"]["containers"]
    return cast(dict[str, Any], container)


def test_deployment_is_what_the_reference_operator_renders() -> None:
    dep = render.deployment(TENANT0, AZURE_POOLS, CONFIG)
    kubernetes_validate.validate(dep, "1.31", strict=True)
    assert (dep["metadata"]["name"], dep["metadata"]["namespace"]) == ("tenant0-egw", "tenant0-egw")
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["selector"] == {"matchLabels": {"tenant": "tenant0-egw"}}
    labels = _pod(dep)["metadata"]["labels"]
    assert labels["k8s-app"] == "tenant0-egw" and labels["tenant"] == "tenant0-egw"
    assert labels["app.kubernetes.io/name"] == "tenant0-egw"
    annotations = _pod(dep)["metadata"]["annotations"]
    assert json.loads(annotations["cni.projectcalico.org/ipv4pools"]) == ["tenant0-pool"]
    main = _main(dep)
    assert main["ports"] == [{"name": "health", "containerPort": 8080, "protocol": "TCP"}]
    assert main["readinessProbe"] == {
        "httpGet": {"path": "/readiness", "port": 8080}, "initialDelaySeconds": 10,
    }
    assert main["securityContext"]["capabilities"] == {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]}
    assert not main["securityContext"]["privileged"]
    spec = _pod(dep)["spec"]
    assert spec["terminationGracePeriodSeconds"] == 0
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert spec["topologySpreadConstraints"] == [{
        "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"tenant": "tenant0-egw"}, "matchExpressions": []},
    }]
    term = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["podAffinityTerm"]["topologyKey"] == "topology.kubernetes.io/zone"
    assert spec["initContainers"][0]["securityContext"]["privileged"] is True
    env = {e["name"]: e for e in main["env"]}
    assert env["EGRESS_VXLAN_VNI"]["value"] == "4097"
    assert env["EGRESS_POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}


def test_elastic_ips_and_the_aws_secondary_ip_resource() -> None:
    config = render.GatewayConfig(image="x", aws_secondary_ip_resource=True)
    dep = render.deployment(EGW1, AWS_POOLS, config)
    annotations = _pod(dep)["metadata"]["annotations"]
    assert json.loads(annotations["cni.projectcalico.org/awsElasticIPs"]) == ["198.51.100.11"]
    assert _main(dep)["resources"]["limits"] == {"projectcalico.org/aws-secondary-ipv4": "1"}
    assert _main(render.deployment(EGW1, AWS_POOLS, CONFIG))["resources"] == {}  # off by default


def test_pool_by_cidr_is_named_once_the_pool_exists() -> None:
    gw = _gateway(ipPools=[{"cidr": "10.99.0.0/29"}])
    alone = render.pod_annotations(gw, [])
    named = render.pod_annotations(gw, AZURE_POOLS)
    assert json.loads(alone["cni.projectcalico.org/ipv4pools"]) == ["10.99.0.0/29"]
    assert json.loads(named["cni.projectcalico.org/ipv4pools"]) == ["tenant0-pool"]


def test_controller_owned_annotations_win_over_the_template() -> None:
    base = to_dict(TENANT0)
    base["spec"]["template"]["metadata"]["annotations"] = {
        "cni.projectcalico.org/ipv4pools": '["other"]', "team": "red",
    }
    annotations = render.pod_annotations(cast(EgressGateway, from_dict(base)), AZURE_POOLS)
    assert annotations["team"] == "red"
    assert json.loads(annotations["cni.projectcalico.org/ipv4pools"]) == ["tenant0-pool"]


def test_failure_detection_probe_overrides_and_affinity() -> None:
    base = to_dict(TENANT0)
    base["spec"]["egressGatewayFailureDetection"] = {
        "icmpProbe": {"ips": ["192.0.2.1"], "intervalSeconds": 2, "timeoutSeconds": 6},
        "httpProbe": {"urls": ["http://192.0.2.2/"]},
    }
    base["spec"]["template"]["spec"]["containers"] = [{
        "name": "egress-gateway",
        "readinessProbe": {"periodSeconds": 3, "exec": {"command": ["true"]}},
        "resources": {"requests": {"cpu": "100m"}},
    }]
    base["spec"]["template"]["spec"]["affinity"] = {"nodeAffinity": {}}
    dep = render.deployment(cast(EgressGateway, from_dict(base)), AZURE_POOLS, CONFIG)
    main = _main(dep)
    env = {e["name"]: e.get("value") for e in main["env"]}
    assert (env["ICMP_PROBE_IPS"], env["ICMP_PROBE_INTERVAL"], env["ICMP_PROBE_TIMEOUT"]) == (
        "192.0.2.1", "2s", "6s")
    assert (env["HTTP_PROBE_URLS"], env["HTTP_PROBE_TIMEOUT"]) == ("http://192.0.2.2/", "30s")
    assert env["HEALTH_TIMEOUT_DATASTORE"] == "90s"
    assert main["readinessProbe"]["periodSeconds"] == 3
    assert "exec" not in main["readinessProbe"]  # only timings can be overridden
    assert main["resources"] == {"requests": {"cpu": "100m"}}
    assert _pod(dep)["spec"]["affinity"] == {"nodeAffinity": {}}


def test_aks_adds_the_node_affinity() -> None:
    dep = render.deployment(TENANT0, AZURE_POOLS, render.GatewayConfig(image="x", aks=True))
    terms = _pod(dep)["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert {e["key"] for e in terms[0]["matchExpressions"]} == {"type", "kubernetes.azure.com/cluster"}


def test_hash_changes_with_what_matters() -> None:
    one = render.deployment(TENANT0, AZURE_POOLS, CONFIG)
    again = render.deployment(TENANT0, AZURE_POOLS, CONFIG)
    three = render.deployment(_gateway(replicas=3), AZURE_POOLS, CONFIG)
    hashed = [d["metadata"]["annotations"][render.HASH_ANNOTATION] for d in (one, again, three)]
    assert hashed[0] == hashed[1] != hashed[2]


def test_problems_name_the_missing_pool() -> None:
    assert render.problems(TENANT0, AZURE_POOLS) == []
    assert render.problems(TENANT0, []) == ["spec.ipPools[0].name: IPPool 'tenant0-pool' not found"]


@pytest.mark.parametrize("problems", [[], ["spec.ipPools[0].name: IPPool 'x' not found"]])
def test_status_keeps_transition_times_of_unchanged_conditions(problems: list[str]) -> None:
    first = render.status(TENANT0, render.conditions(problems, True, 0, 2), "2026-01-01T00:00:00Z")
    gw = TENANT0.model_copy(update={"status": EgressGatewayStatus.model_validate(first)})
    later = render.status(gw, render.conditions(problems, True, 2, 2), "2026-01-01T00:05:00Z")
    times = {c["type"]: c["lastTransitionTime"] for c in later["conditions"]}
    ready_changed = not problems
    assert times["Degraded"] == "2026-01-01T00:00:00Z"
    assert times["Ready"] == ("2026-01-01T00:05:00Z" if ready_changed else "2026-01-01T00:00:00Z")
    assert later["state"] == ("Degraded" if problems else "Ready")
    degraded = next(c for c in later["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == ("True" if problems else "False")
    if problems:
        assert degraded["reason"] == "Error_reconciling_Egress_Gateway"
