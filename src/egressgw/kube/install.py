"""The whole install, rendered from one `Values` object: the single source of truth.

Pure. `manifests(values)` gives, in apply order: the namespace, the CRDs, the service
accounts and least-privilege RBAC, the config, the node agent DaemonSet and the controller
Deployment. `egressgw kube install-manifests` prints them; the Helm chart in charts/egressgw
is generated from this module (`chart`), so both always agree.

Privileges, and why:
- agent (DaemonSet, hostNetwork): NET_ADMIN (nftables, routes, rules, tunnel devices,
  and the host's /proc/sys/net mounted writable for their sysctls), NET_RAW (ICMP probes of
  gateways), NET_BIND_SERVICE (BIRD on port 179); every other capability dropped, not
  privileged, read-only root file system, no privilege escalation. RBAC: read-only
  (get/list/watch) on the kinds the egress decision reads.
- controller (Deployment): no capabilities, non-root. RBAC: read EgressGateways and
  IPPools, write EgressGateway status and Deployments (gateways live in user namespaces),
  and in its own namespace only its Lease and its state ConfigMap. With the admission
  webhook (`webhook.enabled`): also read BGPFilters (cross-object checks), get/update only
  the `egressgw-webhook` ValidatingWebhookConfiguration (its caBundle) and only the
  `egressgw-webhook-ca` Secret (create needs no name: Kubernetes cannot restrict it by one).

The webhook (kube.webhook) judges only the kinds whose CRDs we define (beside Calico OSS:
EgressGateway and EgressGatewayPolicy; Calico's own objects are Calico's to judge).
`webhook.failurePolicy` defaults to Fail, as the webhook alone refuses unparsable selectors;
docs/kubernetes.md says what that costs when every controller replica is down.
This module must not do I/O.
"""

from __future__ import annotations

from typing import Any, Literal

import yaml
from pydantic import Field

from egressgw.kube import api
from egressgw.kube.crds import crds
from egressgw.kube.stateobject import STATE_NAME
from egressgw.model.meta import Frozen

Obj = dict[str, Any]
LEASE_NAME = "egressgw-controller"
WEBHOOK_NAME = "egressgw-webhook"  # the Service and the ValidatingWebhookConfiguration
WEBHOOK_SECRET = "egressgw-webhook-ca"
WEBHOOK_PATH = "/validate"
CONFIG_NAME = "egressgw-config"
AGENT, CONTROLLER = "egressgw-agent", "egressgw-controller"
READ = ["get", "list", "watch"]
RUN_DIR = "/run/egressgw"  # on each node


class Image(Frozen):
    repository: str = "ghcr.io/egressgw/egressgw"
    tag: str = "0.1.0"
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"


class Crds(Frozen):
    install: bool = True


class Calico(Frozen):
    oss: bool = False
    """Calico OSS is installed: it owns IPPool, BGPPeer, ... (crd.projectcalico.org/v1); we
    install no CRDs for those kinds and read them from Calico's."""


class Bgp(Frozen):
    enabled: bool = True
    """The agent runs BIRD for BGPPeers. Off beside a Calico OSS that speaks BGP itself
    (calico-node's BIRD holds port 179 and advertises the gateways' IPAM blocks)."""


class Vxlan(Frozen):
    vni: int = Field(default=4097, ge=1, le=2**24 - 1)
    port: int = Field(default=4790, ge=1, le=65535)


class Etcd(Frozen):
    endpoints: str = ""


class Controller(Frozen):
    replicas: int = Field(default=2, ge=1)


class Agent(Frozen):
    health_port: int = Field(default=9099, ge=1, le=65535)


class Probes(Frozen):
    initial_delay_seconds: int = Field(default=5, ge=0)
    period_seconds: int = Field(default=10, ge=1)
    timeout_seconds: int = Field(default=5, ge=1)
    failure_threshold: int = Field(default=3, ge=1)


class Webhook(Frozen):
    enabled: bool = True
    port: int = Field(default=9443, ge=1024, le=65535)  # the controller runs as non-root
    failure_policy: Literal["Fail", "Ignore"] = "Fail"
    """What the API server does when no replica answers: refuse the write, or let it in."""


class Aws(Frozen):
    secondary_ip_resource: bool = False


