"""Restarting a node agent under a live flow: no packet lost, no kernel object re-created.

The oracle is iperf3 itself (UDP: the server counts every datagram) and the kernel of the
client node, read with `ip -j` / `nft -j` and watched with `ip monitor`; nothing of egressgw
is asked what it did.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from egressgw.lab import scenarios, state, up
from egressgw.lab.running import LabHandle
from egressgw.store.codec import resource_store
from egressgw.store.etcd import connect

pytestmark = pytest.mark.e2e
IFCONFIG_ME = "203.0.113.100"
EGW_1_EIP = "198.51.100.11"
PORT = "5299"


def sh(*argv: str, timeout: float = 10) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=timeout).stdout


def kernel(ns: str) -> dict[str, object]:
    """Every routing and nft object of ours on the node, with kernel identities (nexthop
    ids, nft handles, rule order)."""
    routes = json.loads(sh("ip", "-j", "-n", ns, "route", "show", "table", "all", "proto", "66"))
    return {
        "rules": json.loads(sh("ip", "-j", "-n", ns, "rule")),
        "nexthops": json.loads(sh("ip", "-j", "-n", ns, "nexthop")),
        "routes": sorted(json.dumps(r, sort_keys=True) for r in routes),
        "nft": json.loads(sh("ip", "netns", "exec", ns, "nft", "-j", "-a", "list", "table", "inet", "egressgw")),
    }


@pytest.fixture(scope="module")
def lab(run_prefix: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    handle = up.up(scenarios.AWS, f"{run_prefix}r", root=tmp_path_factory.mktemp("lab"))
    try:
        yield handle
    finally:
        handle.down()


def steer_netshoot(lab: LabHandle, selector: str) -> None:
    async def run() -> None:
        store = await connect(lab.info.etcd)
        try:
            await resource_store(store).patch_annotations(
                ("Pod", "default", "netshoot"), {"egress.projectcalico.org/selector": selector})
        finally:
            await store.close()

    asyncio.run(run())


def test_agent_restart_loses_no_packet_and_recreates_nothing(lab: LabHandle) -> None:
    pod_ns, node_ns, inet = (f"{lab.prefix}-pod-default-netshoot", f"{lab.prefix}-node-node-1",
                             f"{lab.prefix}-internet")
    steer_netshoot(lab, "egress-gateway == 'egw-1'")
    deadline = time.monotonic() + 5
    while sh("ip", "netns", "exec", pod_ns, "curl", "-s", "--max-time", "1",
             f"http://{IFCONFIG_ME}/").strip() != EGW_1_EIP:
        assert time.monotonic() < deadline, "netshoot never left through egw-1"
        time.sleep(0.05)
    server = subprocess.Popen(["ip", "netns", "exec", inet, "iperf3", "-s", "-1", "-B", IFCONFIG_ME,
                               "-p", PORT, "-J"], stdout=subprocess.PIPE, text=True)
    monitor = None
    try:
        time.sleep(0.3)
        client = subprocess.Popen(
            ["ip", "netns", "exec", pod_ns, "iperf3", "-c", IFCONFIG_ME, "-p", PORT, "-u", "-b", "20M",
             "-l", "1200", "-t", "6", "-J"], stdout=subprocess.PIPE, text=True)
        time.sleep(1.5)
        before = kernel(node_ns)
        monitor = subprocess.Popen(["ip", "-n", node_ns, "monitor", "rule", "route", "nexthop"],
                                   stdout=subprocess.PIPE, text=True)
        restart_agent(lab, "node-1")
        client_out, _ = client.communicate(timeout=20)
        after = kernel(node_ns)
    finally:
        server_out, _ = server.communicate(timeout=20)
        if monitor is not None:
            monitor.terminate()
    events = monitor.communicate(timeout=5)[0] if monitor is not None else ""
    received = json.loads(server_out)["end"]["sum"]
    sent = json.loads(client_out)["end"]["sum"]
    assert received["packets"] > 5000 and received["lost_packets"] == 0, received
    assert sent["packets"] == received["packets"] + received["lost_packets"]
    assert after == before
    assert [line for line in events.splitlines() if "proto 66" in line] == []


def restart_agent(lab: LabHandle, node: str) -> None:
    """Stop the node's agent and start it again with the same command line; wait until it
    has applied (its log says so)."""
    sup = lab.supervisor
    assert sup is not None
    record = next(r for r in sup.records if r.name == f"agent-{node}")
    sup.stop(record.name)
    log: Path = record.log
    env = {state.ROOT_ENV: str(lab.root), "GRPC_ENABLE_FORK_SUPPORT": "false"}
    sup.start(record.name, record.argv, record.netns, env=env, ready="applied in", timeout=15)
    assert "applied in" in log.read_text()
