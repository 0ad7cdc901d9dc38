"""Core Kubernetes objects egressgw reads: `Namespace`, `Pod` and `Node` (apiVersion v1).

Only the fields the egress decision needs are typed; the rest of a pod or node passes
through. Egress annotations are NOT checked here: Calico treats a bad annotation selector as
no annotation, so the decision interprets them.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface
from typing import Any, ClassVar, Literal

from pydantic import Field, StrictBool, field_validator

from egressgw.model.fields import Cidr, FieldError, IPAddr, check_dns_label
from egressgw.model.meta import Frozen, ObjectMeta, Passthrough, Resource

NODE_IPV4_ANNOTATION = "projectcalico.org/IPv4Address"


class Namespace(Resource):
    namespaced: ClassVar[bool] = False

    kind: Literal["Namespace"] = "Namespace"
    api_version: Literal["v1"] = "v1"
    spec: dict[str, Any] | None = None
    status: dict[str, Any] | None = None

    @field_validator("metadata")
    @classmethod
    def _label_name(cls, metadata: ObjectMeta) -> ObjectMeta:
        try:
            check_dns_label(metadata.name)  # namespace names are labels, not subdomains
        except ValueError as err:
            raise FieldError(("name",), str(err)) from None
        return metadata


class PodSpec(Passthrough):
    node_name: str | None = None
    host_network: StrictBool | None = None


class PodIP(Frozen):
    ip: IPAddr


class PodStatus(Passthrough):
    pod_ip: IPAddr | None = Field(default=None, alias="podIP")
    pod_ips: list[PodIP] = Field(default=[], alias="podIPs")


class Pod(Resource):
    namespaced: ClassVar[bool] = True

    kind: Literal["Pod"] = "Pod"
    api_version: Literal["v1"] = "v1"
    spec: PodSpec = PodSpec()
    status: PodStatus = PodStatus()

    @property
    def ip(self) -> IPv4Address | None:
        """The pod's first IPv4 address (egress gateways steer IPv4 only)."""
        candidates = [entry.ip for entry in self.status.pod_ips] + [self.status.pod_ip]
        return next((ip for ip in candidates if isinstance(ip, IPv4Address)), None)


class NodeAddress(Frozen):
    type: str
    address: str


class NodeSpec(Passthrough):
    pod_cidr: Cidr | None = Field(default=None, alias="podCIDR")
    pod_cidrs: list[Cidr] = Field(default=[], alias="podCIDRs")


class NodeStatus(Passthrough):
    addresses: list[NodeAddress] = []


class Node(Resource):
    namespaced: ClassVar[bool] = False

    kind: Literal["Node"] = "Node"
    api_version: Literal["v1"] = "v1"
    spec: NodeSpec = NodeSpec()
    status: NodeStatus = NodeStatus()

    @property
    def internal_ip(self) -> IPv4Address | None:
        """The node's IPv4: its first InternalIP, else Calico's IPv4Address annotation."""
        for entry in self.status.addresses:
            if entry.type == "InternalIP" and (found := _ipv4(entry.address)):
                return found
        annotation = self.metadata.annotations.get(NODE_IPV4_ANNOTATION)
        return None if annotation is None else _ipv4(annotation)


def _ipv4(text: str) -> IPv4Address | None:
    """An IPv4 address from `a.b.c.d` or `a.b.c.d/len`; None for anything else."""
    try:
        return IPv4Interface(text).ip
    except ValueError:
        return None
