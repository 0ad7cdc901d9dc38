"""Benchmark: failover when one of two gateway replicas dies or is cut off (needs root).

The reference polls each gateway every 10 s and needs three failures (30-60 s), and
re-hashes live flows whenever the gateway set changes. egressgw's agent probes every gateway
every 100 ms over the tunnel path (fall 3) and routes through resilient nexthop groups, so
only the dead replica's flows move. Goal: restoration p99 <= 1 s, 0 flows disturbed.

On an AWS lab, egw-1 and egw-2 get two replicas each. Each trial points netshoot at one of
them through a freshly built group, runs a new connection every 20 ms plus 2 TCP and 2 UDP
long flows through each replica, then kills one replica (SIGKILL of its process, its link
down) or partitions it (nft drop on its eth0, process alive), watches 2 s, and revives or
heals it. Trials alternate between the two gateways and their replicas, so a revived
replica has time to come back. Per trial:

- detection: fault -> the client node's kernel replaced the group without the replica
  (`ip monitor nexthop`);
- restoration: fault -> the echo service answered the first connection started after the
  last failed one (a connection fails when unanswered within 0.5 s);
- disturbed: long flows through the surviving replica that broke, changed source address or
  port, or lost a message (UDP: datagrams unanswered).

p50 and p99 by nearest rank (with 20 trials p99 is the maximum). Prints a row per trial and
the figures; the last line is one JSON object of them.
Run: .venv/bin/python bench/failover.py [--kills 20] [--partitions 10]   (as root)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import uuid
from pathlib import Path

from egressgw.lab import chaos, demo_ha, scenarios, up
from egressgw.lab.running import LabHandle

PAIRS = ("egw-1", "egw-2")
GOAL_MS = 1000


def percentile(values: list[float], p: float) -> float:
    """Nearest rank: the smallest value with at least p% of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def run(handle: LabHandle, fault: demo_ha.Fault, index: int) -> demo_ha.Trial:
    gateway = PAIRS[index % 2]
    victim = f"{gateway}-{(index // 2) % 2}"
    trial = demo_ha.run_trial(handle, gateway, fault, victim)
    demo_ha.recover(handle, trial, wait=None)  # it comes back while the other pair is tried
    return trial


def summary(trials: list[demo_ha.Trial]) -> dict[str, float | int]:
    detection = [t.detection_s * 1000 for t in trials if t.detection_s is not None]
    restoration = [(t.restoration_s or math.inf) * 1000 for t in trials]
    survivors = [f for t in trials for f in t.flows_through(t.survivors)]
    return {
        "trials": len(trials),
        "detection_p50_ms": round(percentile(detection, 50)),
        "detection_p99_ms": round(percentile(detection, 99)),
        "restoration_p50_ms": round(percentile(restoration, 50)),
        "restoration_p99_ms": round(percentile(restoration, 99)),
        "failed_connections": sum(len(t.failed) for t in trials),
        "connections": sum(len(t.traffic.attempts) for t in trials),
        "survivor_flows": len(survivors),
        "survivor_flows_disturbed": sum(f.disturbed for f in survivors),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--partitions", type=int, default=10)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="egwbf-"))
    handle = up.up(scenarios.AWS, f"egwbf{uuid.uuid4().hex[:5]}", root=root)
    results: dict[str, dict[str, float | int]] = {}
    try:
        for gateway in PAIRS:
            chaos.add_elastic_ips(handle, gateway, 2)
            chaos.scale(handle, gateway, 2)
        for gateway in PAIRS:
            chaos.wait_replicas(handle, gateway, 2)
        for fault, count in (("kill", args.kills), ("partition", args.partitions)):
            trials = []
            for i in range(count):
                trial = run(handle, fault, i)  # type: ignore[arg-type]
                trials.append(trial)
                row = trial.as_dict()
                print(f"{fault:9s} {i:2d} {row['victim']:8s} detection {row['detection_ms']} ms "
                      f"restoration {row['failover_ms']} ms failed {row['failed']} "
                      f"survivor flows {row['survivor_flows']} disturbed "
                      f"{row['survivor_flows_disturbed']}", flush=True)  # fmt: skip
            if trials:
                results[fault] = summary(trials)
    finally:
        handle.down()
    for fault, figures in results.items():
        for label, value in figures.items():
            print(f"{fault:9s} {label:26s} {value}")
    kill = results.get("kill", {})
    verdict = {"goal_restoration_p99_ms": GOAL_MS, "met": bool(kill) and
               kill["restoration_p99_ms"] <= GOAL_MS and kill["survivor_flows_disturbed"] == 0}  # fmt: skip
    print(json.dumps({**results, **verdict}))


if __name__ == "__main__":
    started = time.monotonic()
    main()
    print(f"# {time.monotonic() - started:.0f} s", file=sys.stderr)
