"""What the controller writes for an `EgressGateway`: its Deployment and its status.

Pure. `deployment()` renders one Deployment per EgressGateway, as the reference operator
does (reference §2.5): same name and namespace; the template labels as selector; the labels
the operator adds (`k8s-app` and the `app.kubernetes.io/*` set); the pool annotation
`cni.projectcalico.org/ipv4pools` (and the Elastic IP one); an init container that
prepares the pod's network namespace and the gateway container with NET_ADMIN and NET_RAW,
a port named `health` on 8080 and a readiness probe on `/readiness`; node selector,
tolerations, topology spread and termination grace passed through; the default zone
anti-affinity when none is given. `status()` gives the status the controller keeps:
`state` and the conditions Available, Ready and Degraded. Neither reads a clock: the time
of a transition comes in as `now`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from egressgw.calc.gateways import (
    ELASTIC_IPS_ANNOTATION,
    EXTERNAL_NETWORKS_ANNOTATION,
    GATEWAY_ANNOTATION,
    HEALTH_PORT,
    POOLS_ANNOTATION,
    ZONE_LABEL,
    labels_for,
)
from egressgw.model import EgressGateway, IPPool, resolve_pool
from egressgw.model.references import cross_object_problems

Obj = dict[str, Any]
HASH_ANNOTATION = "egressgw.io/rendered-hash"
GATEWAY_LABEL = "egressgw.io/egress-gateway"  # on Deployments we own: which EgressGateway
MANAGED_BY = ("app.kubernetes.io/managed-by", "egressgw")
AWS_SECONDARY_IP = "projectcalico.org/aws-secondary-ipv4"
CONTAINER = "egress-gateway"
PLANS = "/run/egressgw/gateways"  # host directory where the node agent writes gateway plans
GATEWAY_COMMAND = [
    "egressgw", "gateway", "--pod", "$(POD_NAMESPACE)/$(POD_NAME)", "--ip", "$(EGRESS_POD_IP)",
    "--plan-file", f"{PLANS}/$(POD_NAMESPACE).$(POD_NAME).json", "--health-port", str(HEALTH_PORT),
]
# The sysctls the gateway's plan wants (forwarding; no reverse-path filter, since
# decapsulated client traffic keeps client sources; no redirects), set once by a privileged
# init container because /proc/sys is read-only in the unprivileged gateway container.
# Setting `default` too covers the tunnel device the gateway creates later.
INIT_COMMAND = [
    "sh", "-c",
    "echo 1 > /proc/sys/net/ipv4/ip_forward && for d in all default eth0; do"
    " echo 0 > /proc/sys/net/ipv4/conf/$d/rp_filter"
    " && echo 0 > /proc/sys/net/ipv4/conf/$d/send_redirects; done",
]
INIT_CONTAINER = "egress-gateway-init"
_PROBE_FIELDS = ("periodSeconds", "timeoutSeconds", "failureThreshold", "initialDelaySeconds")


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Install-wide settings for gateway pods (from the install values)."""

    image: str
    image_pull_policy: str = "IfNotPresent"
    mode: Literal["vxlan", "native"] = "vxlan"
    vxlan_vni: int = 4097
    vxlan_port: int = 4790
    aks: bool = False  # add the AKS node affinity, as the reference operator does on AKS
    aws_secondary_ip_resource: bool = False  # request Calico's AWS secondary-IP resource
    image_pull_secrets: tuple[str, ...] = ()


def pool_references(gw: EgressGateway, pools: Sequence[IPPool]) -> list[str]:
    """The pool annotation's entries: each pool's name, or the CIDR when it names none and
    no pool has that CIDR yet (the reference writes name if set, else the CIDR)."""
    by_name = {p.metadata.name: p for p in pools}
    refs = []
    for ref in gw.spec.ip_pools:
        pool = resolve_pool(ref, by_name)
        refs.append(ref.name or (pool.metadata.name if pool is not None else str(ref.cidr)))
    return refs


def pod_annotations(gw: EgressGateway, pools: Sequence[IPPool]) -> dict[str, str]:
    """The template's annotations, then the ones the controller owns (they win)."""
    annotations = dict(gw.spec.template.metadata.annotations)
    annotations[POOLS_ANNOTATION] = json.dumps(pool_references(gw, pools))
    annotations[GATEWAY_ANNOTATION] = gw.metadata.name
    if gw.spec.aws is not None and gw.spec.aws.elastic_ips:
        annotations[ELASTIC_IPS_ANNOTATION] = json.dumps([str(e) for e in gw.spec.aws.elastic_ips])
    if gw.spec.external_networks:
        annotations[EXTERNAL_NETWORKS_ANNOTATION] = json.dumps(list(gw.spec.external_networks))
    return annotations


