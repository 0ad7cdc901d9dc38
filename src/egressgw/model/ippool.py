"""`IPPool` and `IPReservation` (projectcalico.org/v3, cluster-scoped): where addresses come from.

Holds the models and every single-object rule of calico-validation.md §1 (the Go tags, CRD
defaults and CEL rules together). Overlaps between pools are checked in `references`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Literal

from pydantic import Field, StrictBool, StrictInt, field_validator, model_validator

from egressgw.model.fields import LINK_LOCAL, Cidr, CidrOrIP, FieldError, Selector
from egressgw.model.meta import Frozen, Resource

AllowedUse = Literal["Workload", "Tunnel", "LoadBalancer", "HostSecondaryInterface", "L2Workload"]
EncapMode = Literal["Never", "Always", "CrossSubnet"]
DEFAULT_ALLOWED_USES: tuple[AllowedUse, ...] = ("Tunnel", "Workload")
DEFAULT_BLOCK_SIZE = {4: 26, 6: 122}
BLOCK_SIZE_RANGE = {4: range(20, 33), 6: range(116, 129)}


def _enabled(mode: EncapMode | None) -> bool:
    return mode not in (None, "Never")


class IPPoolSpec(Frozen):
    cidr: Cidr
    block_size: StrictInt | None = Field(default=None, ge=0, le=128)
    node_selector: Selector = "all()"
    namespace_selector: Selector | None = None
    vxlan_mode: EncapMode | None = None
    ipip_mode: EncapMode | None = None
    nat_outgoing: StrictBool = False
    disabled: StrictBool = False
    disable_bgp_export: StrictBool = Field(default=False, alias="disableBGPExport")
    allowed_uses: list[AllowedUse] = Field(default=[], max_length=10)
    aws_subnet_id: str | None = Field(default=None, alias="awsSubnetID")
    assignment_mode: Literal["Automatic", "Manual"] = "Automatic"

    @property
    def effective_block_size(self) -> int:
        """The block size IPAM uses: as given, or 26 (IPv4) / 122 (IPv6) when 0 or absent."""
        return self.block_size or DEFAULT_BLOCK_SIZE[self.cidr.version]

    @property
    def effective_allowed_uses(self) -> tuple[AllowedUse, ...]:
        """The uses allowed: as given, or Tunnel and Workload when empty."""
        return tuple(self.allowed_uses) or DEFAULT_ALLOWED_USES

    @field_validator("allowed_uses")
    @classmethod
    def _distinct(cls, uses: list[AllowedUse]) -> list[AllowedUse]:
        if len(set(uses)) != len(uses):
            raise ValueError("allowedUses must not repeat a value")
        return uses

    @model_validator(mode="after")
    def _rules(self) -> IPPoolSpec:
        for check in _CHECKS:
            check(self)
        return self


def _not_link_local(spec: IPPoolSpec) -> None:
    for reserved in LINK_LOCAL:
        if spec.cidr.network_address in reserved or reserved.network_address in spec.cidr:
            raise FieldError(
                ("cidr",), f"IP pool CIDR {spec.cidr} must not overlap the link-local {reserved}"
            )


def _block_size(spec: IPPoolSpec) -> None:
    if spec.block_size and spec.block_size not in BLOCK_SIZE_RANGE[spec.cidr.version]:
        raise FieldError(
            ("blockSize",),
            "blockSize must be between 20 and 32 for IPv4 pools,"
            " and between 116 and 128 for IPv6 pools",
        )


def _pool_holds_a_block(spec: IPPoolSpec) -> None:
    if not spec.disabled and spec.cidr.prefixlen > spec.effective_block_size:
        raise FieldError(
            ("cidr",),
            f"IP pool size is too small for use with Calico IPAM: a /{spec.cidr.prefixlen} pool"
            f" is smaller than one /{spec.effective_block_size} block"
            " (use a larger pool, a larger blockSize prefix, or set disabled: true)",
        )


def _encapsulation(spec: IPPoolSpec) -> None:
    if spec.cidr.version == 6 and _enabled(spec.ipip_mode):
        raise FieldError(("ipipMode",), "IPIP is not supported on an IPv6 pool")
    if _enabled(spec.ipip_mode) and _enabled(spec.vxlan_mode):
        raise FieldError(("vxlanMode",), "ipipMode and vxlanMode cannot both be enabled")


def _selectors(spec: IPPoolSpec) -> None:
    if spec.namespace_selector and "Tunnel" in spec.allowed_uses:
        raise FieldError(
            ("namespaceSelector",), "namespaceSelector may not be set when allowedUses has Tunnel"
        )


def _load_balancer(spec: IPPoolSpec) -> None:
    if "LoadBalancer" not in spec.allowed_uses:
        return
    if {"Workload", "Tunnel"} & set(spec.allowed_uses):
        raise FieldError(
            ("allowedUses",), "LoadBalancer cannot be combined with Workload or Tunnel"
        )
    if _enabled(spec.ipip_mode) or _enabled(spec.vxlan_mode):
        raise FieldError(
            ("allowedUses",), "IP Pool with AllowedUse LoadBalancer cannot use IPIP or VXLAN"
        )
    if spec.disable_bgp_export:
        raise FieldError(
            ("disableBGPExport",), "IP Pool with AllowedUse LoadBalancer cannot disable BGP export"
        )
    if spec.node_selector != "all()":
        raise FieldError(
            ("nodeSelector",),
            "IP Pool with AllowedUse LoadBalancer must have nodeSelector set to all()",
        )


_CHECKS: tuple[Callable[[IPPoolSpec], None], ...] = (
    _not_link_local,
    _block_size,
    _pool_holds_a_block,
    _encapsulation,
    _selectors,
    _load_balancer,
)


class IPPool(Resource):
    namespaced: ClassVar[bool] = False

    kind: Literal["IPPool"] = "IPPool"
    api_version: Literal["projectcalico.org/v3"] = "projectcalico.org/v3"
    spec: IPPoolSpec


class IPReservationSpec(Frozen):
    reserved_cidrs: list[CidrOrIP] = Field(default=[], alias="reservedCIDRs")


class IPReservation(Resource):
    """Addresses IPAM must never hand out (on AWS: each subnet's first four and last)."""

    namespaced: ClassVar[bool] = False

    kind: Literal["IPReservation"] = "IPReservation"
    api_version: Literal["projectcalico.org/v3"] = "projectcalico.org/v3"
    spec: IPReservationSpec
