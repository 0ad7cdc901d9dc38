"""The lab's kubelet, CNI and cloud in one daemon: `egressgw lab kubelet --lab PREFIX`.

It follows the Pods in the lab's store (an `Informer`) and makes the lab match them:
- a Pod without `spec.nodeName` / `status.podIP` (a client pod from the manifests) is
  scheduled on the node with the fewest pods (then by name) and given the lowest free
  address of that node's pod CIDR, written back with compare-and-swap;
- a Pod with node and address gets a namespace wired to its node (`netns.add_pod`). A
  gateway pod (annotation `egressgw.io/egress-gateway`, placed and addressed by the
  controller) is a `GatewayPod`: the VPC routes its /32 to its node, the edge maps its
  Elastic IP (annotation `egressgw.io/elastic-ip`) as AWS would, and its `egressgw gateway`
  process is started with the plan file the node's agent writes;
- a deleted Pod loses its process, namespace, route and Elastic IP; a gateway pod whose
  node or address changed is removed and added again; only its Elastic IP: re-associated.
The topology is saved after each change, so `lab status` shows the lab as it is.

It carries on past one pod's failure and retries a second later. It must not decide
anything the controller owns (gateway placement, gateway addresses, Elastic IP choice), and
it leaves namespaces to `lab down`: on exit it only stops the processes it started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import multiprocessing
import signal
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from ipaddress import IPv4Address
from pathlib import Path

from egressgw.calc.gateways import ELASTIC_IP_ANNOTATION, GATEWAY_ANNOTATION
from egressgw.lab import netns, procs, registry, state
from egressgw.lab.addressplan import free_address
from egressgw.lab.topology import AwsEdge, GatewayPod, Node, Pod, Topology, TopologyError, pod_ns
from egressgw.lab.topology_edits import with_allocated, with_elastic_ip, with_pod, without_pod
from egressgw.model import Pod as PodResource
from egressgw.model import Resource
from egressgw.store import etcd
from egressgw.store.codec import resource_store
from egressgw.store.resources import Informer, ResKey, ResourceStore

log = logging.getLogger("egressgw.lab.kubelet")
RETRY = 1.0
RESYNC = 5.0
READY = "egressgw-kubelet ready"
PodKey = tuple[str, str]  # (namespace, name)

# --- pure: what the store asks for ----------------------------------------------------------


def is_gateway(pod: PodResource) -> bool:
    return GATEWAY_ANNOTATION in pod.metadata.annotations


def _key(pod: PodResource) -> PodKey:
    return (pod.metadata.namespace or "default", pod.metadata.name)


def elastic_ip(pod: PodResource, topology: Topology) -> IPv4Address | None:
    """The Elastic IP the controller gave the pod, if the lab's cloud can hold it: inside
    the public range and not a NAT gateway's address."""
    text = pod.metadata.annotations.get(ELASTIC_IP_ANNOTATION)
    try:
        eip = IPv4Address(text) if text else None
    except ValueError:
        return None
    nats = (
        {g.address for g in topology.edge.nat_gateways}
        if isinstance(topology.edge, AwsEdge)
        else set()
    )
    if eip is None or eip not in topology.edge.public_cidr or eip in nats:
        return None
    return eip


def wanted(pods: Iterable[PodResource], topology: Topology) -> dict[PodKey, Pod]:
    """The lab workload each scheduled, addressed pod on a known node should be."""
    nodes = {n.name for n in topology.nodes}
    found: dict[PodKey, Pod] = {}
    for p in pods:
        node, ip = p.spec.node_name, p.ip
        if node not in nodes or ip is None or p.spec.host_network:
            continue
        namespace, name = _key(p)
        found[(namespace, name)] = (
            GatewayPod(namespace, name, node, ip, elastic_ip(p, topology))
            if is_gateway(p)
            else Pod(namespace, name, node, ip)
        )
    return found


def _node_for(
    pod: PodResource, nodes: Mapping[str, Node], counts: Counter[str | None]
) -> str | None:
    """The pod's own node; else the node whose pod CIDR holds its address; else the node
    with the fewest (plain) pods, then by name. None if it names a node the lab lacks."""
    if pod.spec.node_name:
        return pod.spec.node_name if pod.spec.node_name in nodes else None
    if pod.ip is not None:
        return next((n.name for n in nodes.values() if pod.ip in n.pod_cidr), None)
    return min(nodes, key=lambda n: (counts[n], n), default=None)