class Values(Frozen):
    """Everything an install can choose; the chart's values.yaml is this with defaults."""

    namespace: str = "egressgw-system"
    create_namespace: bool = True
    image: Image = Image()
    mode: Literal["vxlan", "native"] = "vxlan"
    """How client nodes reach gateways: VXLAN to the gateway pod, or routed (native)."""
    datastore: Literal["kubernetes", "etcd"] = "kubernetes"
    etcd: Etcd = Etcd()
    crds: Crds = Crds()
    calico: Calico = Calico()
    bgp: Bgp = Bgp()
    vxlan: Vxlan = Vxlan()
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    controller: Controller = Controller()
    agent: Agent = Agent()
    probes: Probes = Probes()
    webhook: Webhook = Webhook()
    aws: Aws = Aws()
    aks: bool = False

    def api_map(self) -> api.ApiMap:
        return api.ApiMap.beside_calico() if self.calico.oss else api.ApiMap()


def _meta(name: str, values: Values | None = None, **extra: str) -> Obj:
    meta: Obj = {"name": name, "labels": {"app.kubernetes.io/part-of": "egressgw", **extra}}
    if values is not None:
        meta["namespace"] = values.namespace
    return meta


def _rule(group: str, resources: list[str], verbs: list[str], names: list[str] | None = None) -> Obj:
    rule: Obj = {"apiGroups": [group], "resources": resources, "verbs": verbs}
    if names:
        rule["resourceNames"] = names
    return rule


def _group_rules(apis: api.ApiMap, kinds: list[str], verbs: list[str]) -> list[Obj]:
    by_group: dict[str, list[str]] = {}
    for kind in kinds:
        res = apis[kind]
        by_group.setdefault(res.group, []).append(res.plural)
    return [_rule(group, sorted(plurals), verbs) for group, plurals in sorted(by_group.items())]


def _events() -> Obj:
    return _rule("", ["events"], ["create", "patch"])


def rbac(values: Values) -> list[Obj]:
    apis = values.api_map()
    agent_kinds = [r.kind for r in api.OUR_KINDS + api.CORE_KINDS]
    hook = values.webhook.enabled
    read = ["EgressGateway", "IPPool", *(["BGPFilter"] if hook else [])]
    roles = [
        _cluster_role(AGENT, [*_group_rules(apis, agent_kinds, READ), _events()]),
        _cluster_role(CONTROLLER, [
            *_group_rules(apis, read, READ),
            _rule(api.EGRESS_GATEWAY.group, ["egressgateways/status"], ["get", "patch", "update"]),
            _rule("apps", ["deployments"], [*READ, "create", "update", "patch", "delete"]),
            _events(),
            *([_rule("admissionregistration.k8s.io", ["validatingwebhookconfigurations"],
                     ["get", "update"], [WEBHOOK_NAME])] if hook else []),
        ]),
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": _meta(CONTROLLER, values), "rules": [
             _rule("coordination.k8s.io", ["leases"], ["create"]),
             _rule("coordination.k8s.io", ["leases"], ["get", "update"], [LEASE_NAME]),
             _rule("", ["configmaps"], ["create"]),
             _rule("", ["configmaps"], [*READ, "update"], [STATE_NAME]),
             *([_rule("", ["secrets"], ["create"]),
                _rule("", ["secrets"], ["get", "update"], [WEBHOOK_SECRET])] if hook else []),
         ]},
    ]
    accounts = [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(n, values)}
                for n in (AGENT, CONTROLLER)]
    bindings = [_binding("ClusterRoleBinding", AGENT, values),
                _binding("ClusterRoleBinding", CONTROLLER, values),
                _binding("RoleBinding", CONTROLLER, values)]
    return accounts + roles + bindings


def _cluster_role(name: str, rules: list[Obj]) -> Obj:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": _meta(name), "rules": rules}


def _binding(kind: str, name: str, values: Values) -> Obj:
    role = "Role" if kind == "RoleBinding" else "ClusterRole"
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": _meta(name, values if kind == "RoleBinding" else None),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role, "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": values.namespace}],
    }


