"""The controller: turns EgressGateways into gateway pods (placement, IPAM, Elastic IPs).

In the lab and in standalone mode it plays the reference operator, the scheduler and the
CNI's IPAM at once: it writes Pod objects (node, IP, Elastic IP) for every replica and
deletes those no longer wanted. The Pods in the store ARE the persistent state: the
previous placement and IPAM are read back from them, and every address is also claimed
with compare-and-swap under /egressgw/state/ipam/, so two controllers can never hand out
one address. On Kubernetes the operator role is played by the Deployment renderer instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from typing import Any

from egressgw.calc import gateways, ipam
from egressgw.model import Pod, parsing
from egressgw.model.meta import Resource
from egressgw.model.parsing import ManifestError
from egressgw.model.resourceset import ResourceSet
from egressgw.store.base import Store
from egressgw.store.codec import resource_store
from egressgw.store.resources import Informer, ResKey, ResourceStore, StateStore

log = logging.getLogger("egressgw.controller")


def owned(pod: Pod) -> bool:
    """Is `pod` a gateway pod this controller manages?"""
    return gateways.GATEWAY_ANNOTATION in pod.metadata.annotations


def previous_rollout(pods: list[Pod], pools: Mapping[str, Any]) -> gateways.Rollout:
    """Placement, IPAM state and Elastic IPs as the existing gateway pods hold them."""
    placement: dict[tuple[str, str], str] = {}
    allocations: dict[ipam.Address, str] = {}
    affinities: dict[ipam.Network, str] = {}
    eips: dict[tuple[str, str], IPv4Address] = {}
    for pod in pods:
        key = (pod.metadata.namespace or "default", pod.metadata.name)
        node = pod.spec.node_name if pod.spec is not None else None
        if node is None or pod.ip is None:
            continue
        placement[key] = node
        allocations[pod.ip] = gateways.handle(*key)
        for pool in pools.values():
            if pod.ip in pool.spec.cidr:
                affinities.setdefault(ipam.block_of(pod.ip, pool.spec.effective_block_size), node)
        eip = pod.metadata.annotations.get(gateways.ELASTIC_IP_ANNOTATION)
        if eip:
            eips[key] = IPv4Address(eip)
    return gateways.Rollout(placement, ipam.IpamState(allocations, affinities), eips)


def pod_body(placed: gateways.Placed) -> dict[str, Any]:
    """The Pod object of a placed gateway pod."""
    annotations = dict(placed.pod.annotations)
    if placed.elastic_ip is not None:
        annotations[gateways.ELASTIC_IP_ANNOTATION] = str(placed.elastic_ip)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": placed.pod.name, "namespace": placed.pod.namespace,
                     "labels": dict(placed.pod.labels), "annotations": annotations},
        "spec": {"nodeName": placed.node},
        "status": {"podIP": str(placed.ip), "podIPs": [{"ip": str(placed.ip)}]},
    }


class Controller:
    """Reconciles gateway pods against EgressGateways."""

    def __init__(self, store: Store, subnet_zones: Mapping[str, str] | None = None) -> None:
        self.resources: ResourceStore[Resource] = resource_store(store)
        self.state = StateStore(store)
        self.subnet_zones = dict(subnet_zones or {})
        self.wake: Callable[[], None] | None = None  # reconcile again (set by `run`)

    async def reconcile(self, objects: Mapping[ResKey, Resource]) -> None:
        """One pass: write the pods that should exist, delete the ones that should not."""
        try:
            rs = ResourceSet.build(objects.values())
        except ManifestError as err:
            log.error("inconsistent state, nothing changed: %s", err)
            return
        mine = [p for p in rs.pods if owned(p)]
        # A terminating pod keeps its address and its name until it is gone (it drains).
        draining = {_key(p): p for p in mine if p.metadata.deletion_timestamp is not None}
        pools = {p.metadata.name: p for p in rs.ip_pools}
        reserved = [c for r in rs.ip_reservations for c in r.spec.reserved_cidrs]
        reserved += [ipam.block_of(p.ip, 32) for p in draining.values() if p.ip is not None]
        live = [p for p in mine if _key(p) not in draining]
        placed, _, problems = gateways.materialize(
            list(rs.egress_gateways), list(rs.ip_pools), reserved, list(rs.nodes),
            previous_rollout(live, pools), self.subnet_zones,
        )
        placed = [p for p in placed if (p.pod.namespace, p.pod.name) not in draining]
        for problem in problems:
            log.warning("%s", problem)
        await self._write(placed, {_key(p): p for p in live})
        await self._finish(draining)
        await self._status(rs, placed, problems)

    async def _write(self, placed: list[gateways.Placed], existing: dict[tuple[str, str], Pod]) -> None:
        writes = []
        for item in placed:
            key = (item.pod.namespace, item.pod.name)
            if not await self.state.claim(f"ipam/{item.ip}", gateways.handle(*key)):
                log.warning("%s/%s: address %s is held by another owner", *key, item.ip)
                continue
            new = parsing.from_dict(pod_body(item), source="controller")
            old = existing.get(key)
            if old is None or _canonical(old) != _canonical(new):
                writes.append(new)
        if writes:
            await self.resources.apply(writes)
            log.info("wrote %d gateway pods", len(writes))
        wanted = {(p.pod.namespace, p.pod.name) for p in placed}
        for key in sorted(k for k in existing if k not in wanted):
            pod = existing[key]
            grace = int(pod.metadata.annotations.get(gateways.GRACE_ANNOTATION, "0") or 0)
            if grace > 0:
                await self.resources.update(("Pod", *key), _terminating(grace))
                log.info("%s/%s: terminating, drains for %d s", *key, grace)
            else:
                await self._delete(pod)

    async def _finish(self, draining: dict[tuple[str, str], Pod]) -> None:
        """Delete the draining pods whose grace period is over; wake up for the others."""
        now = datetime.now(UTC)
        for pod in draining.values():
            deadline = pod.metadata.deletion_timestamp
            assert deadline is not None
            if deadline <= now:
                await self._delete(pod)
            elif self.wake is not None:
                asyncio.get_running_loop().call_later((deadline - now).total_seconds() + 0.05, self.wake)

    async def _delete(self, pod: Pod) -> None:
        ns, name = _key(pod)
        await self.resources.delete([("Pod", ns, name)])
        if pod.ip is not None:
            await self.state.release(f"ipam/{pod.ip}", gateways.handle(ns, name))
        log.info("deleted gateway pod %s/%s", ns, name)

    async def _status(self, rs: ResourceSet, placed: list[gateways.Placed], problems: list[str]) -> None:
        for gw in rs.egress_gateways:
            name, ns = gw.metadata.name, gw.metadata.namespace or "default"
            mine = [p for p in placed if p.pod.gateway == name and p.pod.namespace == ns]
            trouble = [m for m in problems if m.startswith(f"{ns}/{name}-") or f"pod/{ns}/{name}-" in m]
            ok = len(mine) == gw.spec.replicas and not trouble
            status = {
                "state": "Ready" if ok else "Degraded",
                "conditions": [{
                    "type": "Available" if ok else "Degraded", "status": "True",
                    "reason": "AllObjectsAvailable" if ok else "Error_reconciling_Egress_Gateway",
                    "message": "All objects available" if ok else "; ".join(trouble) or
                    f"{len(mine)} of {gw.spec.replicas} replicas placed",
                }],
            }
            current = parsing.to_dict(gw).get("status") or {}
            if {k: current.get(k) for k in status} != status:
                await self.resources.update(("EgressGateway", ns, name), _with_status(status))


def _key(pod: Pod) -> tuple[str, str]:
    return pod.metadata.namespace or "default", pod.metadata.name


def _terminating(grace: int) -> Any:
    """A change that marks a pod as deleted-with-grace, as the API server does."""
    def change(res: Resource) -> Resource:
        body = parsing.to_dict(res)
        deadline = datetime.now(UTC) + timedelta(seconds=grace)
        body["metadata"]["deletionTimestamp"] = deadline.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body["metadata"]["deletionGracePeriodSeconds"] = grace
        return parsing.from_dict(body, source="controller")
    return change


def _canonical(res: Resource) -> dict[str, Any]:
    body = parsing.to_dict(res)
    body.get("metadata", {}).pop("resourceVersion", None)
    return body


def _with_status(status: dict[str, Any]) -> Any:
    def change(res: Resource) -> Resource:
        body = parsing.to_dict(res)
        body["status"] = status
        return parsing.from_dict(body, source="controller")
    return change


async def run(controller: Controller, store: Store) -> None:
    """Follow the store forever, reconciling after each batch of changes."""
    changed = asyncio.Event()
    latest: dict[str, Mapping[ResKey, Resource]] = {}

    async def on_change(state: Mapping[ResKey, Resource], revision: int) -> None:
        latest["state"] = dict(state)
        changed.set()

    controller.wake = changed.set
    task = asyncio.create_task(Informer(controller.resources, on_change, delay=0.01).run())
    try:
        while True:
            await changed.wait()
            changed.clear()
            await controller.reconcile(latest["state"])
    finally:
        task.cancel()

