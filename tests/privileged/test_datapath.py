"""Packets, not objects: a node plan and a gateway plan applied with the real drivers to a
tiny topology, and an echo server that reports the source address it saw.

Both transports: VXLAN (to the gateway pod IP itself) and native (the gateway on-link).
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from ipaddress import IPv4Network

import pytest

from egressgw.drivers.gatewaynet import GatewayNet
from egressgw.drivers.netlink import NetlinkRouting
from egressgw.drivers.nftables import NodeNftables
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
from tests.privileged.datapath_topology import (
    DIRECT,
    DROPPED,
    ECHO_PORT,
    GW_IP,
    NODE_IP,
    POD1,
    POD2,
    VIA_GATEWAY,
    Topology,
)

pytestmark = pytest.mark.privileged

N = IPv4Network
POD_CIDR = N("10.244.1.0/24")
CLUSTER = (N("10.244.0.0/16"), N("10.96.0.0/12"), N("172.18.0.0/24"))
POLICY = EgressTable(0, (
    EgressRoute.via(N("0.0.0.0/0"), [GW_IP]),  # everything through the gateway...
    EgressRoute.throw(N("198.51.100.0/24")),  # ...but this range direct
    EgressRoute.unreachable(N("192.0.2.0/24")),  # ...and this one dropped (empty gateway set)
))  # fmt: skip


def node_plan(mode: str, classified: bool = True) -> NodePlan:
    marks = (Classification("cali1", POD1, 0),) if classified else ()
    vxlan = VxlanSettings(NODE_IP, 1450, "eth0") if mode == "vxlan" else None
    return NodePlan(RoutingSettings(), CLUSTER, (POLICY,), marks, vxlan)


def gateway_plan(mode: str) -> GatewayPlan:
    if mode == "native":
        return GatewayPlan(GW_IP, GW_IP, native=True)
    return GatewayPlan(
        GW_IP, GW_IP, vxlan=GatewayVxlan(1450), return_routes=(ReturnRoute(POD_CIDR, NODE_IP),)
    )


def apply_node(lab: Topology, plan: NodePlan) -> None:
    routing = NetlinkRouting(lab.ns("node"))
    try:
        assert routing.apply(plan).errors == ()
    finally:
        routing.close()
    assert NodeNftables(lab.ns("node")).apply(plan).errors == ()


@pytest.fixture(params=["vxlan", "native"])
def lab(request: pytest.FixtureRequest, run_prefix: str) -> Iterator[tuple[Topology, str]]:
    mode = request.param
    with Topology(f"{run_prefix}-{uuid.uuid4().hex[:4]}") as topology:
        apply_node(topology, node_plan(mode))
        assert GatewayNet(topology.ns("gw")).apply(gateway_plan(mode)).errors == ()
        topology.start_echo()
        yield topology, mode


def test_marked_pod_leaves_through_the_gateway_and_others_do_not(lab: tuple[Topology, str]) -> None:
    topology, _ = lab
    assert topology.echo("pod1", VIA_GATEWAY) == str(GW_IP)  # SNATed to the egress IP
    assert topology.echo("pod2", VIA_GATEWAY) == str(POD2)  # unclassified: untouched


def test_policy_table_routes_by_longest_prefix(lab: tuple[Topology, str]) -> None:
    topology, _ = lab
    assert topology.echo("pod1", DIRECT) == str(POD1)  # throw: normal routing
    dropped = topology.echo("pod1", DROPPED)
    assert dropped.startswith("error:") and "No route to host" in dropped  # unreachable
    assert topology.echo("pod2", DROPPED) == str(POD2)


def test_live_connection_keeps_its_path_when_the_map_changes(lab: tuple[Topology, str]) -> None:
    topology, mode = lab
    live = topology.connect("pod1", VIA_GATEWAY)
    try:
        assert live.ask() == str(GW_IP)
        apply_node(topology, node_plan(mode, classified=False))
        assert topology.echo("pod1", VIA_GATEWAY) == str(POD1)  # new connections: direct
        assert live.ask() == str(GW_IP)  # the conntrack mark still names the gateway table
    finally:
        live.close()


def test_throughput_direct_and_through_the_gateway(lab: tuple[Topology, str]) -> None:
    topology, mode = lab
    direct = topology.iperf("pod2", VIA_GATEWAY)
    gateway = topology.iperf("pod1", VIA_GATEWAY)
    print(f"\n{mode}: direct {direct:.1f} Gbit/s, via gateway {gateway:.1f} Gbit/s "
          f"({gateway / direct:.2f}x)")  # fmt: skip
    assert gateway > 0.25 * direct  # the naive VXLAN path managed 0.16x


# A client that connects from a chosen source port, sends one probe and prints the answer.
FROM_PORT = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[3]))); s.settimeout(3)
try:
    s.connect((sys.argv[1], int(sys.argv[2]))); s.sendall(b"?"); print(s.recv(64).decode())
except OSError as err:
    print(f"error: {err}")
"""


STALE = ("SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT")


@pytest.mark.parametrize("stale", [*STALE, "CLOSE"])
def test_a_new_connection_is_classified_even_over_a_stale_conntrack_entry(
    lab: tuple[Topology, str], stale: str
) -> None:
    """A connection leaves a conntrack entry with the mark of the slot it was classified
    into: SYN_SENT for two minutes when it was never answered, FIN_WAIT or ESTABLISHED when
    it was cut off (through a gateway that died). A new connection that reuses the source
    port meets that entry; it must be classified afresh, not sent to whatever table that
    slot number routes to now (here: slot 1, direct), whatever the entry's state."""
    topology, mode = lab
    direct = EgressTable(1, (EgressRoute.throw(N("0.0.0.0/0")),))
    plan = node_plan(mode)
    apply_node(topology, NodePlan(plan.routing, plan.cluster, (POLICY, direct),
                                  plan.classifications, plan.vxlan))  # fmt: skip
    port, stale_mark = "40123", str(RoutingSettings().mark(1))
    topology.exec("node", "conntrack", "-I", "-p", "tcp", "-s", str(POD1), "-d", str(VIA_GATEWAY),
                  "--sport", port, "--dport", str(ECHO_PORT), "-r", str(VIA_GATEWAY), "-q",
                  str(POD1), "--reply-port-src", str(ECHO_PORT), "--reply-port-dst", port,
                  "--state", stale, "-t", "120", "-m", stale_mark,
                  *(["-u", "SEEN_REPLY,ASSURED"] if stale != "SYN_SENT" else []))  # fmt: skip
    seen = topology.exec("pod1", sys.executable, "-c", FROM_PORT, str(VIA_GATEWAY),
                         str(ECHO_PORT), port).strip()  # fmt: skip
    assert seen == str(GW_IP)