def config(values: Values) -> Obj:
    """The settings every process reads (as environment variables, `EGRESSGW_*`)."""
    data = {
        "EGRESSGW_NAMESPACE": values.namespace,
        "EGRESSGW_MODE": values.mode,
        "EGRESSGW_DATASTORE": values.datastore,
        "EGRESSGW_ETCD_ENDPOINTS": values.etcd.endpoints,
        "EGRESSGW_CALICO_OSS": str(values.calico.oss).lower(),
        "EGRESSGW_VXLAN_VNI": str(values.vxlan.vni),
        "EGRESSGW_VXLAN_PORT": str(values.vxlan.port),
        "EGRESSGW_LOG_LEVEL": values.log_level,
        "EGRESSGW_IMAGE": f"{values.image.repository}:{values.image.tag}",
        "EGRESSGW_IMAGE_PULL_POLICY": values.image.pull_policy,
        "EGRESSGW_AKS": str(values.aks).lower(),
        "EGRESSGW_AWS_SECONDARY_IP_RESOURCE": str(values.aws.secondary_ip_resource).lower(),
        "EGRESSGW_AGENT_HEALTH_PORT": str(values.agent.health_port),
        "EGRESSGW_WEBHOOK_ENABLED": str(values.webhook.enabled).lower(),
        "EGRESSGW_WEBHOOK_PORT": str(values.webhook.port),
    }
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(CONFIG_NAME, values),
            "data": data}


def _probe(values: Values, path: str, port: int | str, scheme: str = "HTTP") -> Obj:
    p = values.probes
    get: Obj = {"path": path, "port": port}
    if scheme != "HTTP":
        get["scheme"] = scheme
    return {
        "httpGet": get,
        "initialDelaySeconds": p.initial_delay_seconds,
        "periodSeconds": p.period_seconds,
        "timeoutSeconds": p.timeout_seconds,
        "failureThreshold": p.failure_threshold,
    }


