"""BGP advertisement end to end: two BIRD nodes, one GoBGP route server, all in namespaces.

Azure hub-spoke style (REF-AZ): nodes 10.1.0.4 and 10.1.0.5 are both route reflectors
(same cluster id, mesh off) and peer with a route server at 10.0.1.4 (AS 65515) in another
subnet, reachable only through the `reachableBy` route BIRD installs, keeping the original
next hop. The oracle is what gobgpd learned, read with the `gobgp` CLI and parsed here: it
imports nothing from egressgw. Every step also checks that no session was reset.

    vpc (bridge br0 10.1.0.1/24, router to 10.0.1.0/24)
     ├── a   eth0 10.1.0.4/24  BIRD, AS 63400
     ├── b   eth0 10.1.0.5/24  BIRD, AS 63400
     └── rs  eth0 10.0.1.4/24  gobgpd, AS 65515
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from ipaddress import IPv4Address, IPv4Network, ip_address
from pathlib import Path
from typing import Any

import pytest

from egressgw.calc.bgp import node_bgp_plan
from egressgw.drivers.bird import BirdDaemon
from egressgw.drivers.routeserver import RouteServer, RouteServerPeer
from egressgw.model import BGPConfiguration, BGPFilter, BGPPeer, IPPool, Node
from egressgw.plan.bgp import NodeBgpPlan

pytestmark = pytest.mark.privileged

A, B, ARS, GW = "10.1.0.4", "10.1.0.5", "10.0.1.4", "10.1.0.1"
AS_NODES, AS_ARS = 63400, 65515
BLOCK = {A: "10.244.0.0/26", B: "10.244.0.64/26"}
EGRESS = {A: "10.99.0.2/31", B: "10.99.0.4/31"}

Path_ = tuple[str, str, str, tuple[int, ...]]  # (prefix, next hop, source peer, AS path)


# ---------------------------------------------------------------- oracle (no egressgw imports)


def rs_paths(socket: Path) -> set[Path_]:
    """Every path gobgpd holds: prefix, next hop, which peer sent it, AS path."""
    rib = _gobgp(socket, "global", "rib")
    return {_path(prefix, p) for prefix, paths in rib.items() for p in paths}


def _path(prefix: str, path: dict[str, Any]) -> Path_:
    attrs = {a["type"]: a for a in path["attrs"]}
    as_path = tuple(asn for seg in attrs[2].get("as_paths", []) for asn in seg["asns"])
    return prefix, attrs[3]["nexthop"], path["neighbor-ip"], as_path


def rs_opens(socket: Path) -> dict[str, int]:
    """OPEN messages gobgpd received per neighbor: one per session; a reset adds one."""
    return {
        n["state"]["neighbor_address"]: n["state"]["messages"]["received"].get("open", 0)
        for n in _gobgp(socket, "neighbor")
    }


def _gobgp(socket: Path, *args: str) -> Any:
    out = subprocess.run(
        ["gobgp", "--target", f"unix://{socket}", "-j", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def bird_sessions(socket: Path) -> dict[str, tuple[str, datetime]]:
    """BGP protocol name -> (BGP state, when the protocol last changed state), from birdc."""
    out = subprocess.run(
        ["birdc", "-s", str(socket), "show", "protocols"], capture_output=True, text=True
    ).stdout
    rows = [line.split(None, 6) for line in out.splitlines()[2:]]
    return {
        r[0]: (r[6].strip(), datetime.fromisoformat(f"{r[4]} {r[5]}"))
        for r in rows
        if len(r) == 7 and r[1] == "BGP"
    }


def same_sessions(
    before: dict[str, tuple[str, datetime]], after: dict[str, tuple[str, datetime]]
) -> bool:
    """Same sessions, same state, same start. BIRD prints a monotonic time converted to wall
    clock when asked, so `since` jitters by a millisecond; a reset moves it by seconds (the
    reconnect waits `connect delay time`, 1 s)."""
    if before.keys() != after.keys():
        return False
    return all(
        before[n][0] == after[n][0] and abs(before[n][1] - after[n][1]) < timedelta(seconds=0.5)
        for n in before
    )


def kernel_route(netns: str, prefix: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        ["ip", "-n", netns, "-j", "route", "show", prefix], capture_output=True, text=True
    )
    return list(json.loads(out.stdout or "[]"))


def wait_for(check: Callable[[], bool], timeout: float = 20.0, what: str = "") -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.005)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def expected(adverts: dict[str, list[str]]) -> set[Path_]:
    """Both nodes send every advertised prefix (one originates, the other reflects it), and
    keepOriginalNextHop keeps the originating node as the next hop on both paths."""
    return {
        (prefix, origin, source, (AS_NODES,))
        for origin, prefixes in adverts.items()
        for prefix in prefixes
        for source in (A, B)
    }


# ---------------------------------------------------------------- topology


def _ip(netns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", netns, *args], check=True)


@dataclass
class Lab:
    ns: dict[str, str]
    state: Path
    birds: dict[str, BirdDaemon] = field(default_factory=dict)
    rs: RouteServer | None = None

    def build(self) -> None:
        for name in self.ns.values():
            subprocess.run(["ip", "netns", "add", name], check=True)
            _ip(name, "link", "set", "lo", "up")
        vpc = self.ns["vpc"]
        _ip(vpc, "link", "add", "br0", "type", "bridge")
        _ip(vpc, "addr", "add", f"{GW}/24", "dev", "br0")
        _ip(vpc, "link", "set", "br0", "up")
        for role, address in (("a", A), ("b", B)):
            self._veth(role, f"p{role}", f"{address}/24")
            _ip(vpc, "link", "set", f"p{role}", "master", "br0")
        self._veth("rs", "prs", f"{ARS}/24")
        _ip(vpc, "addr", "add", "10.0.1.1/24", "dev", "prs")
        _ip(self.ns["rs"], "route", "add", "default", "via", "10.0.1.1")
        subprocess.run(["ip", "netns", "exec", vpc, "sysctl", "-qw", "net.ipv4.ip_forward=1"])

    def _veth(self, role: str, vpc_end: str, address: str) -> None:
        """A veth pair created directly between two of our namespaces (never the host's)."""
        netns, vpc = self.ns[role], self.ns["vpc"]
        _ip(netns, "link", "add", "eth0", "type", "veth", "peer", "name", vpc_end, "netns", vpc)
        _ip(netns, "addr", "add", address, "dev", "eth0")
        _ip(netns, "link", "set", "eth0", "up")
        _ip(vpc, "link", "set", vpc_end, "up")

    def teardown(self) -> None:
        for bird in self.birds.values():
            bird.stop()
        if self.rs is not None:
            self.rs.stop()
        for name in self.ns.values():
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


@pytest.fixture
def lab(run_prefix: str, tmp_path: Path) -> Iterator[Lab]:
    suffix = uuid.uuid4().hex[:4]
    names = {role: f"{run_prefix}-{suffix}-{role}" for role in ("vpc", "a", "b", "rs")}
    built = Lab(names, tmp_path)
    try:
        built.build()
        yield built
    finally:
        built.teardown()


# ---------------------------------------------------------------- the cluster, as resources


def _node(name: str, address: str) -> Node:
    return Node.model_validate(
        {
            "metadata": {
                "name": name,
                "labels": {"route-reflector": "true"},
                "annotations": {"projectcalico.org/RouteReflectorClusterID": "244.0.0.1"},
            },
            "status": {"addresses": [{"type": "InternalIP", "address": address}]},
        }
    )


NODES = {A: _node("node-a", A), B: _node("node-b", B)}
CONFIG = BGPConfiguration.model_validate(
    {"metadata": {"name": "default"}, "spec": {"nodeToNodeMeshEnabled": False, "asNumber": 63400}}
)
RR_PEERS = BGPPeer.model_validate(
    {
        "metadata": {"name": "peer-with-route-reflectors"},
        "spec": {"nodeSelector": "all()", "peerSelector": "route-reflector == 'true'"},
    }
)


def _ars_peer(filters: list[str]) -> BGPPeer:
    spec = {
        "peerIP": ARS,
        "reachableBy": GW,
        "asNumber": AS_ARS,
        "keepOriginalNextHop": True,
        "nodeSelector": "route-reflector == 'true'",
        "filters": filters,
    }
    return BGPPeer.model_validate({"metadata": {"name": "azure-route-server-a"}, "spec": spec})


def _pools(pod_export: bool) -> list[IPPool]:
    pod = {"cidr": "10.244.0.0/16", "disableBGPExport": not pod_export}
    egress = {"cidr": "10.99.0.0/29", "blockSize": 31, "nodeSelector": "!all()"}
    return [
        IPPool.model_validate({"metadata": {"name": "default-ipv4-ippool"}, "spec": pod}),
        IPPool.model_validate({"metadata": {"name": "tenant0-pool"}, "spec": egress}),
    ]


def _filter(name: str, rules: list[dict[str, Any]]) -> BGPFilter:
    return BGPFilter.model_validate({"metadata": {"name": name}, "spec": {"exportV4": rules}})


EXPORT_EGRESS = _filter(
    "export-egress-ips", [{"action": "Reject", "matchOperator": "NotIn", "cidr": "10.99.0.0/29"}]
)
FIRST_MATCH = _filter(
    "first-match",
    [
        {"action": "Accept", "matchOperator": "Equal", "cidr": BLOCK[A]},
        {"action": "Reject", "matchOperator": "NotIn", "cidr": "10.99.0.0/29"},
    ],
)


@dataclass(frozen=True)
class Cluster:
    pod_export: bool = True
    filter: BGPFilter | None = None
    egress: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {A: ("10.99.0.2",), B: ("10.99.0.4",)}
    )
    blocks: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {A: (BLOCK[A],), B: (BLOCK[B],)}
    )

    def plan(self, node: str) -> NodeBgpPlan:
        filters = {} if self.filter is None else {self.filter.metadata.name: self.filter}
        names = list(filters)
        return node_bgp_plan(
            NODES[node],
            list(NODES.values()),
            CONFIG,
            [RR_PEERS, _ars_peer(names)],
            filters,
            _pools(self.pod_export),
            [IPv4Network(b) for b in self.blocks[node]],
            [IPv4Address(ip) for ip in self.egress[node]],
        )


