"""Turning resources (and the gateway pods derived from them) into a ClusterView.

Pure. `view_of` is the one way to build the decision's input, used by `explain` on
manifests, by the agent on live state and by the benchmarks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network

from egressgw.calc import gateways
from egressgw.calc.cluster import (
    ORCHESTRATOR_LABEL,
    POD_NAMESPACE_LABEL,
    ClusterView,
    Support,
    Workload,
    namespace_from,
    workload_from,
)
from egressgw.model import Pod
from egressgw.model.resourceset import ResourceSet


def workload_of(placed: gateways.Placed) -> Workload:
    """The Workload of a derived gateway pod."""
    pod = placed.pod
    labels = {**pod.labels, POD_NAMESPACE_LABEL: pod.namespace, ORCHESTRATOR_LABEL: "k8s"}
    ip = placed.ip if isinstance(placed.ip, IPv4Address) else None
    return Workload(pod.namespace, pod.name, labels, dict(pod.annotations), placed.node, ip)


def internal_ranges(resources: ResourceSet, extra: Iterable[IPv4Network] = ()) -> tuple[IPv4Network, ...]:
    """The destinations that never go through a gateway: every pool, node and service range."""
    nets: set[IPv4Network] = set(extra)
    for pool in resources.ip_pools:
        if isinstance(pool.spec.cidr, IPv4Network):
            nets.add(pool.spec.cidr)
    for node in resources.nodes:
        if node.internal_ip is not None:
            nets.add(IPv4Network(node.internal_ip))
    bgp = resources.bgp_configuration
    if bgp is not None:
        for block in bgp.spec.service_cluster_ips:
            net = block.cidr
            if isinstance(net, IPv4Network):
                nets.add(net)
    return tuple(sorted(nets, key=lambda n: (int(n.network_address), n.prefixlen)))


def view_of(
    resources: ResourceSet,
    derived: Sequence[gateways.Placed] = (),
    failed: Iterable[IPv4Address] = (),
    extra_internal: Iterable[IPv4Network] = (),
    workload: Callable[[Pod], Workload] = workload_from,
) -> ClusterView:
    """The decision's view of `resources` plus gateway pods derived from EgressGateways.

    `workload` turns a Pod into a Workload; a process following a store passes a memoised
    one, so unchanged pods are not converted again."""
    workloads = {w.key: w for w in (workload(p) for p in resources.pods)}
    for placed in derived:
        w = workload_of(placed)
        workloads.setdefault(w.key, w)
    support = Support(resources.felix_configuration.spec.egress_ip_support)
    return ClusterView(
        support=support,
        namespaces={name: namespace_from(ns) for name, ns in resources.namespaces.items()},
        workloads=workloads,
        policies=dict(resources.policies),
        internal=internal_ranges(resources, extra_internal),
        failed=frozenset(failed),
    )


def view_of_manifests(resources: ResourceSet) -> tuple[ClusterView, list[gateways.Placed], list[str]]:
    """A view of manifests alone: gateway pods placed and addressed as a fresh cluster would."""
    placed, _, problems = gateways.materialize(
        list(resources.egress_gateways),
        list(resources.ip_pools),
        [c for r in resources.ip_reservations for c in r.spec.reserved_cidrs],
        list(resources.nodes),
        gateways.EMPTY_ROLLOUT,
    )
    return view_of(resources, placed), placed, problems
