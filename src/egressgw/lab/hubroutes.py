"""The VNet fabric's routes from BGP: `python -m egressgw.lab.hubroutes --lab PREFIX`, run
inside the lab's VPC namespace, does what Azure Route Server does for a VNet: it programs
the routes the route servers learned (`hub.fabric_routes`: best paths' next hops, ECMP when
they differ) into the fabric's kernel, so return traffic to an egress IP goes to the node
that advertises it.

It follows each route server with `gobgp monitor global rib` (any update wakes it), reads
the full RIBs (the monitor's lines are only a signal), and makes the kernel's `proto bgp`
routes equal to them: replace what differs, delete what is no longer learned. It also
resyncs every RESYNC seconds. A route server that cannot be read keeps its last RIB, so a
restarting gobgpd does not blackhole the fabric.

Must not: touch routes of any other protocol, or run outside the lab's VPC namespace
(`lab up` starts it there; it uses `ip route` in its own namespace).
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from egressgw.drivers.routeserver import GOBGP, LearnedRoute, RouteServer, RouteServerError
from egressgw.lab import state
from egressgw.lab.hub import FabricRoutes, fabric_routes

log = logging.getLogger("egressgw.lab.hubroutes")
READY = "egressgw-hubroutes ready"
PROTO = "bgp"  # iproute2's name for protocol 186: these routes were learned over BGP
RESYNC = 1.0
_RETRY = 0.5


def parse_kernel(routes: Iterable[Mapping[str, Any]]) -> FabricRoutes:
    """`ip -j route show proto bgp` as prefix -> next hops."""
    found: FabricRoutes = {}
    for r in routes:
        dst = r["dst"] if "/" in r["dst"] else f"{r['dst']}/32"
        hops = [h["gateway"] for h in r.get("nexthops", [])] or [r.get("gateway")]
        found[IPv4Network(dst)] = tuple(sorted(IPv4Address(h) for h in hops if h))
    return found


def commands(have: FabricRoutes, want: FabricRoutes) -> list[str]:
    """The `ip -batch` lines that turn the kernel's `have` into `want`."""
    lines = [f"route del {net} proto {PROTO}" for net in have if net not in want]
    for net, hops in want.items():
        if have.get(net) == hops:
            continue
        via = " ".join(f"nexthop via {h}" for h in hops) if len(hops) > 1 else f"via {hops[0]}"
        lines.append(f"route replace {net} proto {PROTO} {via}")
    return lines


class Fabric:
    """Keeps the kernel's BGP routes equal to what the route servers learned."""

    def __init__(self, servers: Sequence[RouteServer]) -> None:
        self.servers = servers
        self.ribs: dict[str, list[LearnedRoute]] = {}
        self.wake = threading.Event()

    def sync(self) -> None:
        for rs in self.servers:
            try:
                self.ribs[rs.netns] = rs.learned_routes()
            except RouteServerError as err:  # keep its last RIB
                log.debug("cannot read %s: %s", rs.netns, err)
        want = fabric_routes(self.ribs.values())
        have = parse_kernel(json.loads(_ip("-j", "route", "show", "proto", PROTO) or "[]"))
        lines = commands(have, want)
        if lines:
            _ip("-batch", "-", stdin="\n".join(lines) + "\n")
            for line in lines:
                log.info("fabric: %s", line)

    def follow(self, rs: RouteServer) -> None:
        """Wake the sync on every line `gobgp monitor` prints; restart it when it ends."""
        argv = [GOBGP, "--target", f"unix://{rs.socket}", "-j", "monitor", "global", "rib"]
        while True:
            with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as mon:
                assert mon.stdout is not None
                for _line in mon.stdout:
                    self.wake.set()
            self.wake.set()
            time.sleep(_RETRY)

    def run(self) -> None:
        for rs in self.servers:
            threading.Thread(target=self.follow, args=(rs,), daemon=True).start()
        self.sync()
        print(f"{READY} servers={len(self.servers)}", flush=True)
        while True:
            self.wake.wait(RESYNC)
            self.wake.clear()
            try:
                self.sync()
            except (subprocess.SubprocessError, OSError, ValueError) as err:
                log.warning("sync failed, retrying: %s", err)


def _ip(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(["ip", *args], input=stdin, capture_output=True, text=True, check=True)
    return done.stdout


def main(argv: Sequence[str] | None = None) -> int:
    # Imported here: `lab.azure` imports this module (it starts it and reads its routes back).
    from egressgw.lab import azure

    parser = argparse.ArgumentParser(
        prog="egressgw.lab.hubroutes", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--lab", required=True, help="the lab's prefix")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    topology = state.load_topology(args.lab)
    if topology is None:
        raise SystemExit(f"lab {args.lab} has no topology")
    Fabric(list(azure.route_servers(topology).values())).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