def apply(lab: Lab, cluster: Cluster, order: tuple[str, ...] = (A, B)) -> None:
    for node in order:
        lab.birds[node].apply(cluster.plan(node))


# ---------------------------------------------------------------- the test


def test_route_server_learns_what_the_nodes_advertise(lab: Lab) -> None:
    cluster = Cluster()
    lab.rs = RouteServer(
        lab.ns["rs"],
        lab.state / "rs",
        asn=AS_ARS,
        address=ip_address(ARS),
        peers=[RouteServerPeer(ip_address(n), AS_NODES) for n in (A, B)],
    )
    lab.rs.start()
    for node, role in ((A, "a"), (B, "b")):
        lab.birds[node] = BirdDaemon(lab.ns[role], lab.state / role)
        lab.birds[node].start(cluster.plan(node))
    socket = lab.rs.socket
    lab.rs.wait_established([ip_address(A), ip_address(B)])

    # reachableBy: the only way to the route server is the /32 BIRD installed via 10.1.0.1.
    [route] = kernel_route(lab.ns["a"], f"{ARS}/32")
    assert (route["gateway"], route["protocol"]) == (GW, "bird")

    everything = expected({A: [BLOCK[A], EGRESS[A]], B: [BLOCK[B], EGRESS[B]]})
    wait_for(lambda: rs_paths(socket) == everything, what="initial advertisement")
    # The route-server driver reads the same thing, shaped like Azure's learned routes.
    learned = {
        (str(r.network), str(r.next_hop), str(r.source_peer), r.as_path)
        for r in lab.rs.learned_routes()
    }
    assert learned == everything
    sample = lab.rs.learned_routes(ip_address(A))[0].as_azure(AS_ARS)
    assert set(sample) == {
        "localAddress",
        "network",
        "nextHop",
        "sourcePeer",
        "asPath",
        "origin",
        "weight",
    }
    assert sample["origin"] == "EBgp" and sample["asPath"] == "63400"

    opens = rs_opens(socket)
    sessions = {n: bird_sessions(lab.birds[n].socket) for n in (A, B)}
    assert all(
        len(s) == 2 and all(v[0] == "Established" for v in s.values()) for s in sessions.values()
    )
    _check_driver_readback(lab)

    def sessions_kept() -> None:
        assert rs_opens(socket) == opens, "a route-server session was reset"
        for n in (A, B):
            now = bird_sessions(lab.birds[n].socket)
            assert same_sessions(sessions[n], now), f"a session of {n} was reset: {now}"

    egress_only = expected({A: [EGRESS[A]], B: [EGRESS[B]]})

    # disableBGPExport on the pod pool: only the egress /31s remain.
    apply(lab, Cluster(pod_export=False))
    wait_for(lambda: rs_paths(socket) == egress_only, what="pod blocks withdrawn")
    sessions_kept()

    # Export filter Reject NotIn the egress pool, pod export back on: still egress only.
    apply(lab, Cluster(filter=EXPORT_EGRESS))
    wait_for(lambda: rs_paths(socket) == egress_only, what="filtered to egress")
    sessions_kept()

    # First match wins: an Accept for A's pod block placed before the Reject lets it out.
    apply(lab, Cluster(filter=FIRST_MATCH))
    with_block = egress_only | expected({A: [BLOCK[A]]})
    wait_for(lambda: rs_paths(socket) == with_block, what="first-match accept")
    sessions_kept()

    # A reconfigure that changes no session: identical file, then a new pod block on A.
    cluster = Cluster(filter=EXPORT_EGRESS)
    apply(lab, cluster)
    wait_for(lambda: rs_paths(socket) == egress_only, what="back to egress only")
    subprocess.run(
        ["birdc", "-s", str(lab.birds[A].socket), "configure"], check=True, capture_output=True
    )
    grown = Cluster(
        pod_export=True, filter=None, blocks={A: (BLOCK[A], "10.244.1.0/26"), B: (BLOCK[B],)}
    )
    apply(lab, grown)
    wait_for(lambda: ("10.244.1.0/26", A, A, (AS_NODES,)) in rs_paths(socket), what="new block")
    sessions_kept()
    apply(lab, cluster)
    wait_for(lambda: rs_paths(socket) == egress_only, what="egress only again")

    # Move the gateway IP 10.99.0.2 between nodes; time until the route server follows.
    delays = [_move(lab, socket, trial) for trial in range(6)]
    sessions_kept()
    report = (
        f"egress /31 move, route server next hop follows: p50 {statistics.median(delays) * 1000:.0f} ms,"
        f" max {max(delays) * 1000:.0f} ms over {len(delays)} moves"
    )
    print(report)
    assert max(delays) < 5.0, report


