"""The lab's physical network, observed from inside it.

Each test builds its own small lab under the run's prefix plus a random suffix and always
tears it down. egressgw builds the lab; the oracles are what an echo server told curl, and
what `ip -j`, `nft -j` and /proc show. The oracles import nothing from egressgw: namespace
names and addresses are spelled out here as the documented layout promises them.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from egressgw.lab import netns, procs
from egressgw.lab.addressplan import aws_topology, new_pod
from egressgw.lab.topology import GatewayPod, Topology
from egressgw.lab.topology_edits import with_pod

pytestmark = pytest.mark.privileged
A = IPv4Address
IFCONFIG_ME = "203.0.113.100"


# --- oracles (no egressgw imports below this line are used to judge) --------------------


def sh(ns: str, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=timeout
    )


def curl(ns: str, url: str, *extra: str) -> str:
    done = sh(ns, "curl", "-sS", "--max-time", "5", *extra, url)
    assert done.returncode == 0, done.stderr
    return done.stdout


def curl_json(ns: str, url: str, *extra: str) -> dict[str, object]:
    return dict(json.loads(curl(ns, url, *extra)))


def ip_json(ns: str, *argv: str) -> list[dict[str, Any]]:
    return list(
        json.loads(
            subprocess.run(
                ["ip", "-j", "-n", ns, *argv], capture_output=True, text=True, check=True
            ).stdout
        )
    )


def namespaces_with(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(f"{prefix}-")]


def proc_state(pid: int) -> str | None:
    """The process's state letter, None if it no longer exists."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat[stat.rindex(")") + 2]


# --- the lab ----------------------------------------------------------------------------


@dataclass
class Lab:
    prefix: str
    topology: Topology
    sup: procs.Supervisor
    root: Path

    def ns(self, suffix: str) -> str:
        return f"{self.prefix}-{suffix}"


def small_topology(prefix: str) -> Topology:
    """Two zones, one node each; a client pod per node, a server pod on node-b1, a gateway
    with an Elastic IP on node-b1 and one without on node-a1."""
    t = aws_topology(prefix, nodes_per_zone=1)
    for ns, name, node in [
        ("default", "client", "node-a1"),
        ("default", "client-b", "node-b1"),
        ("default", "server", "node-b1"),
    ]:
        t = with_pod(t, new_pod(t, ns, name, node))
    t = with_pod(t, GatewayPod("default", "egw-1", "node-b1", A("10.99.24.1"), A("198.51.100.11")))
    return with_pod(t, GatewayPod("default", "egw-2", "node-a1", A("10.99.8.1")))


@pytest.fixture
def lab(run_prefix: str, tmp_path: Path) -> Iterator[Lab]:
    prefix = f"{run_prefix}-{uuid.uuid4().hex[:4]}"
    topology = small_topology(prefix)
    try:
        netns.build(topology)
        with procs.Supervisor(prefix, tmp_path) as sup:
            hosts = [h.address for h in topology.internet_hosts]
            procs.start_echo(sup, f"{prefix}-internet", hosts)
            yield Lab(prefix, topology, sup, tmp_path)
    finally:
        netns.teardown(prefix, tmp_path)
    assert namespaces_with(prefix) == []


# --- behaviour --------------------------------------------------------------------------


def test_pod_egress_leaves_through_its_zone_nat_gateway(lab: Lab) -> None:
    assert curl(lab.ns("pod-default-client"), f"http://{IFCONFIG_ME}/") == "198.51.100.1\n"
    assert curl(lab.ns("pod-default-client-b"), f"http://{IFCONFIG_ME}/") == "198.51.100.2\n"
    seen = curl_json(lab.ns("pod-default-client"), "http://203.0.113.8/json")
    assert (seen["remote"], seen["local"]) == ("198.51.100.1", "203.0.113.8")
    tcp = sh(lab.ns("pod-default-client"), "bash", "-c", "cat </dev/tcp/203.0.113.4/7")
    assert tcp.stdout.split()[0] == "198.51.100.1"
    assert sh(lab.ns("pod-default-client"), "ping", "-c1", "-W2", "203.0.113.4").returncode == 0


