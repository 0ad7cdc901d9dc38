"""The nftables driver against a real kernel, checked through `nft -j` (tests/oracle.py)."""

from __future__ import annotations

import subprocess
from ipaddress import IPv4Address, IPv4Network

import pytest

from egressgw.drivers.nftables import NodeNftables
from egressgw.plan.dataplane import (
    Classification,
    EgressRoute,
    EgressTable,
    NodePlan,
    RoutingSettings,
    VxlanSettings,
)
from tests import oracle

pytestmark = pytest.mark.privileged

A, N = IPv4Address, IPv4Network
SETTINGS = RoutingSettings()
CLUSTER = (N("10.244.0.0/16"), N("10.96.0.0/12"), N("172.18.0.11/32"))
VXLAN = VxlanSettings(A("172.18.0.11"), 1450)


def table(slot: int) -> EgressTable:
    return EgressTable(slot, (EgressRoute.via(N("0.0.0.0/0"), [A("172.18.0.50")]),))


def pods(count: int, slot: int, first: int = 0) -> tuple[Classification, ...]:
    return tuple(
        Classification(
            f"cali{i % 250:05d}", A(f"10.{(i >> 16) % 256}.{(i >> 8) % 256}.{i % 256}"), slot
        )
        for i in range(first, first + count)
    )


def plan(
    marks: tuple[Classification, ...], slots: tuple[int, ...] = (0, 2), cluster=CLUSTER
) -> NodePlan:
    return NodePlan(SETTINGS, cluster, tuple(map(table, slots)), marks, VXLAN)


def elements(netns: str, name: str) -> list:
    view = oracle.nft_table(netns, "inet", "egressgw")
    assert view is not None
    found = view["maps"].get(name) or view["sets"].get(name)
    return found.get("elem", [])


def test_apply_builds_the_table(netns: str) -> None:
    stats = NodeNftables(netns).apply(plan(pods(3, 0) + pods(2, 2, first=10)))
    assert stats.errors == () and stats.added == 7
    view = oracle.nft_table(netns, "inet", "egressgw")
    assert view is not None
    assert set(view["chains"]) == {"prerouting", "forward", "fingerprint", "slot_0", "slot_2"}
    pre = view["chains"]["prerouting"]
    assert (pre["type"], pre["hook"], pre["prio"]) == ("filter", "prerouting", -150)
    classify = elements(netns, "classify4")
    assert [{"concat": ["cali00000", "10.0.0.0"]}, {"goto": {"target": "slot_0"}}] in classify
    assert len(classify) == 5
    assert sorted(elements(netns, "restore")) == [[0x100, {"goto": {"target": "slot_0"}}],
                                                  [0x300, {"goto": {"target": "slot_2"}}]]  # fmt: skip
    assert {"prefix": {"addr": "10.244.0.0", "len": 16}} in elements(netns, "cluster4")
    mss = [r for r in view["rules"] if r["chain"] == "forward"]
    assert len(mss) == 2 and all({"mangle": {"key": {"tcp option": {"name": "maxseg", "field": "size"}},
                                              "value": 1410}} in r["expr"] for r in mss)  # fmt: skip


def test_restarted_driver_applying_the_same_plan_changes_nothing(netns: str) -> None:
    p = plan(pods(100, 0))
    NodeNftables(netns).apply(p)
    before = oracle.nft_table(netns, "inet", "egressgw")
    with oracle.monitor(netns, ("link",)) as events:
        stats = NodeNftables(netns).apply(p)
    assert stats.changes == 0 and stats.errors == ()
    assert events == []
    assert oracle.nft_table(netns, "inet", "egressgw") == before  # same handles: not rebuilt


