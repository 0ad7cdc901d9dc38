"""What a running lab is now, as `lab status` and `lab exec` show it: its topology, each
gateway pod (which EgressGateway, its addresses, whether it answers its readiness probe),
each process (alive or not), and which namespace a name given to `lab exec` means.

Observations only: `probe` asks a gateway from inside its pod's namespace, `status` reads
the store (and carries on without gateway names if etcd is down). Must not change the lab
or bind anything outside the lab's namespaces.
"""

from __future__ import annotations

import asyncio
import urllib.request
from dataclasses import dataclass
from ipaddress import IPv4Address

from egressgw.calc.gateways import GATEWAY_ANNOTATION, HEALTH_PORT
from egressgw.lab import procs, state
from egressgw.lab.registry import LabInfo, kubelet_root
from egressgw.lab.running import LabHandle
from egressgw.lab.topology import GatewayPod, Topology, internet_ns, node_ns, pod_ns, rs_ns
from egressgw.store import StoreError, etcd
from egressgw.store.codec import resource_store

#: No proxy from the environment: lab addresses are reached directly, inside the lab.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class GatewayStatus:
    gateway: str
    namespace: str
    name: str
    node: str
    ip: IPv4Address
    public_ip: IPv4Address | None
    ready: bool


@dataclass(frozen=True)
class LabStatus:
    info: LabInfo
    topology: Topology
    gateways: tuple[GatewayStatus, ...]
    processes: tuple[tuple[str, bool], ...]  # (name, alive)


def probe(prefix: str, pod: GatewayPod, port: int = HEALTH_PORT, timeout: float = 0.5) -> bool:
    """Does the gateway answer GET /readiness with 200, asked from inside its namespace?"""

    def ask() -> bool:
        url = f"http://{pod.ip}:{port}/readiness"
        with _DIRECT.open(url, timeout=timeout) as reply:
            return bool(reply.status == 200)

    try:
        return procs.in_netns(pod_ns(prefix, pod), ask)
    except OSError:
        return False


async def _gateway_names(endpoint: str) -> dict[tuple[str, str], str]:
    store = await etcd.connect(endpoint, timeout=2.0)
    try:
        pods, _ = await resource_store(store).list_all("Pod")
    finally:
        await store.close()
    return {
        (p.metadata.namespace or "", p.metadata.name): p.metadata.annotations[GATEWAY_ANNOTATION]
        for p in pods
        if GATEWAY_ANNOTATION in p.metadata.annotations
    }


def status(handle: LabHandle) -> LabStatus:
    """The lab now: its topology, gateway pods (from the store: which gateway) and processes."""
    topology = handle.topology()
    try:
        names = asyncio.run(_gateway_names(handle.info.etcd))
    except StoreError:  # etcd is down: show the lab anyway, without gateway names
        names = {}
    gateways = tuple(
        GatewayStatus(
            names.get((g.namespace, g.name), ""),
            g.namespace,
            g.name,
            g.node,
            g.ip,
            g.elastic_ip or topology.nat_address(topology.node(g.node).zone),
            probe(handle.prefix, g),
        )
        for g in topology.gateways
    )
    records = [
        *state.load_processes(handle.prefix, handle.root),
        *state.load_processes(handle.prefix, kubelet_root(handle.prefix, handle.root)),
    ]
    return LabStatus(
        handle.info, topology, gateways, tuple((r.name, procs.alive(r)) for r in records)
    )


def netns_for(topology: Topology, name: str) -> str:
    """The namespace `lab exec NAME` means: a pod (NAMESPACE/NAME, or NAME in default), an
    internet host's name, a node's name, a route server's name, or vpc / edge (firewall) /
    internet."""
    namespace, _, pod = name.rpartition("/")
    found = topology.find(namespace or "default", pod)
    if found is not None:
        return pod_ns(topology.prefix, found)
    if rs := next((r for r in topology.route_servers() if r.name == name), None):
        return rs_ns(topology.prefix, rs)
    if name == "firewall" and topology.route_servers():
        name = "edge"
    if any(h.name == name for h in topology.internet_hosts) or name == "internet":
        return internet_ns(topology.prefix)
    if any(n.name == name for n in topology.nodes):
        return node_ns(topology.prefix, name)
    if name in ("vpc", "edge"):
        return f"{topology.prefix}-{name}"
    raise LookupError(f"lab {topology.prefix} has no pod, node or internet host {name!r}")