def default_affinity(gw: EgressGateway, aks: bool) -> Obj:
    """Prefer spreading replicas across zones; on AKS keep off virtual nodes (reference §2.2.3)."""
    affinity: Obj = {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{
                "weight": 1,
                "podAffinityTerm": {
                    "labelSelector": {"matchLabels": gw.template_labels},
                    "topologyKey": ZONE_LABEL,
                },
            }]
        }
    }
    if aks:
        affinity["nodeAffinity"] = {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{
                "matchExpressions": [
                    {"key": "type", "operator": "NotIn", "values": ["virtual-node"]},
                    {"key": "kubernetes.azure.com/cluster", "operator": "Exists"},
                ]
            }]}
        }
    return affinity


def _env(gw: EgressGateway, config: GatewayConfig) -> list[Obj]:
    def field(name: str, path: str) -> Obj:
        return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}

    env = [
        {"name": "HEALTH_PORT", "value": str(HEALTH_PORT)},
        field("POD_NAME", "metadata.name"),
        field("POD_NAMESPACE", "metadata.namespace"),
        field("EGRESS_POD_IP", "status.podIP"),
        field("EGRESS_POD_IPS", "status.podIPs"),
        {"name": "EGRESS_VXLAN_VNI", "value": str(config.vxlan_vni)},
        {"name": "EGRESS_VXLAN_PORT", "value": str(config.vxlan_port)},
        {"name": "EGRESSGW_MODE", "value": config.mode},
        {"name": "LOG_SEVERITY", "value": gw.spec.log_severity},
    ]
    return env + _probe_env(gw)


def _probe_env(gw: EgressGateway) -> list[Obj]:
    detection = gw.spec.egress_gateway_failure_detection
    if detection is None:
        return []
    env = [{"name": "HEALTH_TIMEOUT_DATASTORE",
            "value": f"{detection.health_timeout_data_store_seconds}s"}]
    if (icmp := detection.icmp_probe) is not None:
        env += [
            {"name": "ICMP_PROBE_IPS", "value": ",".join(str(ip) for ip in icmp.ips)},
            {"name": "ICMP_PROBE_INTERVAL", "value": f"{icmp.interval_seconds}s"},
            {"name": "ICMP_PROBE_TIMEOUT", "value": f"{icmp.timeout_seconds}s"},
        ]
    if (http := detection.http_probe) is not None:
        env += [
            {"name": "HTTP_PROBE_URLS", "value": ",".join(http.urls)},
            {"name": "HTTP_PROBE_INTERVAL", "value": f"{http.interval_seconds}s"},
            {"name": "HTTP_PROBE_TIMEOUT", "value": f"{http.timeout_seconds}s"},
        ]
    return env


def _override(gw: EgressGateway, name: str) -> Mapping[str, Any]:
    """The template's override for container `name` (resources, probe timings)."""
    spec = gw.spec.template.spec
    for container in [*spec.containers, *spec.init_containers]:
        if container.get("name") == name:
            return container
    return {}


def _probe(override: Mapping[str, Any] | None, default: Obj) -> Obj:
    """The probe handler is fixed; only its timing can be overridden (ProbeOverride)."""
    timing = {k: v for k, v in (override or {}).items() if k in _PROBE_FIELDS}
    return {**default, **timing}


def _resources(gw: EgressGateway, name: str, config: GatewayConfig) -> Obj:
    resources: Obj = json.loads(json.dumps(_override(gw, name).get("resources") or {}))
    aws = gw.spec.aws
    if name == CONTAINER and config.aws_secondary_ip_resource and aws and aws.native_ip == "Enabled":
        # After user overrides, so they cannot drop it (reference: addAWSResources).
        for part in ("requests", "limits"):
            resources.setdefault(part, {})[AWS_SECONDARY_IP] = "1"
    return resources


def _containers(gw: EgressGateway, config: GatewayConfig) -> tuple[Obj, Obj]:
    override = _override(gw, CONTAINER)
    readiness = _probe(override.get("readinessProbe"), {
        "httpGet": {"path": "/readiness", "port": HEALTH_PORT}, "initialDelaySeconds": 10,
    })
    main: Obj = {
        "name": CONTAINER,
        "image": config.image,
        "imagePullPolicy": config.image_pull_policy,
        "command": GATEWAY_COMMAND,
        "volumeMounts": [{"name": "plans", "mountPath": PLANS, "readOnly": True}],
        "env": _env(gw, config),
        "ports": [{"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"}],
        "readinessProbe": readiness,
        "resources": _resources(gw, CONTAINER, config),
        "securityContext": {
            "runAsUser": 0,
            "privileged": False,
            "allowPrivilegeEscalation": False,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
        },
    }
    if override.get("livenessProbe"):
        main["livenessProbe"] = _probe(override["livenessProbe"], {
            "httpGet": {"path": "/readiness", "port": HEALTH_PORT},
        })
    init: Obj = {
        "name": INIT_CONTAINER,
        "image": config.image,
        "imagePullPolicy": config.image_pull_policy,
        "command": INIT_COMMAND,
        "env": _env(gw, config),
        "resources": _resources(gw, INIT_CONTAINER, config),
        # Sysctls and the tunnel device of the pod's own network namespace, as the reference.
        "securityContext": {"privileged": True, "runAsUser": 0},
    }
    return init, main


