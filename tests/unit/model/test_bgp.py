"""BGPConfiguration, BGPPeer and BGPFilter: calico-validation.md §2 and §3."""

from __future__ import annotations

from ipaddress import IPv6Address, ip_network
from typing import Any

import pytest

from egressgw.model import BGPConfiguration, BGPFilter, BGPPeer
from egressgw.model.parsing import to_dict

from .helpers import load, refusal


def peer(**spec: Any) -> BGPPeer:
    res = load("BGPPeer", spec)
    assert isinstance(res, BGPPeer)
    return res


def bgp_filter(**rule: Any) -> BGPFilter:
    res = load("BGPFilter", {"exportV4": [rule]})
    assert isinstance(res, BGPFilter)
    return res


def rule_refusal(key: str = "exportV4", **rule: Any) -> tuple[str, str]:
    return refusal("BGPFilter", {key: [rule]})


def test_bgp_configuration_defaults_and_extras() -> None:
    res = load(
        "BGPConfiguration", {"bindMode": "NodeIP", "serviceClusterIPs": [{"cidr": "10.9.0.0/24"}]}
    )
    assert isinstance(res, BGPConfiguration)
    spec = res.spec
    assert (spec.as_number, spec.node_to_node_mesh_enabled, spec.listen_port) == (64512, True, 179)
    assert spec.log_severity_screen == "Info"
    assert spec.service_cluster_ips[0].cidr == ip_network("10.9.0.0/24")
    assert to_dict(res)["spec"]["bindMode"] == "NodeIP"


def test_bgp_configuration_communities() -> None:
    spec = {"communities": [{"name": "egress", "value": "64512:100"}]}
    assert load("BGPConfiguration", spec).spec.communities[0].value == "64512:100"  # type: ignore[attr-defined]
    bad = {"communities": [{"name": "egress", "value": "64512"}]}
    assert refusal("BGPConfiguration", bad)[0] == "spec.communities[0].value"


def test_peer_as_numbers_accept_dotted_form() -> None:
    assert peer(peerIP="10.0.1.4", asNumber="1.10").spec.as_number == 65546
    assert (
        peer(peerIP="10.0.1.4", asNumber=65515, localASNumber="64512").spec.local_as_number == 64512
    )


def test_peer_with_ipv6_port_and_same_family_reachable_by() -> None:
    spec = peer(peerIP="[fd00::4]:1179", reachableBy="fd00::1", asNumber=65000).spec
    assert (spec.peer_address, spec.peer_port) == (IPv6Address("fd00::4"), 1179)


def test_peer_reachable_by_family_checked_after_stripping_port() -> None:
    field, message = refusal("BGPPeer", {"peerIP": "[fd00::4]:179", "reachableBy": "10.1.0.1"})
    assert (field, message) == (
        "spec.reachableBy",
        "ReachableBy and PeerIP address family mismatched",
    )


def test_reachable_by_must_be_a_plain_ip() -> None:
    assert refusal("BGPPeer", {"peerIP": "10.0.1.4", "reachableBy": "10.1.0.1/32"})[0] == (
        "spec.reachableBy"
    )


def test_next_hop_mode_with_keep_false_is_fine() -> None:
    assert (
        peer(peerIP="10.0.1.4", keepOriginalNextHop=False, nextHopMode="Self").spec.next_hop_mode
        == "Self"
    )


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"node": "aks-node-1", "nodeSelector": "all()"}, "spec.nodeSelector"),
        ({"peerIP": "10.0.1.4", "peerSelector": "all()"}, "spec.peerSelector"),
        ({"localWorkloadSelector": "app == 'x'"}, "spec.asNumber"),
        (
            {"localWorkloadSelector": "app == 'x'", "asNumber": 65000, "peerIP": "10.0.0.1"},
            "spec.localWorkloadSelector",
        ),
        ({"nodeSelector": "kubernetes.io/hostname: == 'x'"}, "spec.nodeSelector"),
        ({"sourceAddress": "rubbish"}, "spec.sourceAddress"),
        ({"node": "Not_A_Name"}, "spec.node"),
        ({"filters": ["Bad Name"]}, "spec.filters[0]"),
        ({"keepaliveTime": "ten"}, "spec.keepaliveTime"),
        ({"password": {"secretKeyRef": {"name": "bgp"}}}, "spec.password.secretKeyRef.key"),
        ({"ttlSecurity": 256}, "spec.ttlSecurity"),
    ],
)
def test_peer_refusals(spec: dict[str, Any], field: str) -> None:
    assert refusal("BGPPeer", spec)[0] == field


