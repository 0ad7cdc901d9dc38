"""Benchmark: a gateway replica moves to another node -> the route servers' next hop follows
(needs root).

Brings up the Azure lab (two nodes running BIRD, two GoBGP route servers, the VNet fabric
programmed from what they learn), turns egress on for namespace default (tenant0), then
moves gateway pod tenant0-egw-0 between the two nodes N times (its address stays; the
kubelet rewires it, the agents move its /31 advertisement). Per move, from the store write:
- `route servers`: until both route servers hold the /31 from both nodes with the new node
  as next hop (read from gobgpd every ~5 ms);
- `fabric`: until the fabric's kernel routes the /31 to the new node;
- `traffic`: until a new connection from netshoot to www.tigera.io is answered through the
  moved gateway (the firewall saw its address): rewiring, gateway start, readiness.
Goal (issue 5): route servers within 2 s.

Then, once each, how long the fabric lacks the /31 of a gateway on the node whose BIRD is
(a) reset with `birdc restart all`, (b) killed (its agent restarts it, `bird -R`).
bench/bgp_restart.py follows BIRD restarts in more detail.

Prints its figures; the last line is one JSON object.
Run: .venv/bin/python bench/bgp_follow.py [N]     (as root; N moves, default 20)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from egressgw.lab import azure, observe, scenarios, up
from egressgw.lab.running import LabHandle, with_store
from egressgw.lab.topology import Topology, pod_ns
from egressgw.lab.walkthrough import Walkthrough

GOAL = 2.0
POD = ("tenant0-egw", "tenant0-egw-0")
TIGERA = IPv4Address("203.0.113.30")


def until(check: Callable[[], bool], start: float, timeout: float = 20.0) -> float:
    while not check():
        if time.monotonic() - start > timeout:
            raise TimeoutError("not within the timeout")
        time.sleep(0.005)
    return time.monotonic() - start


def paths(t: Topology, root: Path, block: IPv4Network) -> set[tuple[str, object]]:
    return {
        (rs.name, r.next_hop)
        for rs in t.route_servers()
        for r in azure.learned(t, rs.name, root)
        if r.network == block
    }


def move(handle: LabHandle, t: Topology, node: str) -> dict[str, float]:
    gw = t.find(*POD)
    assert gw is not None
    block, hop = IPv4Network(f"{gw.ip}/31", strict=False), t.node(node).ip
    want = {(rs.name, hop) for rs in t.route_servers()}
    client = t.find("default", "netshoot")
    assert client is not None

    def through_moved() -> bool:
        observe.clear_seen(t.prefix)
        answer = observe.http(pod_ns(t.prefix, client), TIGERA, "www.tigera.io")
        return answer.status == 200 and {s.source for s in observe.firewall_seen(t.prefix)} == {
            gw.ip
        }

    start = time.monotonic()
    observe.move_gateway(handle, *POD, node)
    rs = until(lambda: paths(t, handle.root, block) == want, start)
    fabric = until(lambda: azure.fabric(t).get(block) == (hop,), start)
    traffic = until(through_moved, start)
    return {"route_servers": rs, "fabric": fabric, "traffic": traffic}


def outage(t: Topology, root: Path, node: str, action: Callable[[Path], None]) -> float:
    """How long the fabric lacks the /31s `node` advertises while `action` runs on its BIRD."""
    hop = t.node(node).ip
    mine = {net for net, hops in azure.fabric(t).items() if hops == (hop,) and net.prefixlen == 31}
    bird = azure.bird_dir(t.prefix, node, root)
    missing_since: float | None = None
    longest = 0.0
    start = time.monotonic()
    action(bird)
    while time.monotonic() - start < 8.0:
        present = mine <= set(azure.fabric(t))
        now = time.monotonic()
        if not present and missing_since is None:
            missing_since = now
        if present and missing_since is not None:
            longest, missing_since = max(longest, now - missing_since), None
        time.sleep(0.005)
    return longest


def restart_all(bird: Path) -> None:
    subprocess.run(
        ["birdc", "-s", str(bird / "bird.ctl"), "restart", "all"], capture_output=True, check=True
    )


def kill(bird: Path) -> None:
    """SIGKILL the node's BIRD; its agent starts it again (-R)."""
    os.kill(int((bird / "bird.pid").read_text()), signal.SIGKILL)


def pct(values: list[float], q: float) -> int:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] * 1000)


def main(moves: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="egw-bgp-"))
    handle = up.up(scenarios.AZURE, f"egb{os.getpid() % 10000:04d}", root=root)
    try:
        w = Walkthrough.load(handle)
        with_store(handle, w.enable_egress)
        t = handle.topology()
        gw = t.find(*POD)
        assert gw is not None
        nodes = [n.name for n in t.nodes]
        home = gw.node
        results = []
        for i in range(moves):
            target = nodes[(nodes.index(home) + 1 + i) % len(nodes)]
            results.append(figures := move(handle, t, target))
            print(
                f"move {i + 1} -> {target}: "
                + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in figures.items()),
                flush=True,
            )
        gw = handle.topology().find(*POD)
        assert gw is not None
        outages = {
            "birdc restart all": outage(t, root, gw.node, restart_all),
            "kill -9, the agent restarts it": outage(t, root, gw.node, kill),
        }
        for what, seconds in outages.items():
            print(
                f"{what} on the gateway's node: fabric without its /31 for {seconds * 1000:.0f} ms"
            )
        summary: dict[str, object] = {"moves": moves}
        for key in ("route_servers", "fabric", "traffic"):
            values = [r[key] for r in results]
            summary |= {
                f"{key}_p50_ms": pct(values, 0.5),
                f"{key}_p90_ms": pct(values, 0.9),
                f"{key}_max_ms": round(max(values) * 1000),
            }
            print(
                f"{key}: p50 {pct(values, 0.5)} ms, p90 {pct(values, 0.9)} ms, max {max(values) * 1000:.0f} ms"
            )
        summary |= {f"outage_{k.split()[0]}_ms": round(v * 1000) for k, v in outages.items()}
        summary |= {
            "goal_route_servers_ms": GOAL * 1000,
            "met": max(r["route_servers"] for r in results) < GOAL,
        }
        print(json.dumps(summary))
    finally:
        handle.down()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
