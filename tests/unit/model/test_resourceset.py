"""ResourceSet: accessors, cross-object checks, upserts, and independence from input order."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from egressgw.manifests import read_resources
from egressgw.model import (
    EgressGateway,
    IPPool,
    ManifestError,
    Problem,
    Resource,
    ResourceKey,
    ResourceSet,
)
from egressgw.model.parsing import from_dict, to_dict

from .helpers import by_name, manifest

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
AWS = tuple(read_resources([EXAMPLES / "aws-public-ip"]))
AZURE = tuple(read_resources([EXAMPLES / "azure-hub-spoke"]))


def outcome(resources: list[Resource]) -> ResourceSet | tuple[Problem, ...]:
    try:
        return ResourceSet.build(resources)
    except ManifestError as err:
        return err.problems


@settings(max_examples=60, deadline=None)
@given(st.permutations(AWS + AZURE), st.randoms(use_true_random=False))
def test_build_does_not_depend_on_input_order(order: list[Resource], rnd: object) -> None:
    subset = order[: len(order) // 2 + 3]
    shuffled = list(subset)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]

    assert outcome(subset) == outcome(shuffled)


@settings(max_examples=30, deadline=None)
@given(st.permutations(AZURE))
def test_a_valid_example_builds_the_same_set_in_any_order(order: list[Resource]) -> None:
    assert ResourceSet.build(order) == ResourceSet.build(AZURE)


def test_accessors() -> None:
    rs = ResourceSet.build(AZURE)
    assert [g.metadata.name for g in rs.egress_gateways] == ["tenant0-egw", "tenant1-egw"]
    assert set(rs.policies) == {"egw-policy"}
    assert set(by_name(rs.ip_pools)) == {"default-ipv4-ippool", "tenant0-pool", "tenant1-pool"}
    assert set(rs.namespaces) == {"default", "tenant0-egw", "tenant1-egw"}
    assert set(rs.bgp_filters) == {"export-egress-ips"}
    assert rs.ip_reservations == () and rs.global_network_sets == ()
    assert rs.get(ResourceKey("Pod", "default", "netshoot")) is rs.pods[0]
    assert rs.get(ResourceKey("Pod", "default", "nope")) is None
    assert [r.key for r in rs.all] == sorted((r.key for r in rs.all), key=ResourceKey.sort_key)


def test_missing_configurations() -> None:
    rs = ResourceSet.build([])
    assert rs.bgp_configuration is None
    assert rs.felix_configuration.metadata.name == "default"
    assert rs.felix_configuration.spec.egress_ip_support == "Disabled"


def test_per_node_felix_configuration_is_not_the_global_one() -> None:
    node = from_dict(
        manifest(
            "FelixConfiguration",
            name="node.node-1",
            spec={"egressIPSupport": "EnabledPerNamespace"},
        )
    )
    assert ResourceSet.build([node]).felix_configuration.spec.egress_ip_support == "Disabled"


def test_with_resource_replaces_by_key_and_rechecks() -> None:
    rs = ResourceSet.build(AZURE)
    gateway = rs.egress_gateways[0]
    scaled = gateway.model_copy(update={"spec": gateway.spec.model_copy(update={"replicas": 5})})

    updated = rs.with_resource(scaled)

    assert updated.egress_gateways[0].spec.replicas == 5
    assert len(updated.all) == len(rs.all)
    assert rs.egress_gateways[0].spec.replicas == 2  # the original is unchanged
    broken = from_dict(to_dict(gateway) | {"spec": {"ipPools": [{"name": "gone"}]}})
    with pytest.raises(ManifestError, match="IPPool 'gone' not found"):
        rs.with_resource(broken)


def test_without_removes_and_rechecks() -> None:
    rs = ResourceSet.build(AZURE)
    assert rs.without(ResourceKey("Pod", "default", "netshoot")).pods == ()
    with pytest.raises(ManifestError, match="IPPool 'tenant0-pool' not found"):
        rs.without(ResourceKey("IPPool", None, "tenant0-pool"))


def test_one_bad_object_fails_the_whole_batch_with_every_problem() -> None:
    bad_gateway = from_dict(
        manifest("EgressGateway", name="g", spec={"ipPools": [{"cidr": "10.7.0.0/29"}]})
    )
    bad_peer = from_dict(
        manifest("BGPPeer", name="p", spec={"peerIP": "10.0.0.1", "filters": ["f"]})
    )

    with pytest.raises(ManifestError) as caught:
        ResourceSet.build([*AZURE, bad_gateway, bad_peer])

    assert [str(p) for p in caught.value.problems] == [
        "<dict>: BGPPeer/p: spec.filters[0]: BGPFilter 'f' not found",
        "<dict>: EgressGateway/default/g: spec.ipPools[0].cidr:"
        " IPPool matching CIDR = 10.7.0.0/29 not present",
    ]


def test_pools_resolve_by_cidr() -> None:
    pool = from_dict(manifest("IPPool", name="p", spec={"cidr": "10.50.0.0/31", "blockSize": 31}))
    gateway = from_dict(
        manifest(
            "EgressGateway",
            name="g",
            spec={"ipPools": [{"cidr": "10.50.0.0/31"}, {"name": "p", "cidr": "10.50.0.0/31"}]},
        )
    )
    rs = ResourceSet.build([pool, gateway])
    assert isinstance(rs.egress_gateways[0], EgressGateway)
    assert isinstance(by_name(rs.ip_pools)["p"], IPPool)


def test_duplicates_name_both_places() -> None:
    with pytest.raises(ManifestError) as caught:
        ResourceSet.build([*AZURE, *AZURE[:1]])
    (problem,) = caught.value.problems
    assert "duplicate" in problem.message and "first defined at" in problem.message


def test_the_same_name_in_two_namespaces_is_not_a_duplicate() -> None:
    pods = [
        from_dict(manifest("Pod", name="p") | {"metadata": {"name": "p", "namespace": ns}})
        for ns in ("a", "b")
    ]
    assert len(ResourceSet.build(pods).pods) == 2
