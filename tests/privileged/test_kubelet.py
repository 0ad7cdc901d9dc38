"""The lab kubelet and the lab's lifecycle, with stand-ins for the controller, the agents and
the gateways.

The kubelet runs as the real daemon (`python -m egressgw.lab.kubelet`); the test plays the
controller by writing Pods to the store itself. What counts is what the kernel shows (`ip -j`,
`nft -j`), what a peer answered through the lab's network, and what the store holds; the
oracles below import nothing from egressgw and spell namespace names and addresses out as
the documented layout promises them.

Run as a script, this file is the stand-in processes `up` starts in the lifecycle tests:
`controller` (places the gateway pods once with the pure calculation), `agent` (idles) and
`gateway` (answers GET /readiness on POD_IP:8080 inside its namespace, with its argv).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socketserver
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from egressgw.lab import kubelet, netns, procs, registry, running, scenarios, state, up
from egressgw.lab import status as lab_status
from egressgw.lab.topology import GatewayPod, Pod
from egressgw.manifests import load
from egressgw.model import Pod as PodResource
from egressgw.model import Resource
from egressgw.model.parsing import from_dict
from egressgw.store.codec import resource_store
from egressgw.store.etcd import connect
from egressgw.store.etcdproc import EtcdServer

A = IPv4Address
GW = "egressgw.io/egress-gateway"
EIP = "egressgw.io/elastic-ip"

# --- oracles (no egressgw imports are used to judge) ----------------------------------------


def sh(ns: str, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=timeout
    )


def ip_json(ns: str, *argv: str) -> list[dict[str, Any]]:
    done = subprocess.run(["ip", "-j", "-n", ns, *argv], capture_output=True, text=True)
    return list(json.loads(done.stdout or "[]"))


def namespaces_with(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return sorted(line.split()[0] for line in out.splitlines() if line.startswith(f"{prefix}-"))


def vpc_routes(prefix: str) -> dict[str, str | None]:
    return {r["dst"]: r.get("gateway") for r in ip_json(f"{prefix}-vpc", "route")}


def eip_map(prefix: str) -> dict[str, str]:
    done = sh(f"{prefix}-edge", "nft", "-j", "list", "map", "ip", "egressgw-lab", "eip_in")
    for item in json.loads(done.stdout)["nftables"]:
        if "map" in item:
            return {k: v for k, v in item["map"].get("elem", [])}
    return {}


def readiness(ns: str, url: str) -> str | None:
    done = sh(ns, "curl", "-sS", "--noproxy", "*", "--max-time", "2", url)
    return done.stdout if done.returncode == 0 else None


def processes_with(text: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if text in cmdline and entry.isdigit() and int(entry) != os.getpid():
            found.append(int(entry))
    return found


def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """The first truthy value of `check()`, retried until `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            assert value, f"still {value!r} after {timeout}s"
            return value
        time.sleep(0.05)


# --- pure: scheduling and what a pod becomes (no root needed) -------------------------------


def aws_topology_of_the_scenario(prefix: str = "eglu") -> Any:
    resources = load([scenarios.AWS.examples]).all
    return scenarios.build_topology(scenarios.AWS, resources, prefix)


def pod(
    name: str, node: str | None = None, ip: str | None = None, **annotations: str
) -> PodResource:
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": {"nodeName": node} if node else {},
        "status": {"podIP": ip} if ip else {},
    }
    res = from_dict(obj)
    assert isinstance(res, PodResource)
    return res


def test_schedule_fills_the_emptiest_node_first_then_by_name() -> None:
    t = aws_topology_of_the_scenario()
    pods = [
        pod("a", "node-1", "10.244.0.1"),
        pod("b", "node-2", "10.244.1.1"),
        pod("c"),
        pod("d"),
        pod("e", node="node-1"),
        pod("g", **{GW: "egw-1"}),  # the controller's to place
        pod("h", "node-3", "10.99.24.1", **{GW: "egw-2"}),  # not counted
    ]
    assert kubelet.schedule(pods, t) == {
        ("default", "c"): ("node-3", A("10.244.2.1")),
        ("default", "d"): ("node-4", A("10.244.3.1")),
        ("default", "e"): ("node-1", A("10.244.0.2")),
    }


def test_wanted_turns_gateway_pods_into_gateway_workloads() -> None:
    t = aws_topology_of_the_scenario()
    pods = [
        pod("netshoot", "node-1", "10.244.0.1"),
        pod("egw-1-0", "node-3", "10.99.24.1", **{GW: "egw-1", EIP: "198.51.100.11"}),
        pod("egw-2-0", "node-2", "10.99.8.8", **{GW: "egw-2", EIP: "198.51.100.1"}),  # a NAT's
        pod("lost", "node-9", "10.244.9.1"),
        pod("pending"),
    ]
    assert kubelet.wanted(pods, t) == {
        ("default", "netshoot"): Pod("default", "netshoot", "node-1", A("10.244.0.1")),
        ("default", "egw-1-0"): GatewayPod(
            "default", "egw-1-0", "node-3", A("10.99.24.1"), A("198.51.100.11")
        ),
        ("default", "egw-2-0"): GatewayPod("default", "egw-2-0", "node-2", A("10.99.8.8"), None),
    }


# --- stand-ins (run as processes by `up` and the kubelet) -----------------------------------


class _Ready(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(sys.argv).encode()
        self.send_response(200 if self.path == "/readiness" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


class _Server(HTTPServer):
    def server_bind(self) -> None:
        # HTTPServer's own looks up the address's host name: seconds of DNS timeouts in a
        # lab namespace, which has a default route but no resolver.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "gateway", self.server_address[1]


def _option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def stand_in_gateway(argv: list[str]) -> None:
    address = (_option(argv, "--ip"), 8080)
    server = procs.in_netns(_option(argv, "--netns"), lambda: _Server(address, _Ready))
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    server.serve_forever()


async def _place_gateways(endpoint: str, subnet_zones: dict[str, str]) -> None:
    from egressgw.calc import gateways
    from egressgw.model.resourceset import ResourceSet

    store = await connect(endpoint)
    try:
        res = resource_store(store)
        found = ResourceSet.build((await res.list_all())[0])
        reserved = [c for r in found.ip_reservations for c in r.spec.reserved_cidrs]
        placed, _, _ = gateways.materialize(
            found.egress_gateways,
            found.ip_pools,
            reserved,
            found.nodes,
            gateways.EMPTY_ROLLOUT,
            subnet_zones,
        )
        await res.apply([_gateway_pod(p) for p in placed])
    finally:
        await store.close()


def _gateway_pod(p: Any) -> Resource:
    annotations = dict(p.pod.annotations)
    if p.elastic_ip is not None:
        annotations[EIP] = str(p.elastic_ip)
    meta = {"name": p.pod.name, "namespace": p.pod.namespace, "labels": dict(p.pod.labels)}
    return from_dict(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {**meta, "annotations": annotations},
            "spec": {"nodeName": p.node},
            "status": {"podIP": str(p.ip)},
        }
    )


def stand_in_controller(argv: list[str]) -> None:
    zones = dict(a.split("=", 2)[1:] for a in argv if a.startswith("--subnet-zone="))
    asyncio.run(_place_gateways(_option(argv, "--etcd"), zones))
    signal.pause()


STAND_INS = up.Commands(
    controller=(sys.executable, __file__, "controller"),
    agent=(sys.executable, __file__, "agent"),
    gateway=(sys.executable, __file__, "gateway"),
)

if __name__ == "__main__":
    role, rest = sys.argv[1], sys.argv[2:]
    if role == "gateway":
        stand_in_gateway(rest)
    elif role == "controller":
        stand_in_controller(rest)
    else:
        signal.pause()
    raise SystemExit(0)


# --- the kubelet daemon, with the test as the controller ------------------------------------


class KubeletLab:
    def __init__(self, prefix: str, root: Path, endpoint: str, sup: procs.Supervisor) -> None:
        self.prefix, self.root, self.endpoint, self.sup = prefix, root, endpoint, sup

    def run(self, coro: Callable[[Any], Any]) -> Any:
        async def go() -> Any:
            store = await connect(self.endpoint)
            try:
                return await coro(resource_store(store))
            finally:
                await store.close()

        return asyncio.run(go())

    def put(self, *pods: PodResource) -> None:
        self.run(lambda res: res.apply(list(pods)))

    def delete(self, name: str) -> None:
        self.run(lambda res: res.delete([("Pod", "default", name)]))

    def get(self, name: str) -> PodResource | None:
        found = self.run(lambda res: res.get(("Pod", "default", name)))
        assert found is None or isinstance(found, PodResource)
        return found


@pytest.fixture
def klab(run_prefix: str, tmp_path: Path) -> Iterator[KubeletLab]:
    prefix = f"{run_prefix}k{uuid.uuid4().hex[:3]}"
    topology = aws_topology_of_the_scenario(prefix)
    with EtcdServer(base_dir=tmp_path) as etcd, procs.Supervisor(prefix, tmp_path) as sup:
        try:
            info = registry.LabInfo(prefix, "aws", "native", etcd.endpoint, STAND_INS.gateway)
            registry.save_info(info, tmp_path)
            netns.build(topology)
            state.save_topology(topology, tmp_path)
            env = {state.ROOT_ENV: str(tmp_path)}
            argv = procs.python_argv("egressgw.lab.kubelet", "--lab", prefix)
            sup.start("kubelet", argv, None, env=env, ready=kubelet.READY)
            yield KubeletLab(prefix, tmp_path, etcd.endpoint, sup)
        finally:
            sup.stop_all()
            netns.teardown(prefix, tmp_path)
    assert namespaces_with(prefix) == []


@pytest.mark.privileged
def test_kubelet_schedules_wires_and_removes_a_client_pod(klab: KubeletLab) -> None:
    klab.put(pod("netshoot"))
    bound = eventually(lambda: (p := klab.get("netshoot")) and p.spec.node_name and p)
    assert (bound.spec.node_name, str(bound.status.pod_ip)) == ("node-1", "10.244.0.1")
    ns = f"{klab.prefix}-pod-default-netshoot"
    # The namespace appears before its veth is addressed and routed: wait for the wiring.
    link = eventually(
        lambda: ns in namespaces_with(klab.prefix)
        and (found := ip_json(ns, "addr", "show", "eth0"))
        and found[0]["addr_info"]
        and ip_json(ns, "route", "show", "default")
        and found
    )
    addrs = link[0]["addr_info"]
    assert [(a["local"], a["prefixlen"]) for a in addrs] == [("10.244.0.1", 32)]
    # The lab's internet sees it through us-east-1a's NAT gateway.
    procs.start_echo(klab.sup, f"{klab.prefix}-internet", [A("203.0.113.100")])
    assert (
        sh(ns, "curl", "-sS", "--noproxy", "*", "http://203.0.113.100/").stdout == "198.51.100.1\n"
    )
    klab.delete("netshoot")
    eventually(lambda: ns not in namespaces_with(klab.prefix))


@pytest.mark.privileged
def test_kubelet_wires_moves_and_removes_a_gateway_pod(klab: KubeletLab) -> None:
    prefix, gw_ns = klab.prefix, f"{klab.prefix}-gw-default-egw-1-0"
    klab.put(pod("egw-1-0", "node-3", "10.99.24.1", **{GW: "egw-1", EIP: "198.51.100.11"}))
    eventually(lambda: readiness(gw_ns, "http://10.99.24.1:8080/readiness"))
    assert vpc_routes(prefix)["10.99.24.1"] == "10.0.176.10"
    assert eip_map(prefix) == {"198.51.100.11": "10.99.24.1"}
    argv = json.loads(readiness(gw_ns, "http://10.99.24.1:8080/readiness") or "[]")
    plan = klab.root / prefix / "nodes" / "node-3" / "gateways" / "default.egw-1-0.json"
    assert argv[argv.index("--plan-file") + 1] == str(plan)
    assert argv[argv.index("--pod") + 1] == "default/egw-1-0"
    # The internet reaches it through its Elastic IP.
    assert readiness(f"{prefix}-internet", "http://198.51.100.11:8080/readiness")

    # The controller moves it to another zone with another address.
    klab.put(pod("egw-1-0", "node-2", "10.99.8.1", **{GW: "egw-1", EIP: "198.51.100.11"}))
    eventually(lambda: readiness(gw_ns, "http://10.99.8.1:8080/readiness"))
    assert vpc_routes(prefix).get("10.99.8.1") == "10.0.160.11"
    assert "10.99.24.1" not in vpc_routes(prefix)
    assert eip_map(prefix) == {"198.51.100.11": "10.99.8.1"}
    pids = processes_with(f"--netns {gw_ns}")
    assert len(pids) == 1

    # Only its Elastic IP changes: re-associated in place, the gateway process stays.
    klab.put(pod("egw-1-0", "node-2", "10.99.8.1", **{GW: "egw-1", EIP: "198.51.100.12"}))
    eventually(lambda: eip_map(prefix) == {"198.51.100.12": "10.99.8.1"})
    assert processes_with(f"--netns {gw_ns}") == pids
    saved = json.loads((klab.root / prefix / "topology.json").read_text())
    assert [(g["name"], g["node"], g["elastic_ip"]) for g in saved["gateways"]] == [
        ("egw-1-0", "node-2", "198.51.100.12")
    ]

    klab.delete("egw-1-0")
    eventually(lambda: gw_ns not in namespaces_with(prefix))
    assert "10.99.8.1" not in vpc_routes(prefix)
    assert eip_map(prefix) == {}
    eventually(lambda: not processes_with(f"--netns {gw_ns}"))


@pytest.mark.privileged
def test_a_restarted_kubelet_adopts_the_lab_and_restarts_dead_gateways(klab: KubeletLab) -> None:
    gw_ns = f"{klab.prefix}-gw-default-egw-1-0"
    klab.put(pod("egw-1-0", "node-1", "10.99.8.1", **{GW: "egw-1"}))
    eventually(lambda: readiness(gw_ns, "http://10.99.8.1:8080/readiness"))
    inode = (Path("/run/netns") / gw_ns).stat().st_ino
    os.kill(klab.sup.records[0].pid, signal.SIGKILL)  # no chance to stop its gateways
    klab.sup.stop("kubelet")
    argv = procs.python_argv("egressgw.lab.kubelet", "--lab", klab.prefix)
    env = {state.ROOT_ENV: str(klab.root)}
    klab.sup.start("kubelet", argv, None, env=env, ready=kubelet.READY)
    eventually(lambda: readiness(gw_ns, "http://10.99.8.1:8080/readiness"))
    assert (Path("/run/netns") / gw_ns).stat().st_ino == inode  # adopted, not rebuilt
    assert len(processes_with(f"--netns {gw_ns}")) == 1  # the old one was stopped
    # A gateway process that dies is started again.
    os.kill(processes_with(f"--netns {gw_ns}")[0], signal.SIGKILL)
    eventually(lambda: readiness(gw_ns, "http://10.99.8.1:8080/readiness"), timeout=15)


@pytest.mark.privileged
def test_kubelet_stops_its_gateways_when_it_stops(klab: KubeletLab) -> None:
    gw_ns = f"{klab.prefix}-gw-default-egw-1-0"
    klab.put(pod("egw-1-0", "node-1", "10.99.8.1", **{GW: "egw-1"}))
    eventually(lambda: readiness(gw_ns, "http://10.99.8.1:8080/readiness"))
    klab.sup.stop("kubelet")
    assert processes_with(f"--netns {gw_ns}") == []
    # It leaves namespaces to `lab down`.
    assert gw_ns in namespaces_with(klab.prefix)


# --- the lifecycle: up and down with stand-ins ----------------------------------------------


@pytest.mark.privileged
def test_up_runs_the_scenario_and_down_leaves_nothing(run_prefix: str, tmp_path: Path) -> None:
    prefix = f"{run_prefix}u{uuid.uuid4().hex[:3]}"
    messages: list[str] = []
    started = time.monotonic()
    handle = up.up(
        scenarios.AWS, prefix, root=tmp_path, commands=STAND_INS, progress=messages.append
    )
    try:
        assert time.monotonic() - started < 30
        assert registry.labs(tmp_path) == [prefix]
        assert any("6 ready" in m for m in messages), messages
        names = namespaces_with(prefix)
        gateways = [n for n in names if "-gw-default-" in n]
        assert gateways == [f"{prefix}-gw-default-egw-{i}-0" for i in range(1, 7)]
        assert f"{prefix}-pod-default-netshoot" in names
        # netshoot was scheduled on node-1 and leaves directly through us-east-1a's NAT.
        ns = f"{prefix}-pod-default-netshoot"
        seen = sh(ns, "curl", "-sS", "--noproxy", "*", "http://203.0.113.100/").stdout
        assert seen == "198.51.100.1\n"
        # The store has the policy with the stand-in destinations, and the pod CIDRs.
        info = json.loads((tmp_path / prefix / "lab.json").read_text())
        assert "8.8.8.8 is played by 203.0.113.8 (google-dns)" in info["stand_ins"]
        status = lab_status.status(running.attach(None, tmp_path))
        assert sorted((g.gateway, str(g.public_ip)) for g in status.gateways) == [
            (f"egw-{i}", f"198.51.100.{10 + i}") for i in range(1, 7)
        ]
        assert all(g.ready for g in status.gateways)
        assert all(alive for _, alive in status.processes)
    finally:
        handle.down()
    assert namespaces_with(prefix) == []
    assert not (tmp_path / prefix).exists()
    assert processes_with(str(tmp_path)) == []


@pytest.mark.privileged
def test_up_that_fails_takes_everything_down(run_prefix: str, tmp_path: Path) -> None:
    prefix = f"{run_prefix}f{uuid.uuid4().hex[:3]}"
    broken = up.Commands(
        controller=(sys.executable, "-c", "raise SystemExit('controller broke')"),
        agent=STAND_INS.agent,
        gateway=STAND_INS.gateway,
    )
    with pytest.raises(RuntimeError, match="controller broke"):
        up.up(scenarios.AWS, prefix, root=tmp_path, commands=broken)
    assert namespaces_with(prefix) == []
    assert not (tmp_path / prefix).exists()
    assert processes_with(str(tmp_path)) == []
