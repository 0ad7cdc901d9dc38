"""The routing driver against a real kernel, each test in a fresh namespace, checked through
tests/oracle.py (iproute2 JSON), never through the driver itself."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network

import pytest

from egressgw.drivers.netlink import NetlinkRouting
from egressgw.plan.dataplane import (
    Classification,
    EgressRoute,
    EgressTable,
    NodePlan,
    RoutingSettings,
    VxlanSettings,
)
from egressgw.plan.routing import node_routing
from tests import oracle

pytestmark = pytest.mark.privileged

A, N = IPv4Address, IPv4Network
GW1, GW2, GW3 = A("172.18.0.50"), A("172.18.0.51"), A("172.18.0.52")
NODE_IP = A("172.18.0.11")
CLUSTER = (N("10.244.0.0/16"), N("10.96.0.0/12"))
SETTINGS = RoutingSettings()
ANY = N("0.0.0.0/0")


def sh(netns: str, *cmd: str) -> None:
    subprocess.run(["ip", "-n", netns, *cmd], check=True)


@pytest.fixture
def node(netns: str) -> Iterator[str]:
    """A namespace with an underlay `eth0` holding the node IP."""
    sh(netns, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
    sh(netns, "addr", "add", f"{NODE_IP}/24", "dev", "eth0")
    sh(netns, "link", "set", "eth0", "up")
    sh(netns, "link", "set", "peer0", "up")
    yield netns


@pytest.fixture
def driver(node: str) -> Iterator[NetlinkRouting]:
    d = NetlinkRouting(node)
    yield d
    d.close()


def policy_table(slot: int, gateways: tuple[IPv4Address, ...] = (GW1, GW2)) -> EgressTable:
    return EgressTable(slot, (
        EgressRoute.via(ANY, gateways),
        EgressRoute.throw(N("198.51.100.0/24")),
        EgressRoute.unreachable(N("192.0.2.0/24")),
    ))  # fmt: skip


def vxlan_plan(*tables: EgressTable) -> NodePlan:
    marks = tuple(
        Classification(f"cali{t.slot}", A(f"10.244.1.{t.slot + 10}"), t.slot) for t in tables
    )
    return NodePlan(SETTINGS, CLUSTER, tables, marks, VxlanSettings(NODE_IP, 1450, "eth0"))


def by_dst(routes: list[dict]) -> dict[tuple[str, str], dict]:
    return {(r.get("type", "unicast"), r["dst"]): r for r in routes}


def test_vxlan_plan_creates_rules_tables_groups_and_device(
    driver: NetlinkRouting, node: str
) -> None:
    stats = driver.apply(vxlan_plan(policy_table(0), policy_table(4, (GW3,))))
    assert stats.errors == ()

    ours = [r for r in oracle.rules(node) if r.get("protocol") == "66"]
    assert [(r["priority"], r.get("fwmark"), r.get("fwmask"), r.get("table")) for r in ours] == [
        (100, "0", "0x3f00", None),  # unmarked: skip our lookups (first at 100)
        (100, "0x100", "0x3f00", "1000"),
        (100, "0x500", "0x3f00", "1004"),
        (101, None, None, None),  # the skip rule's target (nop)
    ]
    assert ours[0]["goto"] == 101 and "nop" in ours[3]

    table = by_dst(oracle.routes(node, 1000))
    assert {k for k in table} == {
        ("unicast", "default"), ("unreachable", "default"),  # group + fail-closed twin
        ("throw", "10.244.0.0/16"), ("throw", "10.96.0.0/12"),  # the cluster stays direct
        ("throw", "172.18.0.50"), ("throw", "172.18.0.51"),  # so do the tunnel's outer packets
        ("throw", "198.51.100.0/24"), ("unreachable", "192.0.2.0/24"),
    }  # fmt: skip
    assert all(r["protocol"] == "66" for r in table.values())
    assert table[("unreachable", "default")]["metric"] == 0x4247

    nexthops = {nh["id"]: nh for nh in oracle.nexthops(node)}
    group = nexthops[table[("unicast", "default")]["nhid"]]
    assert group["type"] == "resilient" and group["resilient_args"]["buckets"] == 128
    members = [nexthops[m["id"]] for m in group["group"]]
    assert {(m["gateway"], m["dev"]) for m in members} == {
        (str(GW1), "egress.egw"),
        (str(GW2), "egress.egw"),
    }
    assert all("onlink" in m["flags"] and m["protocol"] == "66" for m in members)

    dev = oracle.link(node, "egress.egw")
    info = dev["linkinfo"]["info_data"]
    assert (info["id"], info["port"], info["local"], info["link"], info["learning"]) == (
        4097, 4790, str(NODE_IP), "eth0", False)  # fmt: skip
    assert dev["mtu"] == 1450 and dev["address"] == "a2:2b:ac:12:00:0b" and "UP" in dev["flags"]
    neigh = {(n["dst"], n["lladdr"]) for n in oracle.neighbours(node, "egress.egw")}
    assert neigh == {(str(g), f"a2:2a:ac:12:00:{g.packed[3]:02x}") for g in (GW1, GW2, GW3)}
    fdb = {(e["mac"], e["dst"]) for e in oracle.fdb(node, "egress.egw")}
    assert fdb == {(f"a2:2a:ac:12:00:{g.packed[3]:02x}", str(g)) for g in (GW1, GW2, GW3)}
    assert oracle.sysctl(node, "net/ipv4/fib_multipath_hash_policy") == "1"
    assert oracle.sysctl(node, "net/ipv4/conf/egress.egw/src_valid_mark") == "1"


def test_restarted_driver_applying_the_same_plan_changes_nothing(node: str) -> None:
    plan = vxlan_plan(policy_table(0), policy_table(1, (GW3,)))
    first = NetlinkRouting(node)
    first.apply(plan)
    first.close()
    before = oracle.snapshot(node, [1000, 1001])
    restarted = NetlinkRouting(node)
    with oracle.monitor(node) as events:
        stats = restarted.apply(plan)
    restarted.close()
    assert stats.changes == 0 and stats.errors == ()
    assert events == []
    assert oracle.snapshot(node, [1000, 1001]) == before


def test_gateway_set_change_replaces_the_group_in_place(driver: NetlinkRouting, node: str) -> None:
    driver.apply(vxlan_plan(policy_table(0, (GW1, GW2))))
    route = by_dst(oracle.routes(node, 1000))[("unicast", "default")]
    group = route["nhid"]
    ids = {nh["gateway"]: nh["id"] for nh in oracle.nexthops(node) if "gateway" in nh}
    before = oracle.buckets(node, group)
    assert set(before.values()) == {ids[str(GW1)], ids[str(GW2)]}

    with oracle.monitor(node, ("route", "rule")) as events:
        stats = driver.apply(vxlan_plan(policy_table(0, (GW1,))))
    assert stats.errors == ()
    # The kernel re-announces routes using a replaced group; none was deleted or re-added.
    assert not [e for e in events if e.startswith("Deleted default")], "the route itself stays"
    after_route = by_dst(oracle.routes(node, 1000))[("unicast", "default")]
    assert after_route["nhid"] == group
    after = oracle.buckets(node, group)
    assert set(after.values()) == {ids[str(GW1)]}
    # Only GW2's buckets moved: each bucket GW1 had, it still has.
    assert all(after[b] == nh for b, nh in before.items() if nh == ids[str(GW1)])
    assert str(GW2) not in {nh.get("gateway") for nh in oracle.nexthops(node)}

    driver.apply(vxlan_plan(policy_table(0, (GW1, GW2, GW3))))
    grown = oracle.buckets(node, group)
    assert by_dst(oracle.routes(node, 1000))[("unicast", "default")]["nhid"] == group
    # New members take idle buckets (all are: no traffic here), in the same group.
    assert len(set(grown.values())) == 3


def test_delta_touches_only_the_change(driver: NetlinkRouting, node: str) -> None:
    driver.apply(vxlan_plan(policy_table(0), policy_table(1, (GW3,))))
    keep = oracle.routes(node, 1000)
    with oracle.monitor(node) as events:
        stats = driver.apply(vxlan_plan(policy_table(0)))
    assert stats.errors == () and stats.added == 0
    assert oracle.routes(node, 1000) == keep
    assert oracle.routes(node, 1001) == []
    assert not [r for r in oracle.rules(node) if r.get("table") == "1001"]
    assert str(GW3) not in {n["dst"] for n in oracle.neighbours(node, "egress.egw")}
    assert events and all("1000" not in e for e in events if "table" in e)


def test_objects_that_are_not_ours_survive(driver: NetlinkRouting, node: str) -> None:
    sh(node, "rule", "add", "priority", "100", "fwmark", "0x1", "lookup", "100")
    sh(node, "route", "add", "203.0.113.0/24", "via", "172.18.0.1", "table", "1000")
    sh(node, "route", "add", "203.0.113.0/24", "via", "172.18.0.1")
    sh(node, "nexthop", "add", "id", "7", "via", "172.18.0.1", "dev", "eth0")
    sh(
        node, "nexthop", "add", "id", str(0x45470000), "via", "172.18.0.2", "dev", "eth0"
    )  # our range
    sh(
        node,
        "link",
        "add",
        "vx9",
        "type",
        "vxlan",
        "id",
        "9",
        "dstport",
        "4789",
        "local",
        "172.18.0.11",
    )
    foreign = oracle.snapshot(node, [1000])

    driver.apply(vxlan_plan(policy_table(0)))
    driver.remove()

    assert oracle.snapshot(node, [1000]) == foreign
    assert oracle.link(node, "egress.egw") is None


def test_native_plan_routes_via_on_link_gateways_only(driver: NetlinkRouting, node: str) -> None:
    sh(node, "route", "add", "10.99.0.0/16", "via", "172.18.0.1")  # GW behind a router
    far = A("10.99.0.5")
    plan = NodePlan(SETTINGS, CLUSTER, (policy_table(0, (GW1, far)),), ())
    assert driver.apply(plan).errors == ()
    table = by_dst(oracle.routes(node, 1000))
    route = table[("unicast", "default")]
    assert (route["gateway"], route["dev"]) == (str(GW1), "eth0")  # a group of one
    assert oracle.link(node, "egress.egw") is None
    assert ("throw", "172.18.0.50") not in table  # no tunnel, no outer packets to exempt

    only_far = NodePlan(SETTINGS, CLUSTER, (policy_table(0, (far,)),), ())
    driver.apply(only_far)
    table = by_dst(oracle.routes(node, 1000))
    assert ("unicast", "default") not in table  # unreachable by L2: fail closed
    assert ("unreachable", "default") in table


def test_switching_transport_and_emptying_the_plan(driver: NetlinkRouting, node: str) -> None:
    driver.apply(vxlan_plan(policy_table(0)))
    native = NodePlan(SETTINGS, CLUSTER, (policy_table(0),), ())
    assert driver.apply(native).errors == ()
    assert oracle.link(node, "egress.egw") is None
    hops = by_dst(oracle.routes(node, 1000))[("unicast", "default")]["nexthops"]
    assert {h["dev"] for h in hops} == {"eth0"}

    driver.apply(NodePlan(SETTINGS, CLUSTER))
    assert [r for r in oracle.rules(node) if r.get("protocol") == "66"] == []
    assert oracle.routes(node, 1000) == []
    assert oracle.nexthops(node) == []


def tx_checksumming(netns: str, device: str) -> str:
    out = subprocess.run(["ip", "netns", "exec", netns, "ethtool", "-k", device],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return next(
        line.split(":")[1].split()[0]
        for line in out.splitlines()
        if line.startswith("tx-checksumming")
    )


def test_tx_checksum_offload_is_kept_on(driver: NetlinkRouting, node: str) -> None:
    """Off, the tunnel falls to ~0.15x of direct throughput (the reference turns it off)."""
    driver.apply(vxlan_plan(policy_table(0)))
    assert tx_checksumming(node, "egress.egw") == "on"
    subprocess.run(["ip", "netns", "exec", node, "ethtool", "-K", "egress.egw", "tx", "off"],
                   check=True, capture_output=True)  # fmt: skip
    assert tx_checksumming(node, "egress.egw") == "off"
    stats = driver.apply(vxlan_plan(policy_table(0)))
    assert stats.changed == 1 and stats.errors == ()
    assert tx_checksumming(node, "egress.egw") == "on"


def test_tables_with_the_same_gateways_share_one_group(driver: NetlinkRouting, node: str) -> None:
    driver.apply(vxlan_plan(policy_table(0), policy_table(1), policy_table(2, (GW3,))))
    groups = [
        by_dst(oracle.routes(node, t))[("unicast", "default")]["nhid"] for t in (1000, 1001, 1002)
    ]
    assert groups[0] == groups[1] != groups[2]
    stats = driver.apply(
        vxlan_plan(policy_table(0, (GW1,)), policy_table(1, (GW1,)), policy_table(2, (GW3,)))
    )
    after = [
        by_dst(oracle.routes(node, t))[("unicast", "default")]["nhid"] for t in (1000, 1001, 1002)
    ]
    assert after == groups  # one in-place replace served both tables
    assert stats.changed == 1


def test_read_returns_what_the_plan_stands_for(driver: NetlinkRouting, node: str) -> None:
    """The same RoutingState the fake keeps: the fake and the real driver agree."""
    plan = vxlan_plan(policy_table(0), policy_table(3, (GW3,)))
    driver.apply(plan)
    reader = NetlinkRouting(node)  # a fresh session: nothing remembered
    try:
        assert reader.read() == node_routing(plan, {})
    finally:
        reader.close()


def test_a_route_keeps_its_own_group_when_another_holds_the_same_members(
    driver: NetlinkRouting, node: str
) -> None:
    """A drained configuration's retired table and its new table can want the same gateways
    through groups whose buckets differ. Each keeps its own group (replaced in place), so
    neither table's live flows are moved onto the other's buckets."""
    driver.apply(vxlan_plan(policy_table(0), policy_table(1, (GW2,))))
    before = [by_dst(oracle.routes(node, t))[("unicast", "default")]["nhid"] for t in (1000, 1001)]
    assert before[0] != before[1]
    stats = driver.apply(vxlan_plan(policy_table(0), policy_table(1)))  # both want GW1, GW2
    after = [by_dst(oracle.routes(node, t))[("unicast", "default")]["nhid"] for t in (1000, 1001)]
    assert after == before and stats.errors == ()
    (group,) = [n for n in oracle.nexthops(node) if n["id"] == before[1]]
    assert len(group["group"]) == 2  # GW1 joined it in place
