"""The Azure hub-spoke scenario end to end: real controller, kubelet, agents running BIRD,
gateways, two GoBGP route servers, the hub firewall and the VNet fabric, on a lab of
namespaces.

The lab comes up once for the module and always goes down. Oracles import nothing from
egressgw: what a route server learned is read with the `gobgp` CLI on its API socket; what
the firewall saw from its nftables sets and conntrack; what the fabric routes from `ip -j
route`; what a client gets from `curl` inside netshoot's namespace; which node hosts a
gateway from the nodes' kernels. egressgw is used only to drive (bring the lab up, edit the
store, run the demo). Layout (documented in egressgw.lab): route server `rs-a` is 10.0.1.4,
`rs-b` 10.0.1.5, both AS 65515; nodes 10.1.0.4 and 10.1.0.5, AS 63400; the firewall's
public address is 198.51.100.1; www.tigera.io is played by 203.0.113.30, 8.8.8.8 by
203.0.113.8.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest

from egressgw.lab import demo_azure, observe, scenarios, up
from egressgw.lab.running import LabHandle, with_store
from egressgw.lab.walkthrough import Walkthrough

pytestmark = pytest.mark.e2e
NODES = {"aks-node-1": "10.1.0.4", "aks-node-2": "10.1.0.5"}
POD_BLOCKS = {"10.244.0.0/26": "10.1.0.4", "10.244.0.64/26": "10.1.0.5"}
SERVERS = ("rs-a", "rs-b")
AS_NODES = 63400
TIGERA, GOOGLE_DNS, FIREWALL_PUBLIC = "203.0.113.30", "203.0.113.8", "198.51.100.1"
TENANT0, TENANT1 = IPv4Network("10.99.0.0/29"), IPv4Network("10.99.0.8/29")
DENY = (470, "Action: Deny. Reason: No rule matched. Proceeding with default action.")
Path_ = tuple[str, str, str, tuple[int, ...]]  # prefix, next hop, source peer, AS path
BUILT: dict[str, float] = {}


# --- oracles (no egressgw) ------------------------------------------------------------------


def gobgp(lab: LabHandle, rs: str, *args: str) -> Any:
    socket = lab.root / lab.prefix / "hub" / rs / "gobgpd.sock"
    done = subprocess.run(
        ["gobgp", "--target", f"unix://{socket}", "-j", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def learned(lab: LabHandle, rs: str) -> set[Path_]:
    """Every path the route server holds, from its RIB."""
    found = set()
    for prefix, paths in gobgp(lab, rs, "global", "rib").items():
        for p in paths:
            attrs = {a["type"]: a for a in p["attrs"]}
            as_path = tuple(n for seg in attrs[2].get("as_paths", []) for n in seg["asns"])
            found.add((prefix, attrs[3]["nexthop"], p["neighbor-ip"], as_path))
    return found


def sessions(lab: LabHandle, rs: str) -> dict[str, tuple[int, int]]:
    """Neighbor -> (session state, OPENs received): 6 is Established; a reset adds an OPEN."""
    return {
        n["state"]["neighbor_address"]: (
            n["state"]["session_state"],
            n["state"]["messages"]["received"].get("open", 0),
        )
        for n in gobgp(lab, rs, "neighbor")
    }


def sent_by_every_node(adverts: dict[str, str]) -> set[Path_]:
    """Both nodes send every prefix (own or learned over iBGP); the origin stays next hop."""
    return {(p, hop, node, (AS_NODES,)) for p, hop in adverts.items() for node in NODES.values()}


def run(ns: str, *argv: str) -> str:
    done = subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True)
    return done.stdout


def gateways(lab: LabHandle) -> dict[str, tuple[str, str]]:
    """Gateway pod -> (its address, the node whose kernel routes it to a pod veth)."""
    found = {}
    for ns in namespaces_with(f"{lab.prefix}-gw-"):
        links = json.loads(run(ns, "ip", "-j", "-4", "addr", "show", "eth0") or "[]")
        if not links or not links[0]["addr_info"]:
            continue  # being wired (or taken down) by the kubelet
        ip = links[0]["addr_info"][0]["local"]
        for node in NODES:
            routes = json.loads(run(f"{lab.prefix}-node-{node}", "ip", "-j", "route", "show", ip))
            if any(r.get("dev", "").startswith("cali") for r in routes):
                found[ns.removeprefix(f"{lab.prefix}-gw-")] = (ip, NODES[node])
    return found


def egress_blocks(lab: LabHandle, within: IPv4Network | None = None) -> dict[str, str]:
    """Each gateway's /31 (the pools' blockSize) -> the node hosting it."""
    blocks = {
        str(IPv4Network(f"{ip}/31", strict=False)): node for ip, node in gateways(lab).values()
    }
    return {b: n for b, n in blocks.items() if within is None or IPv4Network(b).subnet_of(within)}


def fabric(lab: LabHandle) -> dict[str, str]:
    routes = json.loads(run(f"{lab.prefix}-vpc", "ip", "-j", "route", "show", "proto", "bgp"))
    return {r["dst"]: r.get("gateway", "ecmp") for r in routes}


def curl(lab: LabHandle, address: str, host: str | None = None) -> tuple[int | None, str]:
    argv = ["curl", "-sS", "--noproxy", "*", "--max-time", "1", "-w", "\n%{http_code}"]
    argv += ["--resolve", f"{host}:80:{address}"] if host else []
    out = run(f"{lab.prefix}-pod-default-netshoot", *argv, f"http://{host or address}/")
    body, _, code = out.rpartition("\n")
    return (int(code), body.strip()) if code.isdigit() and code != "000" else (None, "")


def firewall_saw(lab: LabHandle) -> set[tuple[str, str, str, int]]:
    """(verdict, source, destination, port) of the connections the firewall decided on."""
    found = set()
    for verdict in ("allowed", "denied"):
        out = run(
            f"{lab.prefix}-edge",
            "nft",
            "-j",
            "list",
            "set",
            "ip",
            "egressgw-lab",
            f"seen_{verdict}",
        )
        for item in json.loads(out)["nftables"]:
            for e in item.get("set", {}).get("elem", []):
                src, dst, port = e["concat"]
                found.add((verdict, src, dst, port))
    return found


def ask(
    lab: LabHandle, address: str, host: str | None = None
) -> tuple[tuple[int | None, str], set[tuple[str, str, str, int]]]:
    """One request from netshoot, and what the firewall saw of it alone."""
    run(
        f"{lab.prefix}-edge",
        "nft",
        "flush set ip egressgw-lab seen_allowed; flush set ip egressgw-lab seen_denied",
    )
    answer = curl(lab, address, host)
    return answer, firewall_saw(lab)


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - start


def namespaces_with(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return sorted(line.split()[0] for line in out.splitlines() if line.startswith(prefix))


def held_processes(prefix: str) -> list[str]:
    """bird, gobgpd and etcd processes of this lab still running."""
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [
        line
        for line in out.splitlines()
        if prefix in line and ("bird" in line or "gobgp" in line or "etcd" in line)
    ]


# --- the lab --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(run_prefix: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    prefix = f"{run_prefix}z"
    root = tmp_path_factory.mktemp("azlab")
    started = time.monotonic()
    handle = up.up(scenarios.AZURE, prefix, root=root)
    BUILT["seconds"] = time.monotonic() - started
    try:
        yield handle
    finally:
        handle.down()
        assert namespaces_with(f"{prefix}-") == []
        assert held_processes(prefix) == []


@pytest.fixture
def walk(lab: LabHandle) -> Iterator[Walkthrough]:
    """The walkthrough's store edits; the store is reset before and after each test."""
    w = Walkthrough.load(lab)
    with_store(lab, w.reset)
    try:
        yield w
    finally:
        with_store(lab, w.reset)