def schedule(
    pods: Sequence[PodResource], topology: Topology
) -> dict[PodKey, tuple[str, IPv4Address]]:
    """A node and an address for every plain pod that lacks either. Gateway pods are the
    controller's to place, and are not counted: they take secondary IPs, not pod-CIDR
    addresses, and counting them would make a pod's node depend on whether the controller
    or the kubelet wrote first. A pod whose node has no free address is left out."""
    nodes = {n.name: n for n in topology.nodes}
    counts: Counter[str | None] = Counter(p.spec.node_name for p in pods if not is_gateway(p))
    used = {p.ip for p in pods if p.ip is not None} | {w.ip for w in topology.workloads()}
    plan: dict[PodKey, tuple[str, IPv4Address]] = {}
    for p in sorted(pods, key=_key):
        if is_gateway(p) or p.spec.host_network or (p.ip is not None and p.spec.node_name):
            continue
        node = _node_for(p, nodes, counts)
        ip = p.ip if p.ip is not None or node is None else free_address(nodes[node].pod_cidr, used)
        if node is None or ip is None:
            continue
        if not p.spec.node_name:
            counts[node] += 1
        used.add(ip)
        plan[_key(p)] = (node, ip)
    return plan


def _bound(pod: Resource, node: str, ip: IPv4Address) -> Resource:
    """`pod` scheduled on `node` with address `ip`, unless it was bound meanwhile."""
    assert isinstance(pod, PodResource)
    if pod.spec.node_name and pod.ip is not None:
        return pod
    spec = pod.spec.model_copy(update={"node_name": pod.spec.node_name or node})
    status = pod.status.model_copy(update={"pod_ip": pod.status.pod_ip or ip})
    return pod.model_copy(update={"spec": spec, "status": status})


# --- the daemon -----------------------------------------------------------------------------


class Kubelet:
    """Reconciles the lab with the store's Pods; one reconcile at a time."""

    def __init__(
        self,
        info: registry.LabInfo,
        root: Path,
        topology: Topology,
        resources: ResourceStore[Resource],
        supervisor: procs.Supervisor,
        network: Executor,
    ) -> None:
        self.info = info
        self.root = root
        self.topology = topology
        self.resources = resources
        self._sup = supervisor
        self._network = network
        self._pods: list[PodResource] = []
        self._wake = asyncio.Event()

    async def on_change(self, objects: Mapping[ResKey, Resource], _revision: int) -> None:
        self._pods = [r for r in objects.values() if isinstance(r, PodResource)]
        self._wake.set()

    async def run(self) -> None:
        """Reconcile after every change, a second after a failure, and every RESYNC seconds
        anyway (a gateway process that died is started again)."""
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), RESYNC)
            self._wake.clear()
            if not await self.reconcile(self._pods):
                loop.call_later(RETRY, self._wake.set)

    async def reconcile(self, pods: Sequence[PodResource]) -> bool:
        """Make the lab match `pods`; False if anything failed (it carries on past it)."""
        ok = await self._bind(pods)
        desired = wanted(pods, self.topology)
        for current in self.topology.workloads():
            target = desired.get((current.namespace, current.name))
            if target is None or _moved(current, target):
                ok &= await self._step(f"remove {current.name}", self._remove(current))
        present = {(w.namespace, w.name): w for w in self.topology.workloads()}
        for key, target in sorted(desired.items()):
            if key not in present:
                ok &= await self._step(f"add {target.name}", self._add(target))
            elif isinstance(target, GatewayPod):
                ok &= await self._step(f"update {target.name}", self._update(target))
        return ok

    async def _step(self, what: str, action: Awaitable[object]) -> bool:
        try:
            await action
            return True
        except Exception:
            log.exception("%s failed; retrying", what)
            return False

    async def _bind(self, pods: Sequence[PodResource]) -> bool:
        ok = True
        for (namespace, name), (node, ip) in schedule(pods, self.topology).items():
            key = ("Pod", namespace, name)
            bind = self.resources.update(key, functools.partial(_bound, node=node, ip=ip))
            if await self._step(f"bind {namespace}/{name}", bind):
                log.info("scheduled %s/%s on %s with %s", namespace, name, node, ip)
            else:
                ok = False
        return ok

    async def _add(self, pod: Pod) -> None:
        eip = pod.elastic_ip if isinstance(pod, GatewayPod) else None
        topology = with_pod(with_allocated(self.topology, eip), pod)
        await self._net(netns.add_pod, topology, pod)
        self._save(topology)
        log.info("wired %s/%s on %s at %s", pod.namespace, pod.name, pod.node, pod.ip)
        if isinstance(pod, GatewayPod):
            self._ensure_gateway(pod)

    async def _remove(self, pod: Pod) -> None:
        self._sup.stop(_process(pod))
        await self._net(netns.remove_pod, self.topology, pod)
        self._save(without_pod(self.topology, pod.namespace, pod.name))
        log.info("removed %s/%s from %s", pod.namespace, pod.name, pod.node)

    async def _update(self, pod: GatewayPod) -> None:
        """Follow a change of Elastic IP, and restart the gateway process if it died."""
        current = self.topology.find(pod.namespace, pod.name)
        assert isinstance(current, GatewayPod)
        if current.elastic_ip != pod.elastic_ip:
            topology = with_elastic_ip(
                with_allocated(self.topology, pod.elastic_ip),
                pod.namespace,
                pod.name,
                pod.elastic_ip,
            )
            if current.elastic_ip is not None:
                await self._net(
                    netns.disassociate_eip, self.info.prefix, current.elastic_ip, pod.ip
                )
            if pod.elastic_ip is not None:
                await self._net(netns.associate_eip, self.info.prefix, pod.elastic_ip, pod.ip)
            self._save(topology)
            log.info("%s/%s: Elastic IP now %s", pod.namespace, pod.name, pod.elastic_ip)
        self._ensure_gateway(pod)

    def _ensure_gateway(self, pod: GatewayPod) -> None:
        name = _process(pod)
        record = next((r for r in self._sup.records if r.name == name), None)
        if record is not None and procs.alive(record):
            return
        self._sup.stop(name)  # reap a dead one before starting again
        plan = registry.plan_file(self.info.prefix, pod, self.root)
        argv = [
            *self.info.gateway_argv,
            *("--netns", pod_ns(self.info.prefix, pod), "--pod", f"{pod.namespace}/{pod.name}"),
            *("--ip", str(pod.ip), "--plan-file", str(plan)),
        ]
        # The lab stops a gateway's process when its pod is gone, i.e. when its grace period
        # has passed and a kubelet sends SIGKILL (a gateway serves on through SIGTERM).
        self._sup.start(name, argv, None, grace=0.0)

    async def _net(self, fn: Callable[..., None], *args: object) -> None:
        await asyncio.get_running_loop().run_in_executor(self._network, fn, *args)

    def _save(self, topology: Topology) -> None:
        self.topology = topology
        state.save_topology(topology, self.root)


