"""Benchmark: the client-node and gateway dataplane (needs root; namespaces only).

1. nftables: time to apply a 10,000-entry classification change (goal: <= 200 ms), as an
   add (10k -> 20k entries), a delete (20k -> 10k) and a replacement (10k by 10k others).
2. netlink: time for the routing driver to drop one gateway of three from 50 tables (the
   failover step: resilient groups replaced in place), and to re-apply an unchanged plan.
3. iperf3, single TCP stream, in the tests' topology (tests/privileged/datapath_topology.py):
   direct (unclassified pod) vs through the gateway, native and VXLAN; and VXLAN with TX
   checksum offload turned off on the tunnel device, the way the reference configures it.

Prints its figures; the last line is one JSON object of them. Numbers on a shared 2-CPU VM
move by +-20% from run to run: each throughput is the median of RUNS.

Run: sudo .venv/bin/python bench/dataplane_apply.py
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.privileged.datapath_topology import GW_IP, NODE_IP, POD1, VIA_GATEWAY, Topology

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

PREFIX = f"egwbench{uuid.uuid4().hex[:4]}"
RUNS = 5
A, N = IPv4Address, IPv4Network
CLUSTER = (N("10.244.0.0/16"), N("10.96.0.0/12"), N("172.18.0.0/24"))
VXLAN = VxlanSettings(NODE_IP, 1450, "eth0")


def pods(count: int, first: int = 0) -> tuple[Classification, ...]:
    def one(i: int) -> Classification:
        return Classification(
            f"cali{i % 250:05d}", A(f"10.{(i >> 16) % 256}.{(i >> 8) % 256}.{i % 256}"), 0
        )

    return tuple(one(i) for i in range(first, first + count))


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def policy(slot: int, gateways: list[IPv4Address]) -> EgressTable:
    return EgressTable(
        slot, (EgressRoute.via(N("0.0.0.0/0"), gateways), EgressRoute.throw(N("198.51.100.0/24")))
    )


def bench_nft(netns: str) -> dict[str, float]:
    driver = NodeNftables(netns)
    table = (policy(0, [GW_IP]),)

    def plan(marks: tuple[Classification, ...]) -> NodePlan:
        return NodePlan(RoutingSettings(), CLUSTER, table, marks, VXLAN)

    driver.apply(plan(pods(10_000)))
    steps = {
        "nft add 10k (to 20k) ms": plan(pods(20_000)),
        "nft delete 10k (to 10k) ms": plan(pods(10_000)),
        "nft replace 10k by 10k ms": plan(pods(10_000, first=50_000)),
        "nft unchanged 10k ms": plan(pods(10_000, first=50_000)),
    }
    return {label: timed(lambda p=step: driver.apply(p)) for label, step in steps.items()}


def bench_netlink(netns: str) -> dict[str, float]:
    subprocess.run(
        ["ip", "-n", netns, "link", "add", "eth0", "type", "veth", "peer", "name", "p0"], check=True
    )
    subprocess.run(["ip", "-n", netns, "addr", "add", f"{NODE_IP}/24", "dev", "eth0"], check=True)
    for dev in ("eth0", "p0"):
        subprocess.run(["ip", "-n", netns, "link", "set", dev, "up"], check=True)
    gateways = [A("172.18.0.50"), A("172.18.0.51"), A("172.18.0.52")]

    def plan(gws: list[IPv4Address]) -> NodePlan:
        return NodePlan(
            RoutingSettings(), CLUSTER, tuple(policy(s, gws) for s in range(50)), (), VXLAN
        )

    driver = NetlinkRouting(netns)
    try:
        first = timed(lambda: driver.apply(plan(gateways)))
        failover = timed(lambda: driver.apply(plan(gateways[:2])))
        unchanged = timed(lambda: driver.apply(plan(gateways[:2])))
    finally:
        driver.close()
    return {"netlink first apply, 50 tables ms": first, "netlink drop 1 of 3 gateways, 50 tables ms": failover,
            "netlink unchanged, 50 tables ms": unchanged}  # fmt: skip


def throughput(mode: str, tx_off: bool = False) -> dict[str, float]:
    with Topology(f"{PREFIX}{mode[0]}{int(tx_off)}") as lab:
        vxlan = VXLAN if mode == "vxlan" else None
        plan = NodePlan(
            RoutingSettings(),
            CLUSTER,
            (policy(0, [GW_IP]),),
            (Classification("cali1", POD1, 0),),
            vxlan,
        )
        routing = NetlinkRouting(lab.ns("node"))
        routing.apply(plan)
        routing.close()
        NodeNftables(lab.ns("node")).apply(plan)
        gw = GatewayPlan(GW_IP, GW_IP, native=mode == "native")
        if mode == "vxlan":
            gw = GatewayPlan(
                GW_IP,
                GW_IP,
                vxlan=GatewayVxlan(1450),
                return_routes=(ReturnRoute(N("10.244.1.0/24"), NODE_IP),),
            )
        GatewayNet(lab.ns("gw")).apply(gw)
        if tx_off:
            lab.exec("node", "ethtool", "-K", "egress.egw", "tx", "off")
            lab.exec("gw", "ethtool", "-K", "vxlan0", "tx", "off")
        direct = statistics.median(lab.iperf("pod2", VIA_GATEWAY) for _ in range(RUNS))
        via = statistics.median(lab.iperf("pod1", VIA_GATEWAY) for _ in range(RUNS))
    label = f"{mode}{' tx-csum off' if tx_off else ''}"
    return {
        f"{label} direct Gbit/s": direct,
        f"{label} via gateway Gbit/s": via,
        f"{label} ratio": via / direct,
    }


def main() -> None:
    figures: dict[str, float] = {}
    for name, bench in (("nft", bench_nft), ("rt", bench_netlink)):
        netns = f"{PREFIX}-{name}"
        subprocess.run(["ip", "netns", "add", netns], check=True)
        try:
            figures |= bench(netns)
        finally:
            subprocess.run(["ip", "netns", "del", netns], check=False)
    for mode, tx_off in (("native", False), ("vxlan", False), ("vxlan", True)):
        figures |= throughput(mode, tx_off)
    for label, value in figures.items():
        print(f"{label:48s} {value:8.2f}")
    print(json.dumps({k: round(v, 2) for k, v in figures.items()}))


if __name__ == "__main__":
    main()