# --- behaviour ------------------------------------------------------------------------------


def test_the_lab_comes_up_with_every_session_established(lab: LabHandle) -> None:
    assert BUILT["seconds"] < 30
    for rs in SERVERS:
        assert {n: s for n, (s, _) in sessions(lab, rs).items()} == dict.fromkeys(NODES.values(), 6)
    for node in NODES:
        # reachableBy: BIRD pins each route server to the AKS subnet's gateway.
        for rs in ("10.0.1.4", "10.0.1.5"):
            [route] = json.loads(
                run(f"{lab.prefix}-node-{node}", "ip", "-j", "route", "show", f"{rs}/32")
            )
            assert (route["gateway"], route["protocol"]) == ("10.1.0.1", "bird")
    placed = gateways(lab)
    assert sorted(placed) == [
        "tenant0-egw-tenant0-egw-0",
        "tenant0-egw-tenant0-egw-1",
        "tenant1-egw-tenant1-egw-0",
        "tenant1-egw-tenant1-egw-1",
    ]
    # Zone spread: each tenant's two replicas on the two nodes (zones eastus-1 and -2).
    assert {placed["tenant0-egw-tenant0-egw-0"][1], placed["tenant0-egw-tenant0-egw-1"][1]} == set(
        NODES.values()
    )
    assert all(
        IPv4Address(ip) in TENANT0 for n, (ip, _) in placed.items() if n.startswith("tenant0")
    )