def test_gateway_egress_shows_its_elastic_ip(lab: Lab) -> None:
    assert curl(lab.ns("gw-default-egw-1"), f"http://{IFCONFIG_ME}/") == "198.51.100.11\n"
    # Without an Elastic IP a gateway leaves through its zone's NAT gateway.
    assert curl(lab.ns("gw-default-egw-2"), f"http://{IFCONFIG_ME}/") == "198.51.100.1\n"


def test_internet_reaches_a_gateway_through_its_elastic_ip(lab: Lab) -> None:
    procs.start_echo(lab.sup, lab.ns("gw-default-egw-1"), name="gw-echo")
    seen = curl_json(lab.ns("internet"), "http://198.51.100.11/json", "--interface", "203.0.113.8")
    assert (seen["remote"], seen["local"]) == ("203.0.113.8", "10.99.24.1")
    # An address nobody holds is unreachable, not a routing loop.
    assert (
        sh(lab.ns("internet"), "curl", "-sS", "--max-time", "3", "http://198.51.100.12/").returncode
        != 0
    )


def test_vpc_traffic_to_an_elastic_ip_hairpins_like_aws(lab: Lab) -> None:
    procs.start_echo(lab.sup, lab.ns("gw-default-egw-1"), name="gw-echo")
    seen = curl_json(lab.ns("pod-default-client"), "http://198.51.100.11/json")
    assert (seen["remote"], seen["local"]) == ("198.51.100.1", "10.99.24.1")


def test_pod_to_pod_across_nodes_keeps_both_addresses(lab: Lab) -> None:
    procs.start_echo(lab.sup, lab.ns("pod-default-server"), name="server-echo")
    seen = curl_json(lab.ns("pod-default-client"), "http://10.244.1.2/json")
    assert (seen["remote"], seen["local"]) == ("10.244.0.1", "10.244.1.2")
    udp = "import socket;s=socket.socket(2,2);s.settimeout(3);s.sendto(b'x',('10.244.1.2',7));print(s.recv(99).decode())"
    assert (
        sh(lab.ns("pod-default-client"), sys.executable, "-c", udp).stdout.split()[0]
        == "10.244.0.1"
    )