def _check_driver_readback(lab: Lab) -> None:
    """The driver's readbacks agree with birdc and with the kernel of node A."""
    bird = lab.birds[A]
    established = {p.name for p in bird.protocols() if p.established}
    assert established == set(bird_sessions(bird.socket)) == {"Peer_10_0_1_4", "Node_10_1_0_5"}
    learned = [r for r in bird.routes() if str(r.network) == EGRESS[B] and r.primary]
    assert [(str(r.learned_from), [str(h) for h in r.next_hops]) for r in learned] == [(B, [B])]
    [route] = kernel_route(lab.ns["a"], EGRESS[B])
    assert (route["gateway"], route["protocol"]) == (B, "bird")
    own = {str(r.network) for r in bird.routes() if r.protocol == "egw_local4"}
    assert own == {BLOCK[A], EGRESS[A]}


def _move(lab: Lab, socket: Path, trial: int) -> float:
    """Move 10.99.0.2 from one node to the other (add on the new node first, then remove)."""
    old, new = (A, B) if trial % 2 == 0 else (B, A)
    egress = {old: (), new: ("10.99.0.2",)}
    egress[B] = (*egress[B], "10.99.0.4")
    moved = Cluster(filter=EXPORT_EGRESS, egress=egress)
    want = {(EGRESS[A], new, source, (AS_NODES,)) for source in (A, B)}

    def followed() -> bool:
        return {p for p in rs_paths(socket) if p[0] == EGRESS[A]} == want

    start = time.monotonic()
    apply(lab, moved, order=(new, old))
    wait_for(followed, timeout=10.0, what=f"move {trial} to {new}")
    delay = time.monotonic() - start
    assert {p for p in rs_paths(socket) if p[0] == EGRESS[B]} == {
        (EGRESS[B], B, s, (AS_NODES,)) for s in (A, B)
    }
    return delay