def test_what_the_route_servers_learn_and_the_firewall_answers_at_each_step(
    lab: LabHandle, walk: Walkthrough
) -> None:
    def learned_everywhere(adverts: dict[str, str]) -> bool:
        want = sent_by_every_node(adverts)
        return all(learned(lab, rs) == want for rs in SERVERS)

    # Before the README's patches: pod blocks and every gateway's /31, from both nodes.
    everything = POD_BLOCKS | egress_blocks(lab)
    assert len(everything) == 6
    eventually(lambda: learned_everywhere(everything))
    eventually(lambda: fabric(lab) == everything)  # return routing follows what ARS learned

    with_store(lab, walk.disable_export)
    eventually(lambda: learned_everywhere(egress_blocks(lab)))
    eventually(lambda: fabric(lab) == egress_blocks(lab))

    with_store(lab, walk.attach_filter)
    tenant0 = egress_blocks(lab, TENANT0)
    assert len(tenant0) == 2
    eventually(lambda: learned_everywhere(tenant0))
    eventually(lambda: fabric(lab) == tenant0)

    # No egress yet: netshoot leaves through its node (natOutgoing) and is denied.
    answer, saw = ask(lab, TIGERA, "www.tigera.io")
    assert (answer, saw) == (DENY, {("denied", "10.1.0.4", TIGERA, 80)})

    with_store(lab, walk.enable_egress)
    tenant_ips = {ip for n, (ip, _) in gateways(lab).items() if n.startswith("tenant0")}
    eventually(lambda: ask(lab, TIGERA, "www.tigera.io")[0][0] == 200, 5)
    answer, saw = ask(lab, TIGERA, "www.tigera.io")
    assert answer == (200, FIREWALL_PUBLIC)  # the echo service saw the firewall's SNAT
    [(verdict, source, dest, port)] = saw
    assert (verdict, dest, port) == ("allowed", TIGERA, 80) and source in tenant_ips

    # The policy: www.tigera.io has no rule (direct, denied); 8.8.8.8 goes via tenant0,
    # which the firewall lets reach www.tigera.io only.
    with_store(lab, walk.apply_policy)
    eventually(
        lambda: ask(lab, TIGERA, "www.tigera.io")[1] == {("denied", "10.1.0.4", TIGERA, 80)}, 5
    )
    answer, saw = ask(lab, GOOGLE_DNS)
    [(verdict, source, dest, port)] = saw
    assert answer == DENY and (verdict, dest, port) == ("denied", GOOGLE_DNS, 80)
    assert source in tenant_ips


def test_the_demo_reports_what_the_route_servers_and_the_firewall_answered(
    lab: LabHandle, walk: Walkthrough
) -> None:
    result = demo_azure.azure_demo(lab).as_dict()
    assert result["ok"], json.dumps(result, indent=1)
    steps = {s["step"]: s for s in result["steps"]}
    assert list(steps) == [
        "bgp",
        "gateways",
        "routes",
        "disable-bgp-export",
        "bgp-filter",
        "denied",
        "allowed",
        "policy-direct",
        "policy-gateway",
    ]

    def reported(step: str) -> dict[str, set[Path_]]:
        return {
            rs: {(r["network"], r["nextHop"], r["sourcePeer"], (int(r["asPath"]),)) for r in routes}
            for rs, routes in steps[step]["observed"]["routes"].items()
        }

    expected = {
        "routes": POD_BLOCKS | egress_blocks(lab),
        "disable-bgp-export": egress_blocks(lab),
        "bgp-filter": egress_blocks(lab, TENANT0),
    }
    for step, adverts in expected.items():
        assert reported(step) == dict.fromkeys(SERVERS, sent_by_every_node(adverts)), step
    http = {
        s: (steps[s]["observed"]["http"]["status"], steps[s]["observed"]["http"]["body"])
        for s in ("denied", "allowed", "policy-direct", "policy-gateway")
    }
    assert http == {
        "denied": DENY,
        "allowed": (200, FIREWALL_PUBLIC),
        "policy-direct": DENY,
        "policy-gateway": DENY,
    }
    assert [s["source"] for s in steps["denied"]["observed"]["firewall"]] == ["10.1.0.4"]
    # The demo put the store back: no egress, everything advertised again.
    eventually(
        lambda: all(
            learned(lab, rs) == sent_by_every_node(POD_BLOCKS | egress_blocks(lab))
            for rs in SERVERS
        )
    )


