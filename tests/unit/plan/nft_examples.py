"""Plans shared by the nft golden and parsing tests (and used to record node_listing.json)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from egressgw.plan.dataplane import (
    Classification,
    EgressRoute,
    EgressTable,
    GatewayPlan,
    GatewayVxlan,
    NodePlan,
    ReturnRoute,
    RoutingSettings,
    VxlanSettings,
)

A, N = IPv4Address, IPv4Network
GW1, GW2 = A("172.18.0.50"), A("172.18.0.51")
CLUSTER = (N("10.244.0.0/16"), N("10.96.0.0/12"), N("172.18.0.11/32"), N("172.18.0.12/32"))


def table(slot: int, *gateways: IPv4Address) -> EgressTable:
    return EgressTable(
        slot, (EgressRoute.via(N("0.0.0.0/0"), gateways), EgressRoute.throw(N("198.51.100.0/24")))
    )


def node_a() -> NodePlan:
    """Two slots, three pods, VXLAN."""
    marks = (
        Classification("cali1a2b3c4d5e6", A("10.244.1.10"), 0),
        Classification("cali0f0f0f0f0f0", A("10.244.1.11"), 0),
        Classification("cali777", A("10.244.1.12"), 3),
    )
    return NodePlan(RoutingSettings(), CLUSTER, (table(0, GW1, GW2), table(3, GW2)), marks,
                    VxlanSettings(A("172.18.0.11"), 1450, "eth0"))  # fmt: skip


def node_b() -> NodePlan:
    """From node_a: slot 3 gone, slot 5 new, one pod moved, one gone, one new; a node left."""
    marks = (
        Classification("cali1a2b3c4d5e6", A("10.244.1.10"), 5),
        Classification("cali0f0f0f0f0f0", A("10.244.1.11"), 0),
        Classification("cali888", A("10.244.1.13"), 0),
    )
    return NodePlan(RoutingSettings(), CLUSTER[:3], (table(0, GW1, GW2), table(5, GW1)), marks,
                    VxlanSettings(A("172.18.0.11"), 1450, "eth0"))  # fmt: skip


def node_native() -> NodePlan:
    return NodePlan(RoutingSettings(mark_mask=0xF000), CLUSTER, (table(1, GW1),),
                    (Classification("veth1", A("10.244.1.20"), 1),))  # fmt: skip


def gateway() -> GatewayPlan:
    return GatewayPlan(GW1, GW1, vxlan=GatewayVxlan(1450), native=True,
                       return_routes=(ReturnRoute(N("10.244.1.0/24"), A("172.18.0.11")),))  # fmt: skip