def _env(*fields: tuple[str, str]) -> list[Obj]:
    return [{"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}} for name, path in fields]


def _container(values: Values, name: str, command: list[str], security: Obj) -> Obj:
    return {
        "name": name,
        "image": f"{values.image.repository}:{values.image.tag}",
        "imagePullPolicy": values.image.pull_policy,
        "command": command,
        "envFrom": [{"configMapRef": {"name": CONFIG_NAME}}],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "seccompProfile": {"type": "RuntimeDefault"},
            **security,
        },
    }


AGENT_COMMAND = [
    "egressgw", "agent",
    "--datastore", "$(EGRESSGW_DATASTORE)", "--etcd", "$(EGRESSGW_ETCD_ENDPOINTS)",
    "--node", "$(NODE_NAME)", "--transport", "$(EGRESSGW_MODE)",
    "--gateway-dir", f"{RUN_DIR}/gateways",
    "--health-port", "$(EGRESSGW_AGENT_HEALTH_PORT)", "--log-level", "$(EGRESSGW_LOG_LEVEL)",
]


def agent(values: Values) -> Obj:
    labels = {"app.kubernetes.io/name": AGENT}
    bgp = ["--bgp-dir", f"{RUN_DIR}/bird"] if values.bgp.enabled else []
    container = _container(values, "agent", [*AGENT_COMMAND, *bgp], {
        "runAsUser": 0,
        "capabilities": {"add": ["NET_ADMIN", "NET_RAW", *(["NET_BIND_SERVICE"] if bgp else [])],
                         "drop": ["ALL"]},
    })
    container.update({
        # The host's /proc/sys/net, writable: a container's own /proc/sys is read-only
        # unless privileged, and the agent sets sysctls of the tunnel devices it creates.
        "env": [*_env(("NODE_NAME", "spec.nodeName")),
                {"name": "EGRESSGW_PROC_SYS", "value": "/host/proc/sys"}],
        "readinessProbe": _probe(values, "/readiness", values.agent.health_port),
        "livenessProbe": _probe(values, "/liveness", values.agent.health_port),
        "volumeMounts": [
            {"name": "run", "mountPath": RUN_DIR},
            {"name": "sysctl-net", "mountPath": "/host/proc/sys/net"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
    })
    pod = {
        "serviceAccountName": AGENT,
        "hostNetwork": True,
        "dnsPolicy": "ClusterFirstWithHostNet",
        "priorityClassName": "system-node-critical",
        "tolerations": [{"operator": "Exists"}],
        "containers": [container],
        "volumes": [
            # Shared with the gateway pods of this node: their plans, and BIRD's files.
            {"name": "run", "hostPath": {"path": RUN_DIR, "type": "DirectoryOrCreate"}},
            {"name": "sysctl-net", "hostPath": {"path": "/proc/sys/net", "type": "Directory"}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": _meta(AGENT, values, **labels),
        "spec": {
            "selector": {"matchLabels": labels},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }


def controller(values: Values) -> Obj:
    labels = {"app.kubernetes.io/name": CONTROLLER}
    container = _container(values, "controller", ["egressgw", "kube", "controller"], {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "capabilities": {"drop": ["ALL"]},
    })
    container["env"] = _env(("POD_NAME", "metadata.name"))
    container["resources"] = {"requests": {"cpu": "20m", "memory": "64Mi"}}
    container["volumeMounts"] = [{"name": "tmp", "mountPath": "/tmp"}]
    if values.webhook.enabled:
        container["ports"] = [
            {"name": "webhook", "containerPort": values.webhook.port, "protocol": "TCP"}
        ]
        # Ready once it serves: the Service sends the API server's calls only there.
        container["readinessProbe"] = _probe(values, "/readyz", "webhook", "HTTPS")
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _meta(CONTROLLER, values, **labels),
        "spec": {
            "replicas": values.controller.replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {
                "serviceAccountName": CONTROLLER,
                "containers": [container],
                "volumes": [{"name": "tmp", "emptyDir": {}}],
            }},
        },
    }


def webhook_service(values: Values) -> Obj:
    """How the API server reaches the controller replicas' webhook (port 443 -> webhook)."""
    return {
        "apiVersion": "v1", "kind": "Service", "metadata": _meta(WEBHOOK_NAME, values),
        "spec": {
            "selector": {"app.kubernetes.io/name": CONTROLLER},
            "ports": [{"name": "https", "port": 443, "targetPort": "webhook", "protocol": "TCP"}],
        },
    }


def webhook_kinds(values: Values) -> list[api.ApiResource]:
    """The kinds the webhook judges: those we define CRDs for (with or without
    `crds.install`: managed separately, they are still ours)."""
    return [r for r in api.OUR_KINDS if not (values.calico.oss and r.kind in api.CALICO_OWNED)]


def webhook_configuration(values: Values) -> Obj:
    """The ValidatingWebhookConfiguration; the controller fills in `caBundle`."""
    by_group: dict[tuple[str, str], list[str]] = {}
    for res in webhook_kinds(values):
        by_group.setdefault((res.group, res.version), []).append(res.plural)
    rules = [{"apiGroups": [group], "apiVersions": [version], "operations": ["CREATE", "UPDATE"],
              "resources": sorted(plurals), "scope": "*"}
             for (group, version), plurals in sorted(by_group.items())]
    service = {"name": WEBHOOK_NAME, "namespace": values.namespace, "path": WEBHOOK_PATH,
               "port": 443}
    return {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": _meta(WEBHOOK_NAME),
        "webhooks": [{
            "name": "validate.egressgw.io",
            "clientConfig": {"service": service},
            "rules": rules,
            "failurePolicy": values.webhook.failure_policy,
            "matchPolicy": "Equivalent",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 5,
        }],
    }


def namespace(values: Values) -> Obj:
    # The agent needs hostNetwork and NET_ADMIN: only the `privileged` Pod Security level.
    meta = _meta(values.namespace)
    meta["labels"]["pod-security.kubernetes.io/enforce"] = "privileged"
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def manifests(values: Values) -> list[Obj]:
    """Every object of the install, in the order `kubectl apply` should see them."""
    out = [namespace(values)] if values.create_namespace else []
    if values.crds.install:
        kinds = [r.kind for r in api.OUR_KINDS
                 if not (values.calico.oss and r.kind in api.CALICO_OWNED)]
        out += crds(values.api_map(), kinds)
    out += [*rbac(values), config(values), agent(values), controller(values)]
    if values.webhook.enabled:  # last: it refuses writes until the controller answers
        out += [webhook_service(values), webhook_configuration(values)]
    return out


def render_yaml(values: Values) -> str:
    """`manifests(values)` as one multi-document YAML text."""
    return yaml.safe_dump_all(manifests(values), sort_keys=False, explicit_start=True)