def _pod_spec(gw: EgressGateway, config: GatewayConfig) -> Obj:
    template = gw.spec.template.spec
    init, main = _containers(gw, config)
    spec: Obj = {
        "automountServiceAccountToken": False,  # gateway pods never call the API
        "initContainers": [init],
        "containers": [main],
        "affinity": template.affinity or default_affinity(gw, config.aks),
        "volumes": [{"name": "plans", "hostPath": {"path": PLANS, "type": "DirectoryOrCreate"}}],
    }
    optional: dict[str, Any] = {
        "nodeSelector": dict(template.node_selector),
        "tolerations": list(template.tolerations),
        "priorityClassName": template.priority_class_name,
        "terminationGracePeriodSeconds": template.termination_grace_period_seconds,
        "topologySpreadConstraints": [
            c.model_dump(mode="json", by_alias=True, exclude_none=True)
            for c in template.topology_spread_constraints
        ],
        "imagePullSecrets": [{"name": s} for s in config.image_pull_secrets],
    }
    spec.update({k: v for k, v in optional.items() if v not in (None, [], {})})
    return spec


def deployment(gw: EgressGateway, pools: Sequence[IPPool], config: GatewayConfig) -> Obj:
    """The Deployment for `gw`, with a hash of itself in an annotation (to spot drift)."""
    namespace = gw.metadata.namespace or "default"
    labels = {**labels_for(gw), GATEWAY_LABEL: gw.metadata.name, MANAGED_BY[0]: MANAGED_BY[1]}
    meta: Obj = {"name": gw.metadata.name, "namespace": namespace, "labels": labels}
    if gw.metadata.uid:
        meta["ownerReferences"] = [{
            "apiVersion": gw.api_version, "kind": gw.kind, "name": gw.metadata.name,
            "uid": gw.metadata.uid, "controller": True, "blockOwnerDeletion": True,
        }]
    spec: Obj = {
        "replicas": gw.spec.replicas,
        "selector": {"matchLabels": gw.template_labels},
        "template": {
            "metadata": {"labels": labels_for(gw), "annotations": pod_annotations(gw, pools)},
            "spec": _pod_spec(gw, config),
        },
    }
    meta["annotations"] = {HASH_ANNOTATION: digest({"metadata": meta, "spec": spec})}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec}


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


# -- status -----------------------------------------------------------------------------------


def problems(gw: EgressGateway, pools: Sequence[IPPool]) -> list[str]:
    """What the operator's validation finds wrong with `gw` given the pools (reference §2.4);
    single-object rules were checked when it was read."""
    found = cross_object_problems([gw, *pools])
    return [
        f"{p.field}: {p.message}"
        for p in found
        if (p.kind, p.namespace, p.name) == (gw.kind, gw.metadata.namespace, gw.metadata.name)
    ]


DEGRADED_REASON = "Error_reconciling_Egress_Gateway"


def conditions(problems: Sequence[str], created: bool, ready: int, wanted: int) -> list[Obj]:
    """Available, Ready and Degraded, without times (see `status`)."""
    if problems:
        message = "; ".join(problems)
        return [
            _condition("Available", False, "ReconcileFailed", message),
            _condition("Ready", False, "ReconcileFailed", message),
            _condition("Degraded", True, DEGRADED_REASON, message),
        ]
    return [
        _condition("Available", created, "AllObjectsAvailable" if created else "Pending",
                   "All objects available" if created else "Deployment not created yet"),
        _condition("Ready", created and ready >= wanted,
                   "AllReplicasReady" if ready >= wanted else "ReplicasNotReady",
                   f"{ready}/{wanted} replicas ready"),
        _condition("Degraded", False, "AllObjectsAvailable", "No errors"),
    ]


def _condition(kind: str, status: bool, reason: str, message: str) -> Obj:
    return {"type": kind, "status": "True" if status else "False", "reason": reason,
            "message": message}


def status(
    gw: EgressGateway, new: Sequence[Obj], now: str
) -> Obj:
    """The status to write: `new` conditions, each keeping its lastTransitionTime unless
    its status changed, and the generation they describe."""
    before = {c.get("type"): c for c in (gw.status.conditions if gw.status else [])}
    generation = gw.metadata.generation or 0
    out = []
    for condition in new:
        old = before.get(condition["type"])
        changed = old is None or old.get("status") != condition["status"]
        since = now if changed or old is None else old.get("lastTransitionTime", now)
        out.append({**condition, "lastTransitionTime": since, "observedGeneration": generation})
    degraded = any(c["type"] == "Degraded" and c["status"] == "True" for c in new)
    return {"state": "Degraded" if degraded else "Ready", "conditions": out}
