"""Plans to kernel routing objects (pure)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from egressgw.plan import ownership
from egressgw.plan.dataplane import (
    EgressRoute,
    EgressTable,
    GatewayPlan,
    GatewayVxlan,
    NodePlan,
    ReturnRoute,
    RoutingSettings,
    VxlanSettings,
)
from egressgw.plan.routing import (
    Hop,
    Route,
    RouteType,
    Rule,
    RuleAction,
    gateway_routing,
    node_routing,
)

A, N = IPv4Address, IPv4Network
GW1, GW2 = A("172.18.0.50"), A("172.18.0.51")
ANY = N("0.0.0.0/0")
CLUSTER = (N("10.244.0.0/16"),)


def plan(*tables: EgressTable, vxlan: bool = True) -> NodePlan:
    settings = VxlanSettings(A("172.18.0.11"), 1450) if vxlan else None
    return NodePlan(RoutingSettings(), CLUSTER, tables, (), settings)


def test_rules_one_per_slot_plus_skip_and_nop() -> None:
    state = node_routing(plan(EgressTable(0, ()), EgressTable(2, ())), {})
    assert sorted(state.rules) == [
        Rule(100, RuleAction.GOTO, 0, 0x3F00, goto=101),
        Rule(100, RuleAction.LOOKUP, 0x100, 0x3F00, table=1000),
        Rule(100, RuleAction.LOOKUP, 0x300, 0x3F00, table=1002),
        Rule(101, RuleAction.NOP),
    ]
    assert node_routing(plan(), {}).rules == frozenset()  # nothing to steer: no rules at all


def test_table_routes() -> None:
    table = EgressTable(0, (EgressRoute.via(ANY, [GW1, GW2]), EgressRoute.throw(N("198.51.100.0/24")),
                            EgressRoute.unreachable(N("10.244.0.0/16"))))  # fmt: skip
    state = node_routing(plan(table), {})
    hops = frozenset({Hop(GW1, "egress.egw", True), Hop(GW2, "egress.egw", True)})
    assert state.routes == {
        Route(1000, ANY, RouteType.UNICAST, hops=hops),
        Route(1000, ANY, RouteType.UNREACHABLE, ownership.FALLBACK_METRIC),
        Route(1000, N("198.51.100.0/24"), RouteType.THROW),
        Route(1000, N("10.244.0.0/16"), RouteType.THROW),  # the cluster wins over the policy
        Route(1000, N("172.18.0.50/32"), RouteType.THROW),  # outer packets of the tunnel
        Route(1000, N("172.18.0.51/32"), RouteType.THROW),
    }
    assert {n.lladdr for n in state.neighbours} == {"a2:2a:ac:12:00:32", "a2:2a:ac:12:00:33"}
    assert {(f.lladdr, f.destination) for f in state.fdb} == {
        ("a2:2a:ac:12:00:32", GW1),
        ("a2:2a:ac:12:00:33", GW2),
    }
    assert state.link is not None and state.link.mac == "a2:2b:ac:12:00:0b"


def test_native_hops_come_from_the_resolver_and_fail_closed() -> None:
    table = EgressTable(0, (EgressRoute.via(ANY, [GW1, GW2]),))
    state = node_routing(plan(table, vxlan=False), {GW1: "eth0"})
    unicast = next(r for r in state.routes if r.type is RouteType.UNICAST)
    assert unicast.hops == {Hop(GW1, "eth0")}
    assert state.link is None and not state.neighbours
    none = node_routing(plan(table, vxlan=False), {})
    assert {r.type for r in none.routes if r.destination == ANY} == {RouteType.UNREACHABLE}


def test_gateway_routing() -> None:
    gw = GatewayPlan(
        GW1,
        GW1,
        vxlan=GatewayVxlan(1450),
        return_routes=(
            ReturnRoute(N("10.244.1.0/24"), A("172.18.0.11")),
            ReturnRoute(N("10.244.2.0/24"), A("172.18.0.11")),
        ),
    )
    state = gateway_routing(gw)
    assert state.link is not None and (state.link.name, state.link.underlay) == ("vxlan0", "eth0")
    assert {r.destination for r in state.routes} == {N("10.244.1.0/24"), N("10.244.2.0/24")}
    assert all(
        r.table == 254 and r.hops == {Hop(A("172.18.0.11"), "vxlan0", True)} for r in state.routes
    )
    assert len(state.neighbours) == len(state.fdb) == 1
    assert gateway_routing(GatewayPlan(GW1, GW1, native=True)).link is None
