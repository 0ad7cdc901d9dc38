"""The two reference scenarios in examples/ load cleanly and mean what the references say."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, ip_network
from pathlib import Path

import pytest

from egressgw.manifests import load, read_resources
from egressgw.model import EgressGateway, ResourceKey, ResourceSet
from egressgw.model.parsing import from_dict, to_dict

from .helpers import by_name

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
AWS = EXAMPLES / "aws-public-ip"
AZURE = EXAMPLES / "azure-hub-spoke"


@pytest.fixture(scope="module")
def aws() -> ResourceSet:
    return load([AWS])


@pytest.fixture(scope="module")
def azure() -> ResourceSet:
    return load([AZURE])


@pytest.mark.parametrize("directory", [AWS, AZURE], ids=["aws", "azure"])
def test_every_example_object_round_trips_through_to_dict_and_from_dict(directory: Path) -> None:
    for res in read_resources([directory]):
        written = to_dict(res)
        again = from_dict(written)
        assert again == res
        assert to_dict(again) == written


def test_aws_example_has_the_reference_objects(aws: ResourceSet) -> None:
    assert aws.counts() == {
        "EgressGateway": 6,
        "EgressGatewayPolicy": 1,
        "FelixConfiguration": 1,
        "GlobalNetworkSet": 3,
        "IPPool": 15,
        "IPReservation": 1,
        "Namespace": 1,
        "Node": 4,
        "Pod": 1,
    }
    assert aws.felix_configuration.spec.egress_ip_support == "EnabledPerNamespaceOrPerPod"
    assert aws.felix_configuration.spec.aws_secondary_ip_support == "Enabled"


def test_aws_gateways_use_one_pool_per_zone_and_their_own_elastic_ip(aws: ResourceSet) -> None:
    for n, gateway in enumerate(aws.egress_gateways, start=1):
        assert gateway.key == ResourceKey("EgressGateway", "default", f"egw-{n}")
        assert gateway.spec.aws is not None
        assert gateway.spec.aws.elastic_ips == [IPv4Address(f"198.51.100.{10 + n}")]
        cidrs = [by_name(aws.ip_pools)[ref.name or ""].spec.cidr for ref in gateway.spec.ip_pools]
        assert cidrs == [
            ip_network(f"10.99.8.{8 * (n - 1)}/29"),
            ip_network(f"10.99.24.{8 * (n - 1)}/29"),
        ]
        assert gateway.template_labels == {"egress-gateway": f"egw-{n}"}


def test_aws_reservations_cover_what_aws_reserves(aws: ResourceSet) -> None:
    reserved = by_name(aws.ip_reservations)["aws-ip-reservations"].spec.reserved_cidrs
    assert set(reserved) == {
        ip_network("10.99.15.255/32"),
        ip_network("10.99.31.255/32"),
        ip_network("10.99.0.0/30"),
        ip_network("10.99.16.0/30"),
    }


def test_aws_policy_destinations_normalise_bare_ips(aws: ResourceSet) -> None:
    rules = aws.policies["egress-gateway-policy"].spec.rules
    assert [r.destination_cidr for r in rules] == [
        IPv4Network("0.0.0.0/0"),
        IPv4Network("8.8.8.8/32"),
        IPv4Network("4.2.2.2/32"),
    ]
    assert rules[1].destination is not None and rules[1].destination.cidr == "8.8.8.8"
    assert {r.gateway_preference for r in rules} == {"PreferNodeLocal"}


def test_aws_nodes_and_client_pod(aws: ResourceSet) -> None:
    zones = {
        name: n.metadata.labels["topology.kubernetes.io/zone"]
        for name, n in by_name(aws.nodes).items()
    }
    assert zones == {
        "node-1": "us-east-1a",
        "node-2": "us-east-1a",
        "node-3": "us-east-1b",
        "node-4": "us-east-1b",
    }
    assert by_name(aws.nodes)["node-3"].internal_ip == IPv4Address("10.0.176.10")
    assert [p.key for p in aws.pods] == [ResourceKey("Pod", "default", "netshoot")]


def test_azure_example_has_the_reference_objects(azure: ResourceSet) -> None:
    assert azure.counts() == {
        "BGPConfiguration": 1,
        "BGPFilter": 1,
        "BGPPeer": 3,
        "EgressGateway": 2,
        "EgressGatewayPolicy": 1,
        "FelixConfiguration": 1,
        "IPPool": 3,
        "Namespace": 3,
        "Node": 2,
        "Pod": 1,
    }
    bgp = azure.bgp_configuration
    assert bgp is not None
    assert (bgp.spec.as_number, bgp.spec.node_to_node_mesh_enabled) == (63400, False)


def test_azure_route_server_peers(azure: ResourceSet) -> None:
    peer = by_name(azure.bgp_peers)["azure-route-server-b"].spec
    assert peer.peer_address == IPv4Address("10.0.1.5")
    assert peer.peer_port is None
    assert peer.reachable_by == IPv4Address("10.1.0.1")
    assert (peer.as_number, peer.keep_original_next_hop) == (65515, True)


def test_azure_tenant_gateways(azure: ResourceSet) -> None:
    gateways = {g.metadata.name: g for g in azure.egress_gateways}
    tenant1 = gateways["tenant1-egw"]
    assert isinstance(tenant1, EgressGateway)
    assert tenant1.metadata.namespace == "tenant1-egw"
    assert tenant1.spec.replicas == 2
    assert tenant1.template_labels == {"tenant": "tenant1-egw"}
    assert by_name(azure.ip_pools)["tenant1-pool"].spec.effective_block_size == 31


def test_azure_pod_without_namespace_lands_in_default(azure: ResourceSet) -> None:
    (pod,) = azure.pods
    assert pod.metadata.namespace == "default"
    assert pod.spec.model_extra is not None and pod.spec.model_extra["restartPolicy"] == "Always"