def test_kernel_holds_the_documented_layout(lab: Lab) -> None:
    vpc_routes = {r["dst"]: r.get("gateway") for r in ip_json(lab.ns("vpc"), "route")}
    assert vpc_routes["10.244.0.0/24"] == "10.0.160.10"
    assert vpc_routes["10.244.1.0/24"] == "10.0.176.10"
    assert vpc_routes["10.99.24.1"] == "10.0.176.10"
    assert vpc_routes["10.99.8.1"] == "10.0.160.10"
    assert vpc_routes["default"] == "10.0.255.254"
    links = {link["ifname"]: link for link in ip_json(lab.ns("vpc"), "link")}
    assert links["n-node-a1"]["master"] == "br-us-east-1a" and links["n-node-a1"]["mtu"] == 9001
    pod_routes = {r["dst"]: r for r in ip_json(lab.ns("pod-default-client"), "route")}
    assert pod_routes["default"]["gateway"] == "169.254.1.1"
    addrs = ip_json(lab.ns("pod-default-client"), "addr", "show", "eth0")[0]["addr_info"]
    assert [(a["local"], a["prefixlen"]) for a in addrs] == [("10.244.0.1", 32)]
    node = lab.ns("node-node-a1")
    cali = next(r["dev"] for r in ip_json(node, "route") if r["dst"] == "10.244.0.1")
    assert cali.startswith("cali") and len(cali) == 15
    assert sh(node, "sysctl", "-n", f"net.ipv4.conf.{cali}.proxy_arp").stdout.strip() == "1"
    assert sh(node, "sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "1"
    assert (
        sh(lab.ns("vpc"), "sysctl", "-n", "net.ipv4.conf.all.send_redirects").stdout.strip() == "0"
    )
    tables = json.loads(sh(node, "nft", "-j", "list", "tables").stdout)["nftables"]
    assert [t["table"]["name"] for t in tables if "table" in t] == ["egressgw-lab"]


def test_a_gateway_moves_to_another_node(lab: Lab) -> None:
    t = lab.topology
    old = next(g for g in t.gateways if g.name == "egw-1")
    netns.remove_pod(t, old)
    assert f"{lab.prefix}-gw-default-egw-1" not in namespaces_with(lab.prefix)
    assert "10.99.24.1" not in {r["dst"] for r in ip_json(lab.ns("vpc"), "route")}
    moved = replace(old, node="node-a1")
    netns.add_pod(t, moved)
    routes = {r["dst"]: r.get("gateway") for r in ip_json(lab.ns("vpc"), "route")}
    assert routes["10.99.24.1"] == "10.0.160.10"
    assert curl(lab.ns("gw-default-egw-1"), f"http://{IFCONFIG_ME}/") == "198.51.100.11\n"
    # Removing the old placement again must not take the new one's route away.
    netns.unroute_gateway_ip(lab.prefix, old.ip, A("10.0.176.10"))
    assert "10.99.24.1" in {r["dst"] for r in ip_json(lab.ns("vpc"), "route")}


def test_elastic_ips_are_reassociated_at_run_time(lab: Lab) -> None:
    netns.associate_eip(lab.prefix, A("198.51.100.12"), A("10.99.8.1"))
    assert curl(lab.ns("gw-default-egw-2"), f"http://{IFCONFIG_ME}/") == "198.51.100.12\n"
    netns.associate_eip(lab.prefix, A("198.51.100.12"), A("10.99.24.1"))  # moves; egw-1 loses .11
    assert curl(lab.ns("gw-default-egw-1"), f"http://{IFCONFIG_ME}/") == "198.51.100.12\n"
    assert curl(lab.ns("gw-default-egw-2"), f"http://{IFCONFIG_ME}/") == "198.51.100.1\n"
    netns.disassociate_eip(lab.prefix, A("198.51.100.12"))
    assert curl(lab.ns("gw-default-egw-1"), f"http://{IFCONFIG_ME}/") == "198.51.100.2\n"


def test_pods_come_and_go_at_run_time(lab: Lab) -> None:
    t = lab.topology
    pod = new_pod(t, "team", "late", "node-a1")
    netns.add_pod(t, pod)
    assert curl(lab.ns("pod-team-late"), f"http://{IFCONFIG_ME}/") == "198.51.100.1\n"
    netns.remove_pod(t, pod)
    assert f"{lab.prefix}-pod-team-late" not in namespaces_with(lab.prefix)
    assert pod.ifname not in {link["ifname"] for link in ip_json(lab.ns("node-node-a1"), "link")}
    netns.add_pod(t, pod)  # the same pod again at once: its interface name is free
    assert curl(lab.ns("pod-team-late"), f"http://{IFCONFIG_ME}/") == "198.51.100.1\n"


# --- lifecycle --------------------------------------------------------------------------


def test_teardown_leaves_no_namespace_and_no_process(run_prefix: str, tmp_path: Path) -> None:
    prefix = f"{run_prefix}-{uuid.uuid4().hex[:4]}"
    topology = small_topology(prefix)
    netns.build(topology)
    sup = procs.Supervisor(prefix, tmp_path)
    try:
        procs.start_echo(sup, f"{prefix}-internet")
        procs.start_echo(sup, f"{prefix}-pod-default-server", name="server-echo")
        stray = subprocess.Popen(["ip", "netns", "exec", f"{prefix}-node-node-a1", "sleep", "600"])
        pids = [r.pid for r in sup.records] + [stray.pid]
        netns.teardown(prefix, tmp_path)
        assert namespaces_with(prefix) == []
        stray.wait(5)
        assert all(proc_state(pid) in (None, "Z") for pid in pids)
        netns.teardown(prefix, tmp_path)  # idempotent
        netns.remove_pod(topology, topology.pods[0])  # after teardown: nothing re-created
        netns.remove_pod(topology, topology.gateways[0])
        assert namespaces_with(prefix) == []
    finally:
        sup.stop_all()
        netns.teardown(prefix, tmp_path)


def test_a_failed_build_leaves_nothing(run_prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = f"{run_prefix}-{uuid.uuid4().hex[:4]}"

    def broken(ns: str, script: str) -> None:
        raise RuntimeError("injected")

    monkeypatch.setattr(procs, "nft", broken)
    with pytest.raises(RuntimeError, match="injected"):
        netns.build(small_topology(prefix))
    assert namespaces_with(prefix) == []


def test_build_refuses_a_prefix_in_use(lab: Lab) -> None:
    with pytest.raises(FileExistsError):
        netns.build(lab.topology)
    assert curl(lab.ns("pod-default-client"), f"http://{IFCONFIG_ME}/") == "198.51.100.1\n"


GUARDED = """
import sys, time
from pathlib import Path
from egressgw.lab import netns, procs
from egressgw.lab.addressplan import aws_topology
prefix, root = sys.argv[1], Path(sys.argv[2])
with procs.guarded(lambda: netns.teardown(prefix, root)):
    netns.build(aws_topology(prefix, nodes_per_zone=1))
    sup = procs.Supervisor(prefix, root)
    procs.start_echo(sup, prefix + "-internet")
    print("up", flush=True)
    time.sleep(60)
"""


def test_sigterm_tears_a_guarded_lab_down(run_prefix: str, tmp_path: Path) -> None:
    prefix = f"{run_prefix}-{uuid.uuid4().hex[:4]}"
    child = subprocess.Popen(
        [sys.executable, "-c", GUARDED, prefix, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "up\n"
        assert len(namespaces_with(prefix)) == 5
        child.send_signal(signal.SIGTERM)
        assert child.wait(15) == 128 + signal.SIGTERM
        assert namespaces_with(prefix) == []
    finally:
        child.kill()
        netns.teardown(prefix, tmp_path)


def test_build_and_teardown_time_of_a_4_node_lab(
    run_prefix: str, record_property: Callable[[str, object], None]
) -> None:
    """4 nodes, 10 pods, 6 gateways (the REF-AWS demo's size)."""
    prefix = f"{run_prefix}-{uuid.uuid4().hex[:4]}"
    t = aws_topology(prefix)
    for i in range(10):
        t = with_pod(t, new_pod(t, "default", f"pod-{i}", t.nodes[i % 4].name))
    for i in range(6):
        node = t.nodes[i % 4]
        ip = (A("10.99.8.1") if node.zone.endswith("a") else A("10.99.24.1")) + i
        t = with_pod(
            t, GatewayPod("default", f"egw-{i + 1}", node.name, ip, A("198.51.100.11") + i)
        )
    try:
        start = time.monotonic()
        netns.build(t)
        built = time.monotonic() - start
        assert sh(f"{prefix}-gw-default-egw-6", "ping", "-c1", "-W2", "203.0.113.8").returncode == 0
    finally:
        start = time.monotonic()
        netns.teardown(prefix)
        torn = time.monotonic() - start
    record_property("build_seconds", round(built, 3))
    record_property("teardown_seconds", round(torn, 3))
    print(
        f"\nlab of 4 nodes / 10 pods / 6 gateways ({len(t.namespaces())} namespaces): "
        f"build {built:.2f} s, teardown {torn:.2f} s",
        file=sys.stderr,
    )
    assert namespaces_with(prefix) == []
    assert built < 20 and torn < 20