def test_a_moved_gateway_takes_its_advertisement_along_within_2s(
    lab: LabHandle, walk: Walkthrough
) -> None:
    with_store(lab, walk.enable_egress)
    name = "tenant0-egw-tenant0-egw-0"
    ip, old = gateways(lab)[name]
    block = str(IPv4Network(f"{ip}/31", strict=False))
    new = next(n for n, a in NODES.items() if a != old)
    moved = sent_by_every_node({block: NODES[new]})
    start = time.monotonic()
    observe.move_gateway(lab, "tenant0-egw", "tenant0-egw-0", new)
    followed = eventually(
        lambda: all({p for p in learned(lab, rs) if p[0] == block} == moved for rs in SERVERS)
    )
    fabric_followed = eventually(lambda: fabric(lab).get(block) == NODES[new])
    print(
        f"route servers followed in {followed * 1000:.0f} ms, fabric in {(time.monotonic() - start) * 1000:.0f} ms"
    )
    assert followed < 2.0 and fabric_followed < 2.0
    # The gateway answers from its new node: traffic through it is allowed again.
    eventually(lambda: gateways(lab).get(name) == (ip, NODES[new]), 10)

    def through_moved() -> bool:
        answer, saw = ask(lab, TIGERA, "www.tigera.io")
        return answer == (200, FIREWALL_PUBLIC) and {s[1] for s in saw} == {ip}

    eventually(through_moved, 15)
    observe.move_gateway(
        lab, "tenant0-egw", "tenant0-egw-0", next(n for n, a in NODES.items() if a == old)
    )
    eventually(
        lambda: all(
            {p for p in learned(lab, rs) if p[0] == block} == sent_by_every_node({block: old})
            for rs in SERVERS
        )
    )
    eventually(lambda: gateways(lab).get(name) == (ip, old), 10)


# --- established flows while BGP resets -----------------------------------------------------

_CLIENT = r"""
import socket, sys, time
s = socket.create_connection((sys.argv[1], 80), timeout=20)
print(s.getsockname()[1], flush=True)
end, rest = time.monotonic() + float(sys.argv[2]), b""
while time.monotonic() < end:
    s.sendall(b"GET / HTTP/1.1\r\nHost: www.tigera.io\r\n\r\n")
    while b"\r\n\r\n" not in rest:
        rest += s.recv(4096) or sys.exit("closed")
    head, _, rest = rest.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(rest) < length:
        rest += s.recv(4096) or sys.exit("closed")
    rest = rest[length:]
    print(f"{time.time():.3f}", flush=True)
    time.sleep(0.02)
"""


def dataplane(lab: LabHandle, node: str) -> tuple[str, ...]:
    """The node's egress dataplane: rules, egressgw's tables, its nftables table."""
    ns = f"{lab.prefix}-node-{node}"
    tables = run(ns, "ip", "-j", "route", "show", "table", "all", "proto", "66")
    return (
        run(ns, "ip", "-j", "rule"),
        tables,
        run(ns, "nft", "list", "table", "inet", "egressgw"),
    )


def longest_waits(answers: list[float], events: list[tuple[str, float]]) -> dict[str, float]:
    """For each event, the longest time between two answers until the next event."""
    waits = {}
    for (what, start), (_, end) in itertools.pairwise(events):
        window = [b - a for a, b in itertools.pairwise(answers) if start < b <= end]
        waits[what] = max(window, default=end - start)
    return waits


