"""High availability end to end: two replicas behind netshoot, faults, and what the echo
service saw.

One AWS lab for the module (always taken down). egressgw's lab drives: it scales gateways,
injects faults (`lab.chaos`) and runs the traffic from inside netshoot (`lab.traffic`: a new
connection every 20 ms, long TCP and UDP flows through each replica). The verdicts are
computed here from the raw observations only: when each connection started, whether the
echo service answered it within 0.5 s and which source address it saw; which source each
long flow was seen with, whether it broke, how many of its messages went unanswered. The
one kernel oracle (the client node's nexthop group, via `ip -j`) imports nothing of ours.

The issue asks for failover p99 <= 1 s over at least 20 kill trials: bench/failover.py runs
those 20 (figures in docs/benchmarks.md); here fewer kill trials keep the module under two
minutes, and each one must restore within 1 s (so the maximum, not a percentile).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from ipaddress import IPv4Address

import pytest

from egressgw.lab import chaos, demo_ha, scenarios, up
from egressgw.lab.running import LabHandle
from egressgw.lab.traffic import Attempt, Flow, Traffic

pytestmark = pytest.mark.e2e
GOAL = 1.0  # seconds from the fault until new connections succeed again
KILL_TRIALS = 10
PARTITION_TRIALS = 2
GRACE = 4  # seconds a gracefully stopped gateway drains
PROPAGATION = 0.5  # margin for a store change to reach the client node's kernel
GOOGLE_DNS = IPv4Address("203.0.113.8")  # the httpProbe target (an echo stand-in)
PAIRS = ("egw-1", "egw-2")  # kill and partition trials alternate between these
PROBED, DRAINED = "egw-3", "egw-4"
NEW_AFTER_SCALE, MIN_SHARE = 45, 5  # new connections looked at after a scale-up; per replica


# --- oracles --------------------------------------------------------------------------------


def failover(attempts: Sequence[Attempt], fault_at: float, timeout: float = 0.5) -> float:
    """Fault -> answer of the first connection started after the last failed one."""
    failed = [a.start for a in attempts if not a.ok and a.start >= fault_at - timeout]
    if not failed:
        return 0.0
    later = [a.start + a.ms / 1000 for a in attempts if a.ok and a.start > max(failed)]
    return min(later) - fault_at if later else float("inf")


def undisturbed(flow: Flow) -> bool:
    """Never broke, one source (address and port) from start to end, every message answered."""
    return flow.error is None and len(flow.sources) == 1 and flow.sent == flow.answered


def through(flows: Sequence[Flow], public: IPv4Address | None) -> list[Flow]:
    return [f for f in flows if f.sources and f.sources[0][1].split(":")[0] == str(public)]


def group_sizes(netns: str) -> list[int]:
    """The member count of each nexthop group in `netns`, as the kernel shows them."""
    out = subprocess.run(
        ["ip", "-j", "-n", netns, "nexthop", "show"], capture_output=True, text=True, check=True
    ).stdout
    return [len(n["group"]) for n in json.loads(out or "[]") if "group" in n]


def touch_every_bucket(netns: str, target: IPv4Address, flows: int = 2000) -> None:
    """Steady load as the kernel sees it: one UDP datagram from each of `flows` source ports,
    so every bucket of the client's nexthop group has just been used (none is idle). To the
    discard port, where nothing listens: a burst to the echo port would overflow the echo
    server's socket buffer and drop the long UDP flows' own datagrams."""
    script = ("import socket, sys\n"
              "for _ in range(int(sys.argv[2])):\n"
              "    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:\n"
              "        s.sendto(b'x', (sys.argv[1], 9))\n")  # fmt: skip
    subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", script, str(target), str(flows)],
                   check=True)  # fmt: skip


def namespaces_with(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(f"{prefix}-")]


def nft_in(netns: str, script: str) -> None:
    subprocess.run(["ip", "netns", "exec", netns, "nft", "-f", "-"], input=script, text=True,
                   check=True)  # fmt: skip


# --- the lab --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(run_prefix: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    prefix = f"{run_prefix}h"
    handle = up.up(scenarios.AWS, prefix, root=tmp_path_factory.mktemp("lab"))
    try:
        for gateway in (*PAIRS, PROBED, DRAINED):
            chaos.add_elastic_ips(handle, gateway, 2)
            chaos.scale(handle, gateway, 2)
        for gateway in (*PAIRS, PROBED, DRAINED):
            chaos.wait_replicas(handle, gateway, 2)
        yield handle
    finally:
        handle.down()
        assert namespaces_with(prefix) == []


def check_trial(trial: demo_ha.Trial) -> float:
    """Assert what one fault trial must show; return its failover time."""
    record, survivor = trial.traffic, trial.survivors[0]
    took = failover(record.attempts, trial.fault_at)
    what = f"{trial.fault} {trial.victim.name}"
    assert took <= GOAL, f"{what}: new connections failed for {took:.3f}s"
    assert any(not a.ok for a in record.attempts), f"{what}: no connection went to the victim"
    after = [a for a in record.attempts if a.start > trial.fault_done]
    assert not [a for a in after if a.seen == trial.victim.public_ip]
    pinned = through(record.flows, survivor.public_ip)
    assert {f.proto for f in pinned} == {"tcp", "udp"}
    assert [f.as_dict() for f in pinned if not undisturbed(f)] == [], what
    return took


def test_killing_one_of_two_replicas_fails_over_within_a_second(lab: LabHandle) -> None:
    took = []
    for i in range(KILL_TRIALS):
        gateway = PAIRS[i % 2]
        victim = f"{gateway}-{(i // 2) % 2}"
        trial = demo_ha.run_trial(lab, gateway, "kill", victim)
        demo_ha.recover(lab, trial, wait=None)  # comes back while the other pair is tried
        took.append(check_trial(trial))
    assert max(took) <= GOAL, took


def test_partitioning_a_replica_is_detected_the_same_way(lab: LabHandle) -> None:
    for i in range(PARTITION_TRIALS):
        gateway = PAIRS[i % 2]
        trial = demo_ha.run_trial(lab, gateway, "partition", f"{gateway}-1")
        gateway_alive = chaos.gateway_process(lab, trial.victim.pod) is not None
        demo_ha.recover(lab, trial, wait=None)
        assert gateway_alive, "the partitioned gateway's process must keep running"
        check_trial(trial)


def test_a_gateway_whose_http_probe_fails_removes_itself_and_returns(lab: LabHandle) -> None:
    detection = {"httpProbe": {"urls": [f"http://{GOOGLE_DNS}/"], "intervalSeconds": 1,
                               "timeoutSeconds": 2}}  # fmt: skip
    chaos.set_failure_detection(lab, PROBED, detection)
    internet = f"{lab.prefix}-internet"
    victim, survivor = demo_ha.balance(lab, PROBED)
    # Only the probe's target stops answering the victim's Elastic IP: its clients' traffic
    # to ifconfig.me would still pass, so only its own readiness can take it out.
    block = f"""table ip egwtest {{
  chain input {{
    type filter hook input priority -10;
    ip saddr {victim.public_ip} ip daddr {GOOGLE_DNS} drop
  }}
}}
"""
    try:
        with Traffic(demo_ha.client_ns(lab), demo_ha.target(lab)) as traffic:
            traffic.start(expect=[victim.public_ip, survivor.public_ip])
            time.sleep(0.5)
            blocked_at = time.monotonic()
            nft_in(internet, block)
            time.sleep(5.0)
            record = traffic.stop()
        via_victim = [a.start - blocked_at for a in record.attempts if a.seen == victim.public_ip]
        assert via_victim and min(via_victim) < 0, "the victim carried connections before"
        assert max(via_victim) <= 2 + 1.5, f"still used {max(via_victim):.2f}s after the block"
        late = [a for a in record.attempts if a.start > blocked_at + 3.5]
        assert late and all(a.ok and a.seen == survivor.public_ip for a in late)
        assert all(undisturbed(f) for f in through(record.flows, survivor.public_ip))
    finally:
        nft_in(internet, "add table ip egwtest\ndelete table ip egwtest\n")
    # Back: a fresh group for netshoot holds it again, so the echo sees both addresses.
    assert {r.name for r in demo_ha.balance(lab, PROBED, timeout=10)} == {
        victim.name,
        survivor.name,
    }
    chaos.set_failure_detection(lab, PROBED, None)


def test_graceful_stop_keeps_established_connections_and_takes_no_new_ones(
    lab: LabHandle,
) -> None:
    victim, survivor = demo_ha.balance(lab, DRAINED)
    with Traffic(demo_ha.client_ns(lab), demo_ha.target(lab)) as traffic:
        traffic.start(expect=[victim.public_ip, survivor.public_ip])
        time.sleep(0.5)
        stopped_at = time.monotonic()
        chaos.stop_gateway(lab, f"default/{victim.name}", GRACE)
        time.sleep(GRACE + 1.5)
        record = traffic.stop()
    end = stopped_at + GRACE  # the controller deletes the pod at this instant, not before
    draining = through(record.flows, victim.public_ip)
    assert [f.proto for f in draining if f.proto == "tcp"], "no long TCP flow on the victim"
    for f in draining:
        assert f.error is None or f.error[0] >= end, f"reset during the grace period: {f}"
        assert all(at >= end for at, _ in f.sources[1:]), f"moved during the grace period: {f}"
        if f.proto == "tcp":
            assert f.last >= end - 0.5, f"stopped exchanging data during the grace period: {f}"
    # During the grace period every new connection goes to the survivor. (Afterwards the
    # controller's replacement may take some: it gets the victim's name, IP and EIP.)
    new = [a for a in record.attempts if stopped_at + PROPAGATION < a.start < end]
    wrong = [(round(a.start - stopped_at, 3), str(a.seen)) for a in new
             if not a.ok or a.seen != survivor.public_ip]  # fmt: skip
    assert new and wrong == [], f"{victim.name} stopped; new connections (s after, seen)"
    # The survivor's connections are undisturbed, through the end of the drain and after.
    pinned = through(record.flows, survivor.public_ip)
    assert pinned and [f.as_dict() for f in pinned if not undisturbed(f)] == []


def test_scaling_from_two_to_three_replicas_moves_no_flow(lab: LabHandle) -> None:
    """The new replica takes its share of new connections at once (a fresh group over all
    three), while every flow opened before keeps its source with nothing lost (the old group
    lingers, unchanged, for their conntrack mark)."""
    gateway = PAIRS[1]
    chaos.add_elastic_ips(lab, gateway, 3)
    replicas = demo_ha.balance(lab, gateway)
    node = demo_ha.client_node_ns(lab)
    try:
        with Traffic(demo_ha.client_ns(lab), demo_ha.target(lab)) as traffic:
            flows = traffic.start(expect=[r.public_ip for r in replicas])
            # A group grown in place would give the new replica only idle buckets: none.
            touch_every_bucket(demo_ha.client_ns(lab), demo_ha.target(lab))
            chaos.scale(lab, gateway, 3)
            grown_to = chaos.wait_replicas(lab, gateway, 3)
            deadline = time.monotonic() + 5
            while 3 not in group_sizes(node) and time.monotonic() < deadline:
                time.sleep(0.05)
            grown_at, sizes = time.monotonic(), group_sizes(node)
            time.sleep(1.8)
            record = traffic.stop()
    finally:
        chaos.scale(lab, gateway, 2)
    assert len(record.flows) == len(flows) >= 8
    assert [f.as_dict() for f in record.flows if not undisturbed(f)] == []
    # New connections: each replica's address among the first NEW_AFTER_SCALE, a few times
    # at least (a third each on average; fewer than MIN_SHARE has odds of about 1e-4).
    new = [a for a in record.attempts if a.start > grown_at + PROPAGATION][:NEW_AFTER_SCALE]
    assert len(new) == NEW_AFTER_SCALE and all(a.ok for a in new)
    seen = Counter(str(a.seen) for a in new)
    assert all(seen[str(r.public_ip)] >= MIN_SHARE for r in grown_to), (seen, grown_to)
    assert 3 in sizes, f"the client node never built a group of the three replicas: {sizes}"
    assert 2 in sizes, f"the old group of two must linger for the flows opened before: {sizes}"
