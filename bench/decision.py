"""Benchmark: the egress decision for every pod of a synthetic cluster, and for one change.

Cluster: 10,000 pods in 1,000 namespaces on 100 nodes, 100 EgressGateways x 2 replicas,
100 EgressGatewayPolicies x 10 rules. Pods use, in turn, a policy on their namespace, a
selector on themselves, a namespace selector, or nothing.

Goal (issue 2): full computation <= 1 s, one pod changing <= 1 ms, on a 2-core machine.
Prints its figures; the last line is one JSON object of them.

Run: .venv/bin/python bench/decision.py
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

from egressgw.calc import annotations as ann
from egressgw.calc import cluster, decision, snapshot
from egressgw.calc.egressconfig import EgressConfig, Source
from egressgw.model import parsing
from egressgw.model.resourceset import ResourceSet

PODS, NAMESPACES, NODES, GATEWAYS, POLICIES, RULES = 10_000, 1_000, 100, 100, 100, 10


def synthetic() -> ResourceSet:
    docs: list[dict[str, Any]] = [
        {"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration", "metadata": {"name": "default"},
         "spec": {"egressIPSupport": "EnabledPerNamespaceOrPerPod"}},
        {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "pods"},
         "spec": {"cidr": "10.244.0.0/16"}},
        {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "egress"},
         "spec": {"cidr": "10.99.0.0/23", "blockSize": 31, "nodeSelector": "!all()"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "egw"}},
    ]
    docs += [{"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"node-{n}", "labels": {"topology.kubernetes.io/zone": f"z{n % 3}"}},
              "status": {"addresses": [{"type": "InternalIP", "address": f"10.0.{n // 250}.{n % 250 + 1}"}]}} for n in range(NODES)]
    docs += [{"apiVersion": "operator.tigera.io/v1", "kind": "EgressGateway", "metadata": {"name": f"gw-{g}", "namespace": "egw"},
              "spec": {"replicas": 2, "ipPools": [{"name": "egress"}], "template": {"metadata": {"labels": {"egress-code": f"gw-{g}"}}}}}
             for g in range(GATEWAYS)]
    docs += [{"apiVersion": "projectcalico.org/v3", "kind": "EgressGatewayPolicy", "metadata": {"name": f"pol-{p}"},
              "spec": {"rules": [_rule(p, r) for r in range(RULES)]}} for p in range(POLICIES)]
    for n in range(NAMESPACES):
        annotations = {ann.POLICY: f"pol-{n % POLICIES}"} if n % 4 == 0 else {}
        if n % 4 == 1:
            annotations = {ann.SELECTOR: f"egress-code == 'gw-{n % GATEWAYS}'", ann.NAMESPACE_SELECTOR: "projectcalico.org/name == 'egw'"}
        docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"ns-{n}", "annotations": annotations}})
    docs += [_pod(i, {}) for i in range(PODS)]
    return ResourceSet.build(parsing.from_dict(d) for d in docs)


def _rule(p: int, r: int) -> dict[str, Any]:
    if r == RULES - 1:
        return {"gateway": {"selector": f"egress-code == 'gw-{(p + r) % GATEWAYS}'", "namespaceSelector": "projectcalico.org/name == 'egw'"}}
    if r % 3 == 2:
        return {"destination": {"cidr": f"203.0.{p % 256}.{r * 8}/29"}}
    return {"destination": {"cidr": f"198.51.{p % 256}.{r * 16}/28"},
            "gateway": {"selector": f"egress-code == 'gw-{(p * 7 + r) % GATEWAYS}'", "namespaceSelector": "projectcalico.org/name == 'egw'",
                        "maxNextHops": r % 2}}


def _pod(i: int, annotations: dict[str, str]) -> dict[str, Any]:
    if i % 10 == 3 and not annotations:
        annotations = {ann.SELECTOR: f"egress-code == 'gw-{i % GATEWAYS}'", ann.NAMESPACE_SELECTOR: "projectcalico.org/name == 'egw'"}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"pod-{i}", "namespace": f"ns-{i % NAMESPACES}", "annotations": annotations},
            "spec": {"nodeName": f"node-{i % NODES}"}, "status": {"podIP": f"10.244.{i // 250}.{i % 250 + 1}"}}


def full(resources: ResourceSet) -> tuple[float, cluster.ClusterView, dict[tuple[str, str], EgressConfig]]:
    start = time.perf_counter()
    view, _, problems = snapshot.view_of_manifests(resources)
    assert not problems, problems[:3]
    configs = {key: decision.egress_config(view, w) for key, w in view.workloads.items()}
    return time.perf_counter() - start, view, configs


def one_change(view: cluster.ClusterView, i: int) -> float:
    pod = parsing.from_dict(_pod(i, {ann.POLICY: f"pol-{(i * 13) % POLICIES}"}))
    start = time.perf_counter()
    changed = view.with_workload(cluster.workload_from(pod))
    config = decision.egress_config(changed, changed.workloads[("ns-" + str(i % NAMESPACES), f"pod-{i}")])
    elapsed = time.perf_counter() - start
    assert config.source is Source.POD_POLICY
    return elapsed


def main() -> None:
    t0 = time.perf_counter()
    resources = synthetic()
    print(f"built synthetic cluster in {time.perf_counter() - t0:.1f} s "
          f"({PODS} pods, {NAMESPACES} namespaces, {NODES} nodes, {GATEWAYS}x2 gateways, {POLICIES}x{RULES} rules)")
    runs = [full(resources) for _ in range(3)]
    full_s = min(r[0] for r in runs)
    _, view, configs = runs[0]
    actions = {}
    for c in configs.values():
        for r in c.routes:
            actions[str(r.action)] = actions.get(str(r.action), 0) + 1
    distinct = len({c.routes for c in configs.values()})
    print(f"full: {full_s * 1000:.0f} ms for {len(configs)} pods; {distinct} distinct egress configurations; routes {actions}")
    changes = [one_change(view, i) for i in range(0, PODS, 37)]
    p50, p99 = statistics.median(changes), statistics.quantiles(changes, n=100)[98]
    print(f"one pod changing: p50 {p50 * 1e6:.0f} us, p99 {p99 * 1e6:.0f} us over {len(changes)} changes")
    print(f"vs goals: full {full_s / 1.0:.2f}x of 1 s budget, one change p99 {p99 / 0.001:.2f}x of 1 ms budget")
    print(json.dumps({"pods": PODS, "full_ms": round(full_s * 1000, 1), "change_p50_us": round(p50 * 1e6, 1),
                      "change_p99_us": round(p99 * 1e6, 1), "distinct_configs": distinct,
                      "full_goal_ratio": round(full_s / 1.0, 3), "change_goal_ratio": round(p99 / 0.001, 3)}))


if __name__ == "__main__":
    main()