def test_local_workload_peering() -> None:
    assert peer(localWorkloadSelector="app == 'x'", asNumber=65000).spec.as_number == 65000


def test_filter_rule_with_every_field() -> None:
    res = bgp_filter(
        action="Accept",
        cidr="10.99.0.0/16",
        matchOperator="In",
        prefixLength={"min": 24, "max": 32},
        source="RemotePeers",
        interface="*.calico",
        peerType="eBGP",
        communities={"values": ["65000:1"]},
        asPathPrefix=[65000, "1.1"],
        priority=512,
        operations=[
            {"addCommunity": {"value": "65000:2"}},
            {"prependASPath": {"prefix": [65000, 65000]}},
            {"setPriority": {"value": 10}},
        ],
    )
    rule = res.spec.export_v4[0]
    assert rule.as_path_prefix == [65000, 65537]
    assert rule.operations is not None and len(rule.operations) == 3
    assert to_dict(res)["spec"]["exportV4"][0]["operations"][1] == {
        "prependASPath": {"prefix": [65000, 65000]}
    }


def test_v6_rules() -> None:
    res = load(
        "BGPFilter",
        {
            "importV6": [
                {
                    "action": "Reject",
                    "cidr": "fd00::/64",
                    "matchOperator": "Equal",
                    "prefixLength": {"max": 128},
                }
            ]
        },
    )
    assert isinstance(res, BGPFilter) and res.spec.import_v6[0].cidr == ip_network("fd00::/64")
    assert rule_refusal("importV6", action="Accept", cidr="10.0.0.0/8", matchOperator="In")[0] == (
        "spec.importV6[0].cidr"
    )
    field, message = rule_refusal(
        "exportV6", action="Accept", cidr="fd00::/64", matchOperator="In", prefixLength={"min": -16}
    )
    assert (field, message) == ("spec.exportV6[0].prefixLength.min", "must be between 0 and 128")


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({"action": "ActionX"}, "spec.exportV4[0].action"),
        ({}, "spec.exportV4[0].action"),
        ({"action": "Accept", "matchOperator": "In"}, "spec.exportV4[0].cidr"),
        (
            {"action": "Accept", "cidr": "10.0.0.0/8", "matchOperator": "fancyOperator"},
            "spec.exportV4[0].matchOperator",
        ),
        ({"action": "Accept", "prefixLength": {"min": 8}}, "spec.exportV4[0].prefixLength"),
        (
            {
                "action": "Accept",
                "cidr": "10.0.0.0/8",
                "matchOperator": "In",
                "prefixLength": {"max": 33},
            },
            "spec.exportV4[0].prefixLength.max",
        ),
        (
            {"action": "Accept", "communities": {"values": ["1:1", "2:2"]}},
            "spec.exportV4[0].communities.values",
        ),
        ({"action": "Accept", "operations": []}, "spec.exportV4[0].operations"),
        ({"action": "Accept", "operations": [{}]}, "spec.exportV4[0].operations[0]"),
        (
            {
                "action": "Accept",
                "operations": [{"setPriority": {"value": 1}, "addCommunity": {"value": "1:1"}}],
            },
            "spec.exportV4[0].operations[0]",
        ),
        ({"action": "Accept", "priority": 0}, "spec.exportV4[0].priority"),
        ({"action": "Accept", "source": "Local"}, "spec.exportV4[0].source"),
        ({"action": "Accept", "peerType": "ebgp"}, "spec.exportV4[0].peerType"),
    ],
)
def test_filter_rule_refusals(rule: dict[str, Any], field: str) -> None:
    assert rule_refusal(**rule)[0] == field


@pytest.mark.parametrize("name", ["ethx", "eth*", "*.calico", "ethx.", "*"])
def test_interfaces_accepted(name: str) -> None:
    assert bgp_filter(action="Accept", interface=name).spec.export_v4[0].interface == name


@pytest.mark.parametrize("name", ["eth&", "%face", '"ace', "$cali", "eth#", "a234567890123456"])
def test_interfaces_refused(name: str) -> None:
    assert rule_refusal(action="Accept", interface=name)[0] == "spec.exportV4[0].interface"