def _moved(current: Pod, target: Pod) -> bool:
    """Must the workload be re-created (not just re-associated) to become `target`?"""
    return (type(current), current.node, current.ip) != (type(target), target.node, target.ip)


def _process(pod: Pod) -> str:
    return f"gateway-{pod.namespace}-{pod.name}"


# --- entry point ----------------------------------------------------------------------------


async def serve(prefix: str, root: Path | None = None) -> None:
    """Run the kubelet of lab `prefix` until cancelled; then stop the gateways it started."""
    root = state.root_dir(root)
    info = registry.load_info(prefix, root)
    topology = state.load_topology(prefix, root)
    if topology is None:
        raise TopologyError(f"lab {prefix} has no topology")
    sup_root = registry.kubelet_root(prefix, root)
    # Gateways a previous kubelet of this lab left running: start afresh.
    procs.kill_recorded(state.load_processes(prefix, sup_root))
    store = await etcd.connect(info.etcd)
    sup = procs.Supervisor(prefix, sup_root)
    # pyroute2 forks to create namespaces and open sockets in them, and a fork of a
    # process running gRPC threads crashes: the network work happens in a spawned helper.
    network = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    try:
        kubelet = Kubelet(info, root, topology, resource_store(store), sup, network)
        informer = Informer(kubelet.resources, kubelet.on_change, kind="Pod")
        tasks = [asyncio.create_task(informer.run()), asyncio.create_task(kubelet.run())]
        await informer.synced.wait()
        print(f"{READY} lab={prefix}", flush=True)
        await asyncio.gather(*tasks)
    finally:
        sup.stop_all()
        network.shutdown(cancel_futures=True)
        await store.close()


async def _until_signalled(prefix: str, root: Path | None) -> None:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await serve(prefix, root)


def main(prefix: str, root: Path | None = None) -> None:
    """The daemon: logs to stderr, stops cleanly on SIGTERM or SIGINT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(_until_signalled(prefix, root))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        prog="egressgw.lab.kubelet", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--lab", required=True, help="the lab's prefix")
    main(parser.parse_args().lab)
