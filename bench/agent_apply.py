"""Benchmark: one node agent applying a 10,000-entry change, end to end (needs root).

A node with 10,000 pods; their namespace's annotation changes from nothing to a gateway
selector, so all 10,000 become classified (and back). Timed: the agent's whole reconcile
(`Agent.apply_state`: build the state, decide, plan, and apply through the real nft and
netlink drivers in a fresh namespace). Goal (issue 3): <= 200 ms.

Prints its figures; the last line is one JSON object. Run: .venv/bin/python bench/agent_apply.py
"""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from egressgw.agent.node import Agent, AgentConfig
from egressgw.model import parsing
from egressgw.model.meta import Resource
from egressgw.plan.dataplane import Transport
from egressgw.store.resources import ResKey

PODS = 10_000


def objects(annotated: bool) -> dict[ResKey, Resource]:
    docs: list[dict[str, Any]] = [
        {"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration", "metadata": {"name": "default"},
         "spec": {"egressIPSupport": "EnabledPerNamespaceOrPerPod"}},
        {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "pods"}, "spec": {"cidr": "10.244.0.0/16"}},
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
         "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps", "annotations":
            {"egress.projectcalico.org/selector": "egress-code == 'red'"} if annotated else {}}},
    ]
    docs += [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"gw-{i}", "namespace": "apps",
              "labels": {"egress-code": "red"}, "annotations": {"egressgw.io/egress-gateway": "red"}},
              "spec": {"nodeName": "n2"}, "status": {"podIP": f"10.99.0.{i + 1}"}} for i in range(2)]
    docs += [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p{i}", "namespace": "apps"},
              "spec": {"nodeName": "n1"}, "status": {"podIP": f"10.244.{i // 250}.{i % 250 + 1}"}}
             for i in range(PODS)]
    return {(r.key.kind, r.key.namespace, r.key.name): r for r in (parsing.from_dict(d) for d in docs)}


def main() -> None:
    ns = f"egwbagent{uuid.uuid4().hex[:4]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        plain, steered = objects(False), objects(True)
        with tempfile.TemporaryDirectory() as tmp:
            agent = Agent.real(AgentConfig("n1", ns, Transport.NATIVE, Path(tmp)))
            agent.apply_state(plain)
            times = []
            for _ in range(5):
                for state in (steered, plain):
                    start = time.perf_counter()
                    stats = agent.apply_state(state)
                    times.append(time.perf_counter() - start)
                    assert not stats.errors, stats.errors
        listed = json.loads(subprocess.run(["ip", "netns", "exec", ns, "nft", "-j", "list", "map", "inet",
                                            "egressgw", "classify4"], capture_output=True, text=True).stdout)
        del listed
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    p50, worst = statistics.median(times), max(times)
    print(f"agent reconcile of a {PODS}-entry change: p50 {p50 * 1000:.0f} ms, max {worst * 1000:.0f} ms "
          f"over {len(times)} changes (goal <= 200 ms: {p50 / 0.2:.2f}x)")
    print(json.dumps({"entries": PODS, "p50_ms": round(p50 * 1000, 1), "max_ms": round(worst * 1000, 1),
                      "goal_ratio": round(p50 / 0.2, 3)}))


if __name__ == "__main__":
    main()
