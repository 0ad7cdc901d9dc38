"""The changes a topology goes through while a lab runs, as pure functions returning a new
`Topology`: a pod or gateway pod added, moved or removed, an Elastic IP allocated or
(dis)associated. The kubelet makes them as the store's Pods change; tests build labs with
them.

Pure: no I/O. Must not choose anything (which node, which address, which Elastic IP: the
controller and `lab.addressplan` do) nor check anything (`Topology` validates itself, so
an edit that breaks the lab raises `TopologyError`).
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

from egressgw.lab.topology import AwsEdge, GatewayPod, Pod, Topology


def with_pod(t: Topology, pod: Pod) -> Topology:
    """`t` plus `pod` (a `GatewayPod` goes to `gateways`), replacing any workload of the
    same namespace/name, which is how a gateway moves to another node."""
    rest = without_pod(t, pod.namespace, pod.name)
    if isinstance(pod, GatewayPod):
        return replace(rest, gateways=(*rest.gateways, pod))
    return replace(rest, pods=(*rest.pods, pod))


def without_pod(t: Topology, namespace: str, name: str) -> Topology:
    """`t` without that pod or gateway pod; unchanged if there is none."""
    keep = lambda p: (p.namespace, p.name) != (namespace, name)  # noqa: E731
    return replace(t, pods=tuple(filter(keep, t.pods)), gateways=tuple(filter(keep, t.gateways)))


def with_elastic_ip(t: Topology, namespace: str, name: str, eip: IPv4Address | None) -> Topology:
    """`t` with the gateway's Elastic IP association set (None disassociates)."""
    gw = next(g for g in t.gateways if (g.namespace, g.name) == (namespace, name))
    return with_pod(t, replace(gw, elastic_ip=eip))


def with_allocated(t: Topology, eip: IPv4Address | None) -> Topology:
    """`t` whose cloud has allocated `eip` (the lab's AWS allocates on demand)."""
    edge = t.edge
    if eip is None or not isinstance(edge, AwsEdge) or eip in edge.elastic_ips:
        return t
    return replace(t, edge=replace(edge, elastic_ips=(*edge.elastic_ips, eip)))
