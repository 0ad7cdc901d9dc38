"""`BGPConfiguration` and `BGPPeer` (projectcalico.org/v3, cluster-scoped).

Holds the models and the single-object rules of calico-validation.md §3. Whether a peer's
filters exist is checked in `references`; what the peerings mean is the BGP plan's job.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import ClassVar, Literal

from pydantic import Field, StrictBool, StrictInt, field_validator, model_validator

from egressgw.model.fields import (
    INT32_MAX,
    Address,
    AnySelector,
    ASNumber,
    Cidr,
    Community,
    DNSSubdomain,
    Duration,
    FieldError,
    IPAddr,
    parse_ip,
)
from egressgw.model.meta import Frozen, Passthrough, Resource


class ServiceCIDR(Frozen):
    cidr: Cidr


class CommunityKVPair(Frozen):
    name: str
    value: Community


class PrefixAdvertisement(Frozen):
    cidr: Cidr
    communities: list[str] = []


class BGPConfigurationSpec(Passthrough):
    """The global (`default`) or per-node (`node.<name>`) BGP settings; others pass through."""

    log_severity_screen: str = "Info"
    node_to_node_mesh_enabled: StrictBool = True
    as_number: ASNumber = 64512
    service_cluster_ips: list[ServiceCIDR] = Field(default=[], alias="serviceClusterIPs")
    service_external_ips: list[ServiceCIDR] = Field(default=[], alias="serviceExternalIPs")
    service_load_balancer_ips: list[ServiceCIDR] = Field(default=[], alias="serviceLoadBalancerIPs")
    communities: list[CommunityKVPair] = []
    prefix_advertisements: list[PrefixAdvertisement] = []
    listen_port: StrictInt = Field(default=179, ge=1, le=65535)


class BGPConfiguration(Resource):
    namespaced: ClassVar[bool] = False

    kind: Literal["BGPConfiguration"] = "BGPConfiguration"
    api_version: Literal["projectcalico.org/v3"] = "projectcalico.org/v3"
    spec: BGPConfigurationSpec = BGPConfigurationSpec()


_HOST_PORT = re.compile(r"(?:\[(?P<bracketed>[^\]]*)\]|(?P<host>[0-9.]*)):(?P<port>[0-9]*)")


def split_peer_ip(text: str) -> tuple[Address, int | None]:
    """`IP`, `IPv4:port` or `[IP]:port` -> (address, port or None), as Calico accepts them."""
    try:
        return parse_ip(text), None
    except ValueError:
        pass
    match = _HOST_PORT.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} must be an IP, IPv4:port or [IPv6]:port")
    port = int(match["port"]) if match["port"] else 0
    if not 1 <= port <= 65535:
        raise ValueError(f"{text!r}: the port must be between 1 and 65535")
    host = match["bracketed"] if match["bracketed"] is not None else match["host"]
    return parse_ip(host), port


class SecretKeyRef(Frozen):
    name: str | None = None
    key: str
    optional: StrictBool | None = None


class BGPPassword(Frozen):
    secret_key_ref: SecretKeyRef | None = None


class BGPPeerSpec(Frozen):
    node: DNSSubdomain | None = Field(default=None, max_length=253)
    node_selector: AnySelector | None = None
    peer_ip: str | None = Field(default=None, alias="peerIP", max_length=64)
    peer_selector: AnySelector | None = None
    as_number: ASNumber | None = None
    local_as_number: ASNumber | None = Field(default=None, alias="localASNumber")
    keep_original_next_hop: StrictBool | None = None
    next_hop_mode: Literal["Auto", "Self", "Keep"] | None = None
    reachable_by: IPAddr | None = None
    filters: list[DNSSubdomain] = []
    source_address: Literal["UseNodeIP", "None"] | None = None
    password: BGPPassword | None = None
    failure_detection_mode: Literal["None", "BFDIfDirectlyConnected"] | None = None
    restart_mode: Literal["GracefulRestart", "LongLivedGracefulRestart"] | None = None
    max_restart_time: Duration | None = None
    bird_gateway_mode: Literal["Recursive", "DirectIfDirectlyConnected"] | None = None
    keepalive_time: Duration | None = None
    num_allowed_local_as_numbers: StrictInt | None = Field(
        default=None, alias="numAllowedLocalASNumbers", ge=0, le=INT32_MAX
    )
    ttl_security: StrictInt | None = Field(default=None, ge=0, le=255)
    external_network: str | None = None
    local_workload_selector: AnySelector | None = None
    reverse_peering: Literal["Auto", "Manual"] | None = None

    @property
    def peer_address(self) -> Address | None:
        return None if self.peer_ip is None else split_peer_ip(self.peer_ip)[0]

    @property
    def peer_port(self) -> int | None:
        return None if self.peer_ip is None else split_peer_ip(self.peer_ip)[1]

    @field_validator("peer_ip")
    @classmethod
    def _peer_ip(cls, text: str | None) -> str | None:
        if text is not None:
            split_peer_ip(text)
        return text

    @model_validator(mode="after")
    def _rules(self) -> BGPPeerSpec:
        for check in _CHECKS:
            check(self)
        return self


def _exclusive(spec: BGPPeerSpec) -> None:
    if spec.node and spec.node_selector:
        raise FieldError(("nodeSelector",), "node and nodeSelector cannot both be set")
    if spec.peer_ip and spec.peer_selector:
        raise FieldError(("peerSelector",), "peerIP and peerSelector cannot both be set")
    if spec.peer_selector and spec.as_number:
        raise FieldError(("asNumber",), "asNumber must be empty when peerSelector is set")


def _local_workloads(spec: BGPPeerSpec) -> None:
    if not spec.local_workload_selector:
        return
    if not spec.as_number:
        raise FieldError(("asNumber",), "asNumber is required when localWorkloadSelector is set")
    if spec.peer_ip or spec.peer_selector:
        raise FieldError(
            ("localWorkloadSelector",),
            "localWorkloadSelector cannot be set together with peerIP or peerSelector",
        )


def _reachable_by(spec: BGPPeerSpec) -> None:
    if spec.reachable_by is None:
        return
    if spec.peer_address is None:
        raise FieldError(("reachableBy",), "reachableBy requires peerIP")
    if spec.peer_address.version != spec.reachable_by.version:
        raise FieldError(("reachableBy",), "ReachableBy and PeerIP address family mismatched")


def _next_hop(spec: BGPPeerSpec) -> None:
    if spec.keep_original_next_hop and spec.next_hop_mode is not None:
        raise FieldError(
            ("keepOriginalNextHop",),
            "keepOriginalNextHop and nextHopMode cannot both be set; use nextHopMode: Keep",
        )


_CHECKS: tuple[Callable[[BGPPeerSpec], None], ...] = (
    _exclusive,
    _local_workloads,
    _reachable_by,
    _next_hop,
)


class BGPPeer(Resource):
    namespaced: ClassVar[bool] = False

    kind: Literal["BGPPeer"] = "BGPPeer"
    api_version: Literal["projectcalico.org/v3"] = "projectcalico.org/v3"
    spec: BGPPeerSpec = BGPPeerSpec()
