"""Benchmark: forwarding through a client node with 10,000 classified pods vs 1 (needs root).

The reference gives every client pod its own `ip rule`, which the kernel walks per packet
(10,000 rules cut a node's throughput tenfold here). egressgw classifies new connections
with one O(1) nft map lookup and keeps one rule per distinct configuration. This measures
single-stream iperf3 throughput of a steered pod (through the gateway) and of an unsteered
pod (direct) when the node holds 1 classification and 1 table, and when it holds 10,001
classifications spread over 62 tables (so 62 `ip rule`s). Goal: >= 0.9x.

Prints its figures; the last line is one JSON object of them.
Run: .venv/bin/python bench/forwarding.py (as root)
"""

from __future__ import annotations

import json
import statistics
import sys
import uuid
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.privileged.datapath_topology import GW_IP, POD1, VIA_GATEWAY, Topology

from egressgw.drivers.gatewaynet import GatewayNet
from egressgw.drivers.netlink import NetlinkRouting
from egressgw.drivers.nftables import NodeNftables
from egressgw.plan.dataplane import (
    Classification,
    EgressRoute,
    EgressTable,
    GatewayPlan,
    NodePlan,
    RoutingSettings,
)

RUNS = 5
CLUSTER = (IPv4Network("10.244.0.0/16"), IPv4Network("172.18.0.0/24"))
PREFIX = f"egwbf{uuid.uuid4().hex[:4]}"


def plan(extra: int, tables: int) -> NodePlan:
    route = EgressRoute.via(IPv4Network("0.0.0.0/0"), [GW_IP])
    tabs = tuple(EgressTable(s, (route, EgressRoute.throw(IPv4Network(f"198.18.{s}.0/24"))))
                 for s in range(tables))
    others = tuple(
        Classification(f"calx{i // 250:04d}", IPv4Address(f"10.245.{i // 250}.{i % 250 + 1}"), i % tables)
        for i in range(extra)
    )
    return NodePlan(RoutingSettings(), CLUSTER, tabs, (Classification("cali1", POD1, 0), *others))


def measure(extra: int, tables: int) -> tuple[float, float]:
    with Topology(f"{PREFIX}{extra % 7}") as lab:
        node_plan = plan(extra, tables)
        routing = NetlinkRouting(lab.ns("node"))
        routing.apply(node_plan)
        routing.close()
        NodeNftables(lab.ns("node")).apply(node_plan)
        GatewayNet(lab.ns("gw")).apply(GatewayPlan(GW_IP, GW_IP, native=True))
        steered = statistics.median(lab.iperf("pod1", VIA_GATEWAY) for _ in range(RUNS))
        direct = statistics.median(lab.iperf("pod2", VIA_GATEWAY) for _ in range(RUNS))
    return steered, direct


def main() -> None:
    one_steered, one_direct = measure(0, 1)
    many_steered, many_direct = measure(10_000, 62)
    figures = {
        "1 pod: steered Gbit/s": one_steered,
        "1 pod: direct Gbit/s": one_direct,
        "10k pods: steered Gbit/s": many_steered,
        "10k pods: direct Gbit/s": many_direct,
        "steered ratio 10k/1": many_steered / one_steered,
        "direct ratio 10k/1": many_direct / one_direct,
    }
    for label, value in figures.items():
        print(f"{label:32s} {value:8.2f}")
    print(json.dumps({k: round(v, 3) for k, v in figures.items()}))


if __name__ == "__main__":
    main()
