"""A gateway pod's networking against a real kernel, checked through tests/oracle.py."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network

import pytest

from egressgw.drivers.gatewaynet import GatewayNet
from egressgw.plan.dataplane import GatewayPlan, GatewayVxlan, ReturnRoute
from tests import oracle

pytestmark = pytest.mark.privileged

A, N = IPv4Address, IPv4Network
POD_IP = A("172.18.0.50")
NODE1, NODE2, NODE3 = A("172.18.0.11"), A("172.18.0.12"), A("172.18.0.13")


def sh(netns: str, *cmd: str) -> None:
    subprocess.run(["ip", "-n", netns, *cmd], check=True)


@pytest.fixture
def pod(netns: str) -> Iterator[str]:
    """A gateway pod's namespace as the CNI leaves it: eth0, its IP, a default route."""
    sh(netns, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
    sh(netns, "addr", "add", f"{POD_IP}/24", "dev", "eth0")
    sh(netns, "link", "set", "eth0", "up")
    sh(netns, "link", "set", "peer0", "up")
    sh(netns, "route", "add", "default", "via", "172.18.0.1")
    yield netns


def gateway(*returns: tuple[str, IPv4Address], native: bool = False) -> GatewayPlan:
    routes = tuple(ReturnRoute(N(dst), node) for dst, node in returns)
    return GatewayPlan(
        POD_IP, POD_IP, vxlan=GatewayVxlan(1450), native=native, return_routes=routes
    )


def ours(netns: str) -> dict[str, dict]:
    return {r["dst"]: r for r in oracle.routes(netns) if r.get("protocol") == "66"}


def test_apply_sets_up_tunnel_return_routes_snat_and_sysctls(pod: str) -> None:
    stats = GatewayNet(pod).apply(gateway(("10.244.1.0/24", NODE1), ("10.244.2.0/24", NODE2)))
    assert stats.errors == ()

    dev = oracle.link(pod, "vxlan0")
    info = dev["linkinfo"]["info_data"]
    assert (info["id"], info["port"], info["link"], info["learning"]) == (4097, 4790, "eth0", False)
    assert dev["address"] == "a2:2a:ac:12:00:32" and dev["mtu"] == 1450

    routes = ours(pod)
    assert set(routes) == {"10.244.1.0/24", "10.244.2.0/24"}
    r1 = routes["10.244.1.0/24"]
    assert (r1["gateway"], r1["dev"], "onlink" in r1["flags"]) == (str(NODE1), "vxlan0", True)
    neigh = {(n["dst"], n["lladdr"]) for n in oracle.neighbours(pod, "vxlan0")}
    assert neigh == {(str(NODE1), "a2:2b:ac:12:00:0b"), (str(NODE2), "a2:2b:ac:12:00:0c")}
    fdb = {(e["mac"], e["dst"]) for e in oracle.fdb(pod, "vxlan0")}
    assert fdb == {("a2:2b:ac:12:00:0b", str(NODE1)), ("a2:2b:ac:12:00:0c", str(NODE2))}

    view = oracle.nft_table(pod, "inet", "egressgw_gw")
    assert view is not None and view["chains"]["postrouting"]["type"] == "nat"
    snat = next(r for r in view["rules"] if r["chain"] == "postrouting")
    assert {"snat": {"family": "ip", "addr": str(POD_IP)}} in snat["expr"]
    assert len([r for r in view["rules"] if r["chain"] == "forward"]) == 2  # MSS clamp in and out

    for key, value in [("net/ipv4/ip_forward", "1"), ("net/ipv4/conf/all/rp_filter", "0"),
                       ("net/ipv4/conf/vxlan0/rp_filter", "0"), ("net/ipv4/conf/eth0/send_redirects", "0"),
                       ("net/ipv4/conf/all/send_redirects", "0")]:  # fmt: skip
        assert oracle.sysctl(pod, key) == value, key


def test_reapply_changes_nothing_and_changes_apply_as_deltas(pod: str) -> None:
    plan = gateway(("10.244.1.0/24", NODE1), ("10.244.2.0/24", NODE2))
    GatewayNet(pod).apply(plan)
    before = oracle.snapshot(pod, []), oracle.nft_table(pod, "inet", "egressgw_gw")
    with oracle.monitor(pod) as events:
        stats = GatewayNet(pod).apply(plan)
    assert stats.changes == 0 and events == []
    assert (oracle.snapshot(pod, []), oracle.nft_table(pod, "inet", "egressgw_gw")) == before

    with oracle.monitor(pod) as events:
        GatewayNet(pod).apply(gateway(("10.244.1.0/24", NODE1), ("10.244.3.0/24", NODE3)))
    assert set(ours(pod)) == {"10.244.1.0/24", "10.244.3.0/24"}
    assert not [e for e in events if "10.244.1.0/24" in e], "the unchanged route is untouched"
    assert {n["dst"] for n in oracle.neighbours(pod, "vxlan0")} == {str(NODE1), str(NODE3)}


def test_native_mode_snats_traffic_arriving_on_the_uplink(pod: str) -> None:
    GatewayNet(pod).apply(GatewayPlan(POD_IP, A("172.18.0.60"), native=True))
    view = oracle.nft_table(pod, "inet", "egressgw_gw")
    snat = next(r for r in view["rules"] if r["chain"] == "postrouting")
    assert {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "eth0"}} in snat[
        "expr"
    ]
    assert {"snat": {"family": "ip", "addr": "172.18.0.60"}} in snat["expr"]
    assert oracle.link(pod, "vxlan0") is None


def test_what_the_cni_set_up_survives(pod: str) -> None:
    before = oracle.routes(pod), oracle.ip(pod, "addr", "show", "dev", "eth0")
    driver = GatewayNet(pod)
    driver.apply(gateway(("10.244.1.0/24", NODE1)))
    driver.remove()
    assert (oracle.routes(pod), oracle.ip(pod, "addr", "show", "dev", "eth0")) == before
    assert oracle.link(pod, "vxlan0") is None
    assert oracle.nft_tables(pod) == []