class Resets:
    """BGP resets and BIRD restarts on one node, each followed until the node's BIRD has
    every session established again, the reset ones anew, and the route servers agree."""

    def __init__(self, lab: LabHandle, node: str) -> None:
        self.lab, self.node, self.address = lab, node, NODES[node]
        self.bird = lab.root / lab.prefix / "nodes" / node / "bird"
        self.events: list[tuple[str, float]] = []

    def protocols(self) -> dict[str, tuple[str, str]]:
        """BGP protocol -> (state info, since), from birdc (nothing while BIRD is down)."""
        done = subprocess.run(
            ["birdc", "-s", str(self.bird / "bird.ctl"), "show", "protocols"],
            capture_output=True,
            text=True,
        )
        rows = [line.split(None, 6) for line in done.stdout.splitlines()[2:]]
        return {
            r[0]: (r[6].strip(), f"{r[4]} {r[5]}") for r in rows if len(r) == 7 and r[1] == "BGP"
        }

    def do(self, what: str, action: Callable[[], None], reset: tuple[str, ...]) -> None:
        before = self.protocols()
        self.events.append((what, time.time()))
        action()

        def back() -> bool:
            now = self.protocols()
            anew = all(now.get(p, before[p])[1] != before[p][1] for p in reset)
            up_ = now.keys() == before.keys() and all(
                i.startswith("Established") for i, _ in now.values()
            )
            servers = all(sessions(self.lab, rs)[self.address][0] == 6 for rs in SERVERS)
            return anew and up_ and servers

        eventually(back, 15)
        time.sleep(0.5)

    def birdc(self, *argv: str) -> None:
        subprocess.run(
            ["birdc", "-s", str(self.bird / "bird.ctl"), *argv], check=True, capture_output=True
        )

    def kill(self) -> None:
        """SIGKILL the node's BIRD; its agent starts it again (-R, graceful restart recovery:
        it waits for the peers' End-of-RIB before touching the kernel's routes)."""
        os.kill(int((self.bird / "bird.pid").read_text()), signal.SIGKILL)

    def graceful_restart(self) -> None:
        """BIRD shuts down telling its peers to keep its routes; its agent starts it again."""
        self.birdc("graceful", "restart")


def test_bgp_resets_and_bird_restarts_do_not_disturb_established_flows(
    lab: LabHandle, walk: Walkthrough
) -> None:
    with_store(lab, walk.enable_egress)
    tenant_ips = {ip for n, (ip, _) in gateways(lab).items() if n.startswith("tenant0")}
    used: set[str] = set()

    def both_gateways_carry() -> bool:  # the dataplane has settled on both replicas
        answer, saw = ask(lab, TIGERA, "www.tigera.io")
        used.update(s[1] for s in saw if answer == (200, FIREWALL_PUBLIC))
        return used == tenant_ips

    eventually(both_gateways_carry, 15)
    netshoot = f"{lab.prefix}-pod-default-netshoot"
    argv = [sys.executable, "-c", _CLIENT, TIGERA, "60"]
    client = subprocess.Popen(
        ["ip", "netns", "exec", netshoot, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert client.stdout is not None
    sport = client.stdout.readline().strip()
    # The gateway carrying the connection is the source the firewall tracks for it.
    tracked = run(f"{lab.prefix}-edge", "conntrack", "-L", "-p", "tcp", "--sport", sport)
    [entry] = [e for e in tracked.splitlines() if "ESTABLISHED" in e and f"dst={TIGERA}" in e]
    source = next(f.split("=")[1] for f in entry.split() if f.startswith("src="))
    node = next(n for n, a in NODES.items() if (source, a) in gateways(lab).values())
    other = next(a for n, a in NODES.items() if n != node).replace(".", "_")
    before = dataplane(lab, node)
    resets = Resets(lab, node)
    try:
        time.sleep(0.5)
        every = tuple(resets.protocols())
        assert sorted(every) == sorted(["Peer_10_0_1_4", "Peer_10_0_1_5", f"Node_{other}"])
        for session in every:  # one BGP session reset at a time
            restart = functools.partial(resets.birdc, "restart", session)
            resets.do(f"reset {session}", restart, (session,))
        resets.do("kill -9, the agent restarts bird", resets.kill, every)
        resets.do("birdc graceful restart, the agent restarts bird", resets.graceful_restart, every)
        resets.events.append(("end", time.time()))
    finally:
        client.kill()
    answers = [float(line) for line in client.stdout.read().split()]
    assert client.stderr is not None
    stopped = (
        f"the connection stopped: {client.stderr.read()[-500:]} {resets.events} {answers[-3:]}"
    )
    assert answers and answers[-1] > resets.events[-1][1] - 0.3, stopped
    waits = longest_waits(answers, resets.events)
    print("longest wait for an answer:", {k: f"{v * 1000:.0f} ms" for k, v in waits.items()})
    assert all(wait < 0.5 for wait in waits.values()), waits  # not disturbed at all
    assert dataplane(lab, node) == before