def test_element_changes_are_incremental(netns: str) -> None:
    driver = NodeNftables(netns)
    driver.apply(plan(pods(50, 0)))
    handles = {
        name: c["handle"]
        for name, c in oracle.nft_table(netns, "inet", "egressgw")["chains"].items()
    }
    moved = tuple(Classification(c.iifname, c.source, 2) for c in pods(10, 0))
    stats = driver.apply(plan(moved + pods(40, 0, first=10) + pods(5, 0, first=100), slots=(0, 2)))
    assert stats.errors == () and (stats.added, stats.removed) == (15, 10)
    view = oracle.nft_table(netns, "inet", "egressgw")
    assert {name: c["handle"] for name, c in view["chains"].items()} == handles
    classify = {e[0]["concat"][1]: e[1]["goto"]["target"] for e in elements(netns, "classify4")}
    assert (
        classify["10.0.0.0"] == "slot_2"
        and classify["10.0.0.10"] == "slot_0"
        and len(classify) == 55
    )

    driver.apply(plan(moved, slots=(2,), cluster=CLUSTER[:1]))
    view = oracle.nft_table(netns, "inet", "egressgw")
    assert (
        "slot_0" not in view["chains"] and view["chains"]["slot_2"]["handle"] == handles["slot_2"]
    )
    assert elements(netns, "cluster4") == [{"prefix": {"addr": "10.244.0.0", "len": 16}}]


def test_settings_change_replaces_the_table_atomically(netns: str) -> None:
    driver = NodeNftables(netns)
    driver.apply(plan(pods(5, 0)))
    other = NodePlan(RoutingSettings(mark_mask=0xF000), CLUSTER, (table(0),), pods(5, 0), VXLAN)
    assert driver.apply(other).changed >= 1
    rules = oracle.nft_table(netns, "inet", "egressgw")["rules"]
    assert any({"vmap": {"key": {"&": [{"ct": {"key": "mark"}}, 0xF000]}, "data": "@restore"}} in r["expr"]
               for r in rules)  # fmt: skip


def drop_element(netns: str, key: str) -> None:
    argv = ["nft", "delete", "element", "inet", "egressgw", "classify4", f"{{ {key} }}"]
    subprocess.run(["ip", "netns", "exec", netns, *argv], check=True)


def test_drift_behind_our_back_is_repaired(netns: str) -> None:
    driver = NodeNftables(netns)
    driver.apply(plan(pods(5, 0)))
    drop_element(netns, '"cali00004" . 10.0.0.4')
    # The cached picture is stale: deleting 10.0.0.4 again fails the transaction (nothing
    # is applied), so the driver re-reads the table and retries with a true delta.
    stats = driver.apply(plan(pods(4, 0)))
    assert stats.errors == ()
    assert len(elements(netns, "classify4")) == 4

    drop_element(netns, '"cali00001" . 10.0.0.1')
    driver.invalidate()  # what the agent does now and then
    assert driver.apply(plan(pods(4, 0))).added == 1
    assert len(elements(netns, "classify4")) == 4


def test_foreign_tables_survive(netns: str) -> None:
    subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "add", "table", "inet", "other"], check=True
    )
    driver = NodeNftables(netns)
    driver.apply(plan(pods(5, 0)))
    driver.remove()
    assert oracle.nft_tables(netns) == [("inet", "other")]


def test_ten_thousand_entry_changes_land_exactly(netns: str) -> None:
    """Large incremental changes reach the kernel exactly (timings: bench/dataplane_apply.py)."""
    driver = NodeNftables(netns)
    ten = plan(pods(10_000, 0))
    twenty = plan(pods(10_000, 0) + pods(10_000, 2, first=10_000))
    others = plan(pods(10_000, 0, first=20_000))
    for step, expected in ((ten, 10_000), (twenty, 20_000), (ten, 10_000), (others, 10_000)):
        assert driver.apply(step).errors == ()
        kernel = elements(netns, "classify4")
        assert len(kernel) == expected
    assert driver.apply(others).changes == 0


def test_removing_most_entries_keeps_the_rest(netns: str) -> None:
    """The delta flushes classify4 and adds back what stays, in one transaction."""
    driver = NodeNftables(netns)
    driver.apply(plan(pods(400, 0)))
    wanted = plan(pods(40, 0) + pods(50, 2, first=350))
    stats = driver.apply(wanted)
    assert stats.errors == () and (stats.added, stats.removed) == (50, 360)
    classify = {e[0]["concat"][1]: e[1]["goto"]["target"] for e in elements(netns, "classify4")}
    assert len(classify) == 90
    assert classify["10.0.0.39"] == "slot_0" and classify["10.0.1.94"] == "slot_2"
    assert "10.0.0.40" not in classify
    assert NodeNftables(netns).apply(wanted).changes == 0  # what a restarted agent reads back
