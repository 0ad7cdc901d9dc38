"""IPPool and IPReservation: defaults and the rules of calico-validation.md §1."""

from __future__ import annotations

from ipaddress import ip_network
from typing import Any

import pytest

from egressgw.model import IPPool, IPReservation

from .helpers import load, refusal


def pool(**spec: Any) -> IPPool:
    res = load("IPPool", {"cidr": "10.0.0.0/16"} | spec)
    assert isinstance(res, IPPool)
    return res


def test_defaults() -> None:
    spec = pool().spec
    assert spec.node_selector == "all()"
    assert (spec.vxlan_mode, spec.ipip_mode, spec.namespace_selector) == (None, None, None)
    assert (spec.nat_outgoing, spec.disabled, spec.disable_bgp_export) == (False, False, False)
    assert spec.assignment_mode == "Automatic"
    assert spec.effective_block_size == 26
    assert spec.effective_allowed_uses == ("Tunnel", "Workload")


def test_block_size_zero_means_default() -> None:
    assert pool(blockSize=0).spec.effective_block_size == 26
    assert load("IPPool", {"cidr": "fd00::/64"}).spec.effective_block_size == 122  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("cidr", "size"),
    [("10.0.0.0/8", 20), ("10.0.0.0/26", 32), ("fd00::/64", 116), ("fd00::/122", 128)],
)
def test_block_sizes_in_range(cidr: str, size: int) -> None:
    assert pool(cidr=cidr, blockSize=size).spec.effective_block_size == size


@pytest.mark.parametrize(
    ("cidr", "size"), [("fd00::/64", 115), ("fd00::/64", 32), ("10.0.0.0/8", 116)]
)
def test_block_sizes_out_of_range(cidr: str, size: int) -> None:
    field, message = refusal("IPPool", {"cidr": cidr, "blockSize": size})
    assert field == "spec.blockSize"
    assert "between 20 and 32" in message


def test_pool_smaller_than_a_block_is_fine_when_disabled() -> None:
    assert pool(cidr="10.99.0.0/27", disabled=True).spec.disabled
    assert pool(cidr="fd00::/128", disabled=True, vxlanMode="Always").spec.disabled
    assert refusal("IPPool", {"cidr": "fd00::/123"})[0] == "spec.cidr"


def test_link_local_pools_are_refused_both_ways() -> None:
    assert refusal("IPPool", {"cidr": "169.0.0.0/8"})[0] == "spec.cidr"
    assert "link-local" in refusal("IPPool", {"cidr": "fe80::/120"})[1]


def test_encapsulation_rules() -> None:
    assert pool(cidr="fd00::/64", vxlanMode="Always").spec.vxlan_mode == "Always"
    assert pool(ipipMode="Never", vxlanMode="Always").spec.vxlan_mode == "Always"
    assert refusal("IPPool", {"cidr": "fd00::/64", "ipipMode": "Always"})[0] == "spec.ipipMode"
    field, message = refusal("IPPool", {"cidr": "10.0.0.0/16", "vxlanMode": "never"})
    assert field == "spec.vxlanMode" and "Input should be" in message


def test_allowed_uses() -> None:
    aws = pool(allowedUses=["HostSecondaryInterface"], awsSubnetID="subnet-0a1b2c3d4e5f60001")
    assert aws.spec.effective_allowed_uses == ("HostSecondaryInterface",)
    assert aws.spec.aws_subnet_id == "subnet-0a1b2c3d4e5f60001"
    assert (
        refusal("IPPool", {"cidr": "10.0.0.0/16", "allowedUses": ["Workload", "Workload"]})[0]
        == "spec.allowedUses"
    )
    tunnel = {"cidr": "10.0.0.0/16", "allowedUses": ["Tunnel"], "namespaceSelector": "a == 'b'"}
    assert refusal("IPPool", tunnel)[0] == "spec.namespaceSelector"


def test_load_balancer_pools() -> None:
    assert pool(allowedUses=["LoadBalancer"]).spec.allowed_uses == ["LoadBalancer"]
    lb = {"cidr": "10.0.0.0/16", "allowedUses": ["LoadBalancer"]}
    assert refusal("IPPool", lb | {"vxlanMode": "Always"})[0] == "spec.allowedUses"
    assert refusal("IPPool", lb | {"disableBGPExport": True})[0] == "spec.disableBGPExport"
    assert (
        refusal("IPPool", lb | {"allowedUses": ["LoadBalancer", "Tunnel"]})[0] == "spec.allowedUses"
    )


@pytest.mark.parametrize(
    "selector",
    [
        'region == "east"',
        'region == "east" && environment == "production"',
        'region in {"east", "west"}',
        "has(team)",
        "all()",
        'team == "backend" || team == "frontend"',
        'environment contains "prod"',
    ],
)
def test_selectors_accepted(selector: str) -> None:
    assert pool(nodeSelector=selector, namespaceSelector=selector).spec.node_selector == selector


def test_assignment_mode_empty_is_refused() -> None:
    assert refusal("IPPool", {"cidr": "10.0.0.0/16", "assignmentMode": ""})[0] == (
        "spec.assignmentMode"
    )


def test_cidr_is_required() -> None:
    assert refusal("IPPool", {}) == ("spec.cidr", "required field is missing")


def test_reservations_accept_bare_addresses() -> None:
    res = load("IPReservation", {"reservedCIDRs": ["10.99.15.255", "10.99.0.0/30", "fd00::1"]})
    assert isinstance(res, IPReservation)
    assert res.spec.reserved_cidrs == [
        ip_network("10.99.15.255/32"),
        ip_network("10.99.0.0/30"),
        ip_network("fd00::1/128"),
    ]
    assert refusal("IPReservation", {"reservedCIDRs": ["10.99.0.1/30"]})[0] == (
        "spec.reservedCIDRs[0]"
    )
