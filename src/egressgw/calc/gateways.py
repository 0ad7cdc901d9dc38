"""Gateway pods derived from each `EgressGateway`, as the reference operator renders them.

Pure. For every EgressGateway this module says which pods should exist (name, labels,
annotations, pools, Elastic IPs), where they go (placement across nodes and zones, used
by the lab, which plays the scheduler), and which address each gets (through `ipam`).
A Kubernetes cluster's own scheduler and CNI do the last two there.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

from egressgw.calc import ipam
from egressgw.model import EgressGateway, IPPool, Node

ZONE_LABEL = "topology.kubernetes.io/zone"
HOSTNAME_LABEL = "kubernetes.io/hostname"
GATEWAY_ANNOTATION = "egressgw.io/egress-gateway"  # the EgressGateway a pod belongs to
GRACE_ANNOTATION = "egressgw.io/termination-grace-seconds"  # its drain window on deletion
ELASTIC_IP_ANNOTATION = "egressgw.io/elastic-ip"  # the Elastic IP associated with a pod
POOLS_ANNOTATION = "cni.projectcalico.org/ipv4pools"
ELASTIC_IPS_ANNOTATION = "cni.projectcalico.org/awsElasticIPs"
EXTERNAL_NETWORKS_ANNOTATION = "egress.projectcalico.org/externalNetworkNames"
HEALTH_PORT = 8080


@dataclass(frozen=True, slots=True)
class GatewayPod:
    """One desired gateway pod."""

    gateway: str  # the EgressGateway's name
    namespace: str
    name: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    pools: tuple[str, ...]  # IPPool names, in the order the EgressGateway lists them
    elastic_ips: tuple[IPv4Address, ...]
    node_selector: Mapping[str, str]
    spread_by_zone: bool


@dataclass(frozen=True, slots=True)
class Placed:
    """A gateway pod with its node, address and (AWS) Elastic IP."""

    pod: GatewayPod
    node: str
    ip: ipam.Address
    elastic_ip: IPv4Address | None


def labels_for(gw: EgressGateway) -> dict[str, str]:
    """The pod labels: the template's plus those the reference operator adds."""
    name = gw.metadata.name
    return {
        "k8s-app": name,
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": "egress-gateway",
        "app.kubernetes.io/part-of": "egressgw",
        "app.kubernetes.io/managed-by": "egressgw",
        **gw.template_labels,
    }


def pod_specs(gw: EgressGateway, pools: Sequence[IPPool]) -> list[GatewayPod]:
    """The pods an EgressGateway wants, named `<gateway>-<index>`, index from 0."""
    names = _pool_names(gw, pools)
    spec = gw.spec.template.spec if gw.spec.template is not None else None
    elastic = tuple(gw.spec.aws.elastic_ips) if gw.spec.aws is not None else ()
    annotations = {
        **(gw.spec.template.metadata.annotations if gw.spec.template is not None else {}),
        POOLS_ANNOTATION: json.dumps(list(names)),
        GATEWAY_ANNOTATION: gw.metadata.name,
    }
    if spec is not None and spec.termination_grace_period_seconds:
        annotations[GRACE_ANNOTATION] = str(spec.termination_grace_period_seconds)
    if elastic:
        annotations[ELASTIC_IPS_ANNOTATION] = json.dumps([str(e) for e in elastic])
    spread = spec is not None and any(
        c.topology_key == ZONE_LABEL for c in spec.topology_spread_constraints
    )
    return [
        GatewayPod(
            gateway=gw.metadata.name,
            namespace=gw.metadata.namespace or "default",
            name=f"{gw.metadata.name}-{index}",
            labels=labels_for(gw),
            annotations=annotations,
            pools=names,
            elastic_ips=elastic,
            node_selector=dict(spec.node_selector) if spec is not None else {},
            spread_by_zone=spread,
        )
        for index in range(gw.spec.replicas)
    ]


def _pool_names(gw: EgressGateway, pools: Sequence[IPPool]) -> tuple[str, ...]:
    names: list[str] = []
    for ref in gw.spec.ip_pools:
        if ref.name:
            names.append(ref.name)
            continue
        names.extend(p.metadata.name for p in pools if p.spec.cidr == ref.cidr)
    return tuple(names)


