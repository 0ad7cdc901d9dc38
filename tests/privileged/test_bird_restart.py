"""A killed BIRD is restarted by the agent, and nobody loses its routes meanwhile.

The topology of test_bgp.py (nodes A and B, route reflectors of one cluster, both peering
with a GoBGP route server through a router): each node's BIRD is driven by the agent's real
BgpAgent; the route server is a graceful-restart helper, as the lab's are. BIRD on A is
killed with SIGKILL. Sampled every 50 ms from the kill until A's sessions are back: the
route server's path for A's egress /31 *from A itself* (B's reflected copy would hide a
withdrawal), and the route A's kernel holds for B's egress /31 (BIRD installed it; a
recovering BIRD must not flush it). The oracle reads gobgp, birdc, ip and /proc; it imports
nothing from egressgw.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path

import pytest

from egressgw.agent.bgp import BgpAgent
from egressgw.drivers.bird import BirdDaemon
from egressgw.drivers.routeserver import RouteServer, RouteServerPeer
from tests.privileged.test_bgp import (
    ARS,
    AS_ARS,
    AS_NODES,
    EGRESS,
    NODES,
    A,
    B,
    Cluster,
    Lab,
    bird_sessions,
    kernel_route,
    rs_opens,
    rs_paths,
    wait_for,
)

pytestmark = pytest.mark.privileged

SAMPLE = 0.05


@dataclass
class Sampler:
    """Every 50 ms: does the route server hold A's /31 from A, does A's kernel route B's?"""

    rs_socket: Path
    netns_a: str
    samples: list[tuple[float, bool, bool]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> list[tuple[float, bool, bool]]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.samples

    def _run(self) -> None:
        mine = (EGRESS[A], A, A, (AS_NODES,))
        while not self._stop.is_set():
            start = time.monotonic()
            held = mine in rs_paths(self.rs_socket)
            kernel = bool(kernel_route(self.netns_a, EGRESS[B]))
            self.samples.append((start, held, kernel))
            self._stop.wait(max(0.0, SAMPLE - (time.monotonic() - start)))


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except FileNotFoundError:
        return []


@pytest.fixture
def bgp_lab(run_prefix: str, tmp_path: Path) -> Iterator[Lab]:
    names = {r: f"{run_prefix}-{uuid.uuid4().hex[:4]}-{r}" for r in ("vpc", "a", "b", "rs")}
    built = Lab(names, tmp_path)
    try:
        built.build()
        yield built
    finally:
        built.teardown()


def test_agent_restarts_killed_bird_and_route_server_keeps_routes(bgp_lab: Lab) -> None:
    lab, cluster = bgp_lab, Cluster()
    lab.rs = RouteServer(
        lab.ns["rs"],
        lab.state / "rs",
        asn=AS_ARS,
        address=ip_address(ARS),
        peers=[RouteServerPeer(ip_address(n), AS_NODES) for n in (A, B)],
        graceful_restart_time=120,
        connect_retry=1,
    )
    lab.rs.start()
    agents: dict[str, BgpAgent] = {}
    try:
        for node, role in ((A, "a"), (B, "b")):
            lab.birds[node] = BirdDaemon(lab.ns[role], lab.state / role)
            agents[node] = BgpAgent(NODES[node].metadata.name, lab.birds[node])
            agents[node].apply_plan(cluster.plan(node))
        _check_restart(lab, agents[A])
    finally:
        for agent in agents.values():
            agent.close()


def _check_restart(lab: Lab, agent: BgpAgent) -> None:
    rs, bird = lab.rs, lab.birds[A]
    assert rs is not None
    rs.wait_established([ip_address(A), ip_address(B)])

    def settled() -> bool:
        sessions = bird_sessions(bird.socket)
        return (
            len(sessions) == 2
            and all(s == "Established" for s, _ in sessions.values())
            and (EGRESS[A], A, A, (AS_NODES,)) in rs_paths(rs.socket)
            and bool(kernel_route(lab.ns["a"], EGRESS[B]))
        )

    wait_for(settled, what="sessions and routes before the kill")
    opens = rs_opens(rs.socket)[A]
    old = int(bird.pidfile.read_text())
    sampler = Sampler(rs.socket, lab.ns["a"])
    sampler.start()
    time.sleep(0.3)
    killed = time.monotonic()
    os.kill(old, signal.SIGKILL)

    def back() -> bool:
        try:
            pid = int(bird.pidfile.read_text())
        except (FileNotFoundError, ValueError):
            return False
        return pid != old and "-R" in cmdline(pid) and settled() and rs_opens(rs.socket)[A] > opens

    took = wait_for(back, timeout=15.0, what="BIRD restarted, sessions established again")
    time.sleep(1.0)  # past the End-of-RIB, when the helper drops what stayed stale
    samples = sampler.stop()
    after = [s for s in samples if s[0] >= killed]
    lost = [round(t - killed, 2) for t, held, _ in after if not held]
    flushed = [round(t - killed, 2) for t, _, kernel in after if not kernel]
    print(f"BIRD killed -> restarted, sessions Established: {took * 1000:.0f} ms;"
          f" {len(after)} samples, route server without the route in {len(lost)}")
    assert agent.restarts == 1
    assert len(after) > 20 * (took + 1.0) * 0.5, "the sampler fell behind"
    assert lost == [], f"the route server lost A's egress route at {lost} s after the kill"
    assert flushed == [], f"A's kernel lost B's egress route at {flushed} s after the kill"
    assert took < 8.0
