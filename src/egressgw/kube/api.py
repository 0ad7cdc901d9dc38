"""Where each kind lives in the Kubernetes API: group, version, plural, scope, subresources.

Pure. `ApiResource` names one API resource and builds its URL paths; `ApiMap` says which
resource serves each of our kinds. The default map puts every kind under the reference API
groups (`operator.tigera.io/v1`, `projectcalico.org/v3`), so the reference manifests apply
unchanged; `ApiMap.beside_calico()` reads the kinds Calico OSS already owns from Calico's
own CRDs (`crd.projectcalico.org/v1`) instead. This module must not do I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

OPERATOR_GROUP = "operator.tigera.io"
CALICO_GROUP = "projectcalico.org"
CALICO_CRD_GROUP = "crd.projectcalico.org"
CALICO_VERSION = "v3"


@dataclass(frozen=True, slots=True)
class ApiResource:
    """One resource of the Kubernetes API (`group` "" is the core group)."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    status: bool = False  # has a status subresource

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        """The URL path: a collection (name None) or one object, optionally a subresource."""
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        parts = [root]
        if self.namespaced and namespace is not None:
            parts += ["namespaces", namespace]
        parts.append(self.plural)
        if name is not None:
            parts.append(name)
            if subresource is not None:
                parts.append(subresource)
        return "/".join(parts)


def _calico(kind: str, plural: str) -> ApiResource:
    return ApiResource(CALICO_GROUP, CALICO_VERSION, plural, kind, namespaced=False)


EGRESS_GATEWAY = ApiResource(
    OPERATOR_GROUP, "v1", "egressgateways", "EgressGateway", namespaced=True, status=True
)
EGRESS_GATEWAY_POLICY = _calico("EgressGatewayPolicy", "egressgatewaypolicies")
IP_POOL = _calico("IPPool", "ippools")
IP_RESERVATION = _calico("IPReservation", "ipreservations")
BGP_CONFIGURATION = _calico("BGPConfiguration", "bgpconfigurations")
BGP_PEER = _calico("BGPPeer", "bgppeers")
BGP_FILTER = _calico("BGPFilter", "bgpfilters")
FELIX_CONFIGURATION = _calico("FelixConfiguration", "felixconfigurations")
GLOBAL_NETWORK_SET = _calico("GlobalNetworkSet", "globalnetworksets")
NAMESPACE = ApiResource("", "v1", "namespaces", "Namespace", namespaced=False, status=True)
POD = ApiResource("", "v1", "pods", "Pod", namespaced=True, status=True)
NODE = ApiResource("", "v1", "nodes", "Node", namespaced=False, status=True)

CONFIG_MAP = ApiResource("", "v1", "configmaps", "ConfigMap", namespaced=True)
DEPLOYMENT = ApiResource("apps", "v1", "deployments", "Deployment", namespaced=True, status=True)
LEASE = ApiResource("coordination.k8s.io", "v1", "leases", "Lease", namespaced=True)
EVENT = ApiResource("", "v1", "events", "Event", namespaced=True)
CRD = ApiResource(
    "apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition",
    namespaced=False, status=True,
)

OUR_KINDS: tuple[ApiResource, ...] = (
    EGRESS_GATEWAY,
    EGRESS_GATEWAY_POLICY,
    IP_POOL,
    IP_RESERVATION,
    BGP_CONFIGURATION,
    BGP_PEER,
    BGP_FILTER,
    FELIX_CONFIGURATION,
    GLOBAL_NETWORK_SET,
)
"""Kinds egressgw defines CRDs for (the model's kinds minus the core ones)."""

CALICO_OWNED = frozenset(
    {"IPPool", "IPReservation", "BGPConfiguration", "BGPPeer", "BGPFilter",
     "FelixConfiguration", "GlobalNetworkSet"}
)
"""Kinds Calico OSS already defines as CRDs (in crd.projectcalico.org/v1)."""

CORE_KINDS: tuple[ApiResource, ...] = (NAMESPACE, POD, NODE)

MODEL_API_VERSIONS: Mapping[str, str] = MappingProxyType(
    {r.kind: r.api_version for r in OUR_KINDS + CORE_KINDS}
)
"""The apiVersion the model gives each kind, wherever the cluster stores it."""


@dataclass(frozen=True)
class ApiMap:
    """Kind -> the API resource that stores it; the model's apiVersion is kept on every read."""

    resources: Mapping[str, ApiResource] = field(
        default_factory=lambda: MappingProxyType({r.kind: r for r in OUR_KINDS + CORE_KINDS})
    )

    def __getitem__(self, kind: str) -> ApiResource:
        try:
            return self.resources[kind]
        except KeyError:
            raise KeyError(f"no API resource is mapped for kind {kind!r}") from None

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(sorted(self.resources))

    @classmethod
    def beside_calico(cls) -> ApiMap:
        """Read the kinds Calico OSS owns from its crd.projectcalico.org/v1 CRDs."""
        moved = {
            kind: replace(res, group=CALICO_CRD_GROUP, version="v1") if kind in CALICO_OWNED else res
            for kind, res in cls().resources.items()
        }
        return cls(MappingProxyType(moved))