def place(
    pods: Sequence[GatewayPod],
    nodes: Sequence[Node],
    already: Mapping[tuple[str, str], str],
) -> dict[tuple[str, str], str]:
    """A node for every pod (keyed by (namespace, name)); pods in `already` stay put.

    Spread: a pod goes to an eligible node in the zone where its gateway has the fewest
    pods, then to the node with the fewest gateway pods, then by name. Pods with no
    eligible node are left out.
    """
    placement = dict(already)
    zone_of = {n.metadata.name: n.metadata.labels.get(ZONE_LABEL, "") for n in nodes}
    gateway_of = {(p.namespace, p.name): (p.namespace, p.gateway) for p in pods}
    for pod in sorted(pods, key=lambda p: (p.namespace, p.name)):
        key = (pod.namespace, pod.name)
        if key in placement:
            continue
        eligible = [n for n in nodes if _selects(pod.node_selector, n)]
        if not eligible:
            continue
        per_node = Counter(placement.values())
        per_zone = Counter(
            zone_of.get(node, "")
            for other, node in placement.items()
            if gateway_of.get(other) == (pod.namespace, pod.gateway)
        )
        best = min(
            eligible,
            key=lambda n: (
                per_zone[zone_of[n.metadata.name]] if pod.spread_by_zone else 0,
                per_node[n.metadata.name],
                n.metadata.name,
            ),
        )
        placement[key] = best.metadata.name
    return placement


def _selects(node_selector: Mapping[str, str], node: Node) -> bool:
    return all(node.metadata.labels.get(k) == v for k, v in node_selector.items())


def pools_for_node(
    pod: GatewayPod,
    node: Node,
    pools: Mapping[str, IPPool],
    subnet_zones: Mapping[str, str],
) -> list[ipam.Pool]:
    """The pod's pools usable on `node`: an AWS-backed pool only in its subnet's zone.

    A subnet's zone comes from `subnet_zones` (AWS DescribeSubnets, or the scenario), else
    from the pool's own `topology.kubernetes.io/zone` label; a pool with no known zone is
    usable everywhere.
    """
    zone = node.metadata.labels.get(ZONE_LABEL)
    usable = []
    for name in pod.pools:
        pool = pools.get(name)
        if pool is None or pool.spec.disabled:
            continue
        pool_zone = subnet_zones.get(pool.spec.aws_subnet_id or "") or pool.metadata.labels.get(
            ZONE_LABEL
        )
        if pool_zone and zone and pool_zone != zone:
            continue
        usable.append(ipam.Pool(name, pool.spec.cidr, pool.spec.effective_block_size))
    return usable


def elastic_ip_for(pod: GatewayPod, taken: set[IPv4Address]) -> IPv4Address | None:
    """The first of the pod's Elastic IPs that no other pod holds (never stolen)."""
    for candidate in pod.elastic_ips:
        if candidate not in taken:
            return candidate
    return None


@dataclass(frozen=True, slots=True)
class Rollout:
    """Where every gateway pod runs and what it holds; the persistent part of the state."""

    placement: Mapping[tuple[str, str], str]  # (namespace, pod) -> node
    ipam: ipam.IpamState
    elastic_ips: Mapping[tuple[str, str], IPv4Address]  # (namespace, pod) -> EIP


def materialize(
    gateways: Sequence[EgressGateway],
    pools: Sequence[IPPool],
    reserved: Sequence[ipam.Network],
    nodes: Sequence[Node],
    previous: Rollout,
    subnet_zones: Mapping[str, str] | None = None,
) -> tuple[list[Placed], Rollout, list[str]]:
    """Every gateway pod placed, addressed and given an Elastic IP; the new state; problems.

    Pods that no longer exist release their address and Elastic IP first (make room),
    then pods are handled in sorted order, so the result does not depend on input order.
    """
    specs = sorted(
        (p for gw in gateways for p in pod_specs(gw, pools)), key=lambda p: (p.namespace, p.name)
    )
    wanted = {(p.namespace, p.name) for p in specs}
    state = previous.ipam
    for key in sorted(set(previous.placement) - wanted):
        state = ipam.release(state, handle(*key))
    kept = {k: v for k, v in previous.placement.items() if k in wanted}
    node_by_name = {n.metadata.name: n for n in nodes}
    placement = place(specs, nodes, {k: v for k, v in kept.items() if v in node_by_name})
    pools_by_name = {p.metadata.name: p for p in pools}
    eips = {k: v for k, v in previous.elastic_ips.items() if k in wanted}
    placed: list[Placed] = []
    problems: list[str] = []
    for pod in specs:
        key = (pod.namespace, pod.name)
        node_name = placement.get(key)
        if node_name is None:
            problems.append(f"{pod.namespace}/{pod.name}: no node matches its nodeSelector")
            continue
        usable = pools_for_node(pod, node_by_name[node_name], pools_by_name, subnet_zones or {})
        try:
            address, state = ipam.assign(state, handle(*key), node_name, usable, reserved)
        except ipam.IpamExhausted as err:
            problems.append(str(err))
            continue
        if key not in eips:
            eip = elastic_ip_for(pod, set(eips.values()))
            if eip is not None:
                eips[key] = eip
        placed.append(Placed(pod, node_name, address, eips.get(key)))
    return placed, Rollout(placement, state, eips), problems


def handle(namespace: str, name: str) -> str:
    """The IPAM handle of a pod."""
    return f"pod/{namespace}/{name}"


EMPTY_ROLLOUT = Rollout(placement={}, ipam=ipam.IpamState(), elastic_ips={})
