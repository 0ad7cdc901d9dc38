"""The `azure` scenario: its topology from the example's Node objects, the state `lab up`
applies (the walkthrough's "before"), the walkthrough's edits, and the demo's rendering."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from egressgw import manifests
from egressgw.lab import demo_azure, scenarios, state
from egressgw.lab.registry import LabInfo
from egressgw.lab.running import LabHandle
from egressgw.lab.status import netns_for
from egressgw.lab.topology import Topology
from egressgw.lab.walkthrough import FILTER, POLICY, SELECTOR, TENANT_SELECTOR, Walkthrough
from egressgw.model import BGPPeer, EgressGatewayPolicy, FelixConfiguration, IPPool, Resource
from egressgw.store.codec import resource_store
from egressgw.store.memory import MemoryStore

A, N = IPv4Address, IPv4Network


def resources() -> tuple[Resource, ...]:
    return manifests.load([scenarios.AZURE.examples]).all


def topology(prefix: str = "egwu") -> Topology:
    return scenarios.build_topology(scenarios.AZURE, resources(), prefix)


def test_the_azure_scenario_is_the_reference_hub_and_spoke() -> None:
    azure = scenarios.get("azure")
    assert azure.examples.name == "azure-hub-spoke" and azure.transport == "vxlan"
    assert azure.bgp and not scenarios.AWS.bgp
    assert azure.subnet_zones == {}  # no AWS subnets: the controller gets no --subnet-zone
    t = topology()
    assert [(n.name, n.zone, str(n.ip), str(n.pod_cidr)) for n in t.nodes] == [
        ("aks-node-1", "eastus-1", "10.1.0.4", "10.244.0.0/26"),
        ("aks-node-2", "eastus-2", "10.1.0.5", "10.244.0.64/26"),
    ]
    # One AKS subnet spans both zones: one bridge, one router.
    assert t.bridge("eastus-1") == t.bridge("eastus-2") == "br-eastus-1"
    assert {z.router for z in t.zones} == {A("10.1.0.1")}
    assert t.vpc_edge_link == N("10.0.0.0/24")  # AzureFirewallSubnet
    assert t.edge_link_hosts() == (A("10.0.0.1"), A("10.0.0.4"))
    assert t.nat_address("eastus-2") == A("198.51.100.1")  # the firewall's public address
    assert t.namespaces()[:5] == (
        "egwu-vpc",
        "egwu-edge",
        "egwu-internet",
        "egwu-rs-a",
        "egwu-rs-b",
    )
    assert {h.name: str(h.address) for h in t.internet_hosts}["www.tigera.io"] == "203.0.113.30"
    text = str(t)
    assert "route server rs-a  10.0.1.4  peers 10.1.0.4 10.1.0.5  ns egwu-rs-a" in text
    assert "edge  vpc 10.0.0.1 <-> 10.0.0.4" in text


def test_an_azure_topology_survives_the_state_file(tmp_path: Path) -> None:
    t = topology()
    state.save_topology(t, tmp_path)
    assert state.load_topology("egwu", tmp_path) == t


def test_lab_exec_reaches_route_servers_and_the_firewall() -> None:
    t = topology()
    assert netns_for(t, "rs-b") == "egwu-rs-b"
    assert netns_for(t, "firewall") == netns_for(t, "edge") == "egwu-edge"
    assert netns_for(t, "aks-node-2") == "egwu-node-aks-node-2"


def test_lab_up_applies_the_state_before_the_readme_patches() -> None:
    initial = scenarios.initial_resources(scenarios.AZURE, resources())
    kinds = {r.kind for r in initial}
    assert "FelixConfiguration" not in kinds and "EgressGatewayPolicy" not in kinds
    pools = {r.metadata.name: r for r in initial if isinstance(r, IPPool)}
    assert pools["default-ipv4-ippool"].spec.disable_bgp_export is False
    assert pools["tenant0-pool"].spec.vxlan_mode == "Never"
    assert all(r.spec.filters == [] for r in initial if isinstance(r, BGPPeer))
    aws = manifests.load([scenarios.AWS.examples]).all
    assert scenarios.initial_resources(scenarios.AWS, aws) == list(aws)


def _handle(tmp_path: Path) -> LabHandle:
    t = topology()
    state.save_topology(t, tmp_path)
    info = LabInfo("egwu", "azure", "vxlan", "127.0.0.1:1", ())
    return LabHandle(info, tmp_path)


def test_the_walkthrough_edits_the_store_as_the_readme_patches(tmp_path: Path) -> None:
    w = Walkthrough.load(_handle(tmp_path))
    store = resource_store(MemoryStore())

    async def run() -> dict[str, list[Resource]]:
        await store.apply(list(w.before.values()))
        seen: dict[str, list[Resource]] = {}
        for edit in (w.disable_export, w.attach_filter, w.enable_egress, w.apply_policy, w.reset):
            await edit(store)
            seen[edit.__name__] = (await store.list_all())[0]
        return seen

    seen = asyncio.run(run())

    def pool(objs: list[Resource]) -> bool:
        return next(
            r.spec.disable_bgp_export
            for r in objs
            if isinstance(r, IPPool) and r.metadata.name == "default-ipv4-ippool"
        )

    def filters(objs: list[Resource]) -> dict[str, list[str]]:
        return {r.metadata.name: r.spec.filters for r in objs if isinstance(r, BGPPeer)}

    def annotations(objs: list[Resource]) -> dict[str, str]:
        return next(
            r.metadata.annotations
            for r in objs
            if r.kind == "Namespace" and r.metadata.name == "default"
        )

    assert pool(seen["disable_export"]) is True
    assert filters(seen["attach_filter"]) == {
        "azure-route-server-a": [FILTER],
        "azure-route-server-b": [FILTER],
        "peer-with-route-reflectors": [],
    }
    assert annotations(seen["enable_egress"]) == {SELECTOR: TENANT_SELECTOR}
    assert any(isinstance(r, FelixConfiguration) for r in seen["enable_egress"])
    [policy] = [r for r in seen["apply_policy"] if isinstance(r, EgressGatewayPolicy)]
    assert [str(rule.destination.cidr) for rule in policy.spec.rules if rule.destination] == [
        "10.0.0.0/8",
        "203.0.113.8/32",  # 8.8.8.8's stand-in, rewritten as `lab up` does
    ]
    assert annotations(seen["apply_policy"])[POLICY] == "egw-policy"
    reset = seen["reset"]
    assert pool(reset) is False and all(f == [] for f in filters(reset).values())
    assert annotations(reset) == {}
    assert not any(isinstance(r, FelixConfiguration | EgressGatewayPolicy) for r in reset)


def test_each_demo_step_renders_on_one_line() -> None:
    def step(observed: dict[str, Any]) -> str:
        return demo_azure.AzureStep("s", "t", True, 1, {}, observed).summary()

    route = {"network": "10.99.0.0/31", "nextHop": "10.1.0.4"}
    assert (
        step({"routes": {"rs-a": [route, route]}, "fabric": {}})
        == "rs-a 2 paths: 10.99.0.0/31→10.1.0.4"
    )
    firewall = [{"verdict": "denied", "source": "10.1.0.4"}]
    http = {"status": 470, "body": "Action: Deny."}
    assert (
        step({"http": http, "firewall": firewall})
        == "HTTP 470 Action: Deny.; firewall: denied 10.1.0.4"
    )
    sessions = {
        "route_servers": {"rs-a": {"10.1.0.4": True, "10.1.0.5": False}},
        "nodes": {"n": {"Peer_x": "Established"}},
    }
    assert step(sessions) == "sessions up: rs-a 1/2, n 1/1"
    pods = {"pods": [{"pod": "g-0", "node": "n", "zone": "z", "ip": "10.99.0.0"}]}
    assert step(pods) == "g-0 n (z) 10.99.0.0"


def test_a_step_retries_until_it_sees_what_it_expects() -> None:
    answers = iter([(False, {"n": 1}), (False, {"n": 2}), (True, {"n": 3})])
    ok, observed, ms = demo_azure.until(lambda: next(answers), timeout=5)
    assert (ok, observed) == (True, {"n": 3}) and ms < 1000
    ok, observed, _ = demo_azure.until(lambda: (False, {"n": 0}), timeout=0.01)
    assert (ok, observed) == (False, {"n": 0})
