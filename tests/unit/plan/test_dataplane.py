"""Plan values: validation, normalisation, mark/table arithmetic, stable slots."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from egressgw.plan import ownership
from egressgw.plan.dataplane import (
    ApplyStats,
    Classification,
    EgressRoute,
    EgressTable,
    GatewayPlan,
    GatewayVxlan,
    NodePlan,
    ReturnRoute,
    RouteKind,
    RoutingSettings,
    Transport,
    VxlanSettings,
    assign_slots,
    vxlan_mtu,
)

A, N = IPv4Address, IPv4Network


def test_marks_and_tables_derive_from_the_slot() -> None:
    r = RoutingSettings()
    assert (r.capacity, r.mark(0), r.mark(62), r.table(0), r.table(62)) == (
        63,
        0x100,
        0x3F00,
        1000,
        1062,
    )
    assert r.slot_of_mark(0x500 | 0xFFFF0000) == 4 and r.slot_of_mark(0x4000) is None
    assert r.slot_of_table(1005) == 5 and r.slot_of_table(999) is None
    assert r.nop_priority == 101
    assert RoutingSettings(mark_mask=0xFF0000).mark(0) == 0x10000


@pytest.mark.parametrize("kwargs", [
    {"mark_mask": 0x5000}, {"mark_mask": 0}, {"rule_priority": 0}, {"rule_priority": 32765},
    {"table_base": 200}, {"table_base": 0},
])  # fmt: skip
def test_bad_settings_are_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        RoutingSettings(**kwargs)


def test_routes_take_gateways_only_when_via() -> None:
    assert EgressRoute.via(N("0.0.0.0/0"), [A("10.0.0.1")]).kind is RouteKind.VIA
    with pytest.raises(ValueError):
        EgressRoute(N("0.0.0.0/0"), RouteKind.VIA)
    with pytest.raises(ValueError):
        EgressRoute(N("0.0.0.0/0"), RouteKind.THROW, frozenset({A("10.0.0.1")}))
    with pytest.raises(ValueError):
        EgressTable(0, (EgressRoute.throw(N("1.0.0.0/8")), EgressRoute.unreachable(N("1.0.0.0/8"))))


def test_node_plan_normalises_and_checks() -> None:
    t0 = EgressTable(0, (EgressRoute.unreachable(N("0.0.0.0/0")),))
    plan = NodePlan(RoutingSettings(), (N("10.1.0.0/17"), N("10.1.128.0/17")), (t0,),
                    (Classification("b", A("10.1.0.2"), 0), Classification("a", A("10.1.0.3"), 0)))  # fmt: skip
    assert plan.cluster == (N("10.1.0.0/16"),)
    assert [c.iifname for c in plan.classifications] == ["a", "b"]
    assert plan.transport is Transport.NATIVE
    with pytest.raises(ValueError, match="without a table"):
        NodePlan(RoutingSettings(), (), (t0,), (Classification("a", A("10.1.0.2"), 1),))
    with pytest.raises(ValueError, match="twice"):
        NodePlan(RoutingSettings(), (), (t0,), (Classification("a", A("10.1.0.2"), 0),) * 2)
    with pytest.raises(ValueError, match="slots must be"):
        NodePlan(RoutingSettings(), (), (EgressTable(63, ()),))
    with pytest.raises(ValueError):
        Classification("a-name-that-is-too-long", A("10.1.0.2"), 0)


def test_vxlan_settings() -> None:
    v = VxlanSettings(A("172.18.0.11"), vxlan_mtu(1500))
    assert (v.mtu, v.mss, v.mac, v.device) == (1450, 1410, "a2:2b:ac:12:00:0b", "egress.egw")
    with pytest.raises(ValueError):
        VxlanSettings(A("172.18.0.11"), 1450, vni=0)


def test_gateway_plan() -> None:
    plan = GatewayPlan(A("10.10.0.5"), A("10.10.0.5"), vxlan=GatewayVxlan(1450))
    assert plan.mac == ownership.gateway_mac(A("10.10.0.5")) == "a2:2a:0a:0a:00:05"
    with pytest.raises(ValueError, match="VXLAN"):
        GatewayPlan(
            A("10.10.0.5"),
            A("10.10.0.5"),
            return_routes=(ReturnRoute(N("10.0.0.0/24"), A("1.1.1.1")),),
        )


def test_assign_slots_keeps_old_slots_and_fills_the_lowest_free() -> None:
    first = assign_slots(["a", "b", "c"], {}, capacity=4)
    assert first == {"a": 0, "b": 1, "c": 2}
    second = assign_slots(["c", "d", "e", "f"], first, capacity=4)
    assert second["c"] == 2 and {second["d"], second["e"]} == {0, 1} and "f" in second
    assert sorted(second.values()) == [0, 1, 2, 3]
    crowded = assign_slots(["a", "b", "c", "d", "g"], second, capacity=4)
    assert len(crowded) == 4 and crowded["c"] == 2 and crowded["d"] == second["d"]


def test_apply_stats_add_up() -> None:
    total = ApplyStats(1, 2, 3, ("x",)) + ApplyStats(1, 0, 0, ("y",))
    assert (total.changes, total.errors) == (7, ("x", "y"))


def test_classification_element_spells_the_address_as_str_does() -> None:
    for text in ("0.0.0.0", "10.244.3.7", "255.255.255.255", "192.0.2.1"):
        assert Classification("cali1", IPv4Address(text), 2).element == ("cali1", text, 2)


@pytest.mark.parametrize("name", ["", "a" * 16, "\u00e9" * 8, "cali\u2603\u2603\u2603\u2603"])
def test_classification_refuses_names_over_15_bytes(name: str) -> None:
    with pytest.raises(ValueError, match="bad interface name"):
        Classification(name, IPv4Address("10.0.0.1"), 0)


def test_classification_takes_names_up_to_15_bytes() -> None:
    assert Classification("\u00e9" * 7 + "a", IPv4Address("10.0.0.1"), 0).iifname == "\u00e9" * 7 + "a"
